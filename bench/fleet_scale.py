"""How many simulated gateways one process holds: step up 1,000 → 2,000 → 5,000 → 10,000.

Every gateway is a real MQTT client of the broker at 127.0.0.1:1883 and (full mode, the
default) polls its 1–3 inverters over Modbus RTU on its own line at every upload: pymodbus RTU
framing and CRCs on both ends, the pymodbus server's request handler, the register-map checks.
The line is a TCP connection to a per-gateway RTU-over-TCP server (4 file descriptors per
gateway with the MQTT socket), a socketpair (3) or pymodbus's in-process null modem (1);
`--line auto` (default) takes TCP when the process's descriptor limit allows the largest step
and says so when it does not.

For each step the script starts the extra gateways, waits until they are connected, lets the
start-up burst settle, then measures over a window: connected gateways, telemetry messages per
second received by an independent subscriber process (counted by the timestamp they carry,
against the expected gateways ÷ interval), their p95 delivery delay, CPU of the simulator
process, and resident memory per gateway. It stops stepping when gateways fail to connect, when
the received rate falls below 90 % of the expected rate (the process cannot keep up), at the
descriptor limit, or when the time budget would be exceeded; then everything is shut down and
the retained status messages of the run are removed from the broker.

    .venv/bin/python bench/fleet_scale.py                  # full Modbus polling
    .venv/bin/python bench/fleet_scale.py --line tcp       # force TCP lines (fd-bound here)
    .venv/bin/python bench/fleet_scale.py --mode light     # LABELLED: no Modbus polling
    .venv/bin/python bench/fleet_scale.py --broker both --steps 1000 --interval 10
                      # the embedded broker (with ACLs) beside Mosquitto, same load, rate ratio

The last line printed is one JSON object (gateways_connected, mib_per_gateway, publish_rate,
uploads_published/uploads_received/lost: every upload counted once by its sequence number, after
the gateways stopped …).
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def subscriber(broker, prefix: str, conn, ready) -> None:
    """Counts this run's telemetry by the ts it carries (so a late delivery still counts in
    the right window) and records how late each message arrived."""
    import re

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    stamps: list[tuple[float, float]] = []  # (ts of the reading, received at), seconds
    unique: set[tuple[str, int]] = set()  # (topic, seq): every upload once, resends aside
    needle = f"/{prefix}GW"
    ts_re = re.compile(rb'"ts":(\d+)')
    seq_re = re.compile(rb'"seq":(\d+)')

    def on_message(_c, _u, message):
        if needle in message.topic:
            match = ts_re.search(message.payload)
            if match:
                stamps.append((int(match.group(1)) / 1000, time.time()))
            seq = seq_re.search(message.payload)
            if seq:
                unique.add((message.topic, int(seq.group(1))))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{prefix}")
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("mc/v1/+/telemetry", qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.connect(broker.host, broker.port, 60)
    client.loop_start()
    try:
        while True:
            request = conn.recv()
            if request == "stop":
                break
            if request == "count":
                conn.send(len(unique))
                continue
            t1, t2 = request
            inside = [(ts, got) for ts, got in list(stamps) if t1 <= ts < t2]
            delays = sorted(got - ts for ts, got in inside)
            p95 = delays[int(len(delays) * 0.95)] if delays else None
            conn.send((len(inside), p95))
            stamps[:] = [item for item in stamps if item[0] >= t1]
    finally:
        client.disconnect()
        client.loop_stop()


FDS_PER_GATEWAY = {"tcp": 4, "pair": 3, "memory": 1}


async def run(args, url: str, auth_dir: Path | None = None) -> dict:
    """One stepped run against the broker at `url`. With `auth_dir`, every gateway gets its
    own secret and the broker's password and ACL files are written there first, so the
    broker checks each connect, publish and delivery as in production."""
    from devices.protocol import BrokerAddress
    from simulator.clock import SimClock
    from simulator.fleet import Fleet, freeze_heap
    from simulator.gateway import GatewayOptions
    from simulator.sources import synthetic_specs

    broker = BrokerAddress.from_url(url)
    steps = [int(s) for s in args.steps.split(",")]
    fd_limit = raise_fd_limit(steps[-1] * 5 + 2000)
    prefix = "B" + uuid.uuid4().hex[:5].upper()
    full = args.mode == "full"
    specs = synthetic_specs(steps[-1], prefix=prefix, upload_interval_s=args.interval)
    secrets = None
    if auth_dir is not None:
        secrets = write_auth_files(auth_dir, [spec.serial for spec in specs])
        broker = broker.with_credentials(BENCH_USER, secrets.pop(BENCH_USER))
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    parent, child = ctx.Pipe()
    sub = ctx.Process(target=subscriber, args=(broker, prefix, child, ready), daemon=True)
    sub.start()
    if not ready.wait(15):
        raise SystemExit("the subscriber could not subscribe at the broker")

    def received(t1: float, t2: float) -> tuple[int, float | None]:
        parent.send((t1, t2))
        return parent.recv()

    line = args.line
    if line == "auto" and not full:
        line = "tcp"  # not used: light mode has no line
    if line == "auto":  # real TCP lines when the descriptors allow, else the fd-free line
        fits = [name for name, n in FDS_PER_GATEWAY.items() if n * steps[-1] + 200 <= fd_limit]
        line = fits[0] if fits else "memory"
        if line != "tcp":
            tcp_max = (fd_limit - 200) // FDS_PER_GATEWAY["tcp"]
            print(
                f"line {line}: the fd limit {fd_limit} allows only {tcp_max} gateways with "
                f"TCP lines ({FDS_PER_GATEWAY['tcp']} fds each); use --line tcp to measure that",
                flush=True,
            )
    options = GatewayOptions(
        persistent_session=False, keepalive=120, modbus=full, modbus_timeout_s=5.0, line=line
    )
    fds = FDS_PER_GATEWAY[line] if full else 1
    capacity = (fd_limit - 200) // fds
    fleet = Fleet([], mqtt_url=broker, credentials=secrets, clock=SimClock(), options=options)
    base_rss = rss_mib()
    started = time.monotonic()
    rows: list[dict] = []
    limit = "all steps passed"
    print(
        f"mode {f'full Modbus polling, {line} line' if full else 'LIGHT (no Modbus)'}, "
        f"upload interval {args.interval}s, window {args.window}s, fd limit {fd_limit}, "
        f"{fds} fd(s) per gateway → at most {capacity} gateways, "
        f"broker {broker.host}:{broker.port}",
        flush=True,
    )
    try:
        for target in steps:
            fd_bound = target > capacity
            target = min(target, capacity)
            if target <= len(fleet.gateways):
                break
            elapsed = time.monotonic() - started
            started_s = sum(r["start_s"] for r in rows)
            per_gateway_start = started_s / len(fleet.gateways) if rows else 0.005
            estimate = (target - len(fleet.gateways)) * per_gateway_start
            estimate += args.settle + args.window + args.grace + 15
            if rows and elapsed + estimate > args.max_seconds:
                limit = f"time budget ({args.max_seconds}s) before {target} gateways"
                break
            t0 = time.monotonic()
            try:
                await fleet.add(specs[len(fleet.gateways) : target], batch=250)
            except OSError as exc:
                limit = f"could not start more gateways: {exc}"
                break
            connected = await fleet.wait_online(args.connect_timeout)
            freeze_heap()
            start_s = time.monotonic() - t0
            await asyncio.sleep(args.settle)  # let the start burst drain
            cpu0, t1 = time.process_time(), time.time()
            skipped0 = sum(gw.stats["slots_skipped"] for gw in fleet.gateways.values())
            await asyncio.sleep(args.window)
            t2 = time.time()
            cpu = (time.process_time() - cpu0) / (t2 - t1) * 100
            connected = sum(gw.connected for gw in fleet.gateways.values())
            skipped = sum(gw.stats["slots_skipped"] for gw in fleet.gateways.values()) - skipped0
            await asyncio.sleep(args.grace)  # late messages still count for their window
            got, p95 = received(t1, t2)
            rate = got / (t2 - t1)
            expected = connected / args.interval
            row = {
                "gateways": target,
                "inverters": len(fleet.inverters),
                "connected": connected,
                "start_s": round(start_s, 1),
                "publish_rate": round(rate, 1),
                "expected_rate": round(expected, 1),
                "p95_delay_s": None if p95 is None else round(p95, 2),
                "cpu_percent": round(cpu, 1),
                "rss_mib": round(rss_mib(), 1),
                "mib_per_gateway": round((rss_mib() - base_rss) / max(len(fleet.gateways), 1), 3),
                "slots_skipped": skipped,
            }
            rows.append(row)
            print_row(row, header=len(rows) == 1)
            if connected < 0.98 * target:
                limit = f"only {connected} of {target} gateways connected"
                break
            if rate < 0.9 * expected or (p95 or 0) > args.interval / 2:
                limit = f"received {rate:.0f}/s of {expected:.0f}/s expected at {target} gateways"
                break
            if fd_bound:
                limit = (
                    f"file descriptors: {fd_limit} per process (hard limit) and {fds} per "
                    f"gateway allow {capacity} gateways"
                )
                break
    finally:
        stop0 = time.monotonic()
        await fleet.stop()  # waits for each gateway's last QoS-1 status ack: uploads are in
        published = sum(gw.stats["published_telemetry"] for gw in fleet.gateways.values())
        delivered = 0
        for _ in range(int(max(args.grace, 5) * 10)):  # what is still on its way may arrive
            parent.send("count")
            delivered = parent.recv()
            if delivered >= published:
                break
            await asyncio.sleep(0.1)
        parent.send("stop")
        sub.join(10)
        clear_retained(broker, [gw.serial for gw in fleet.gateways.values()])
        print(f"stopped in {time.monotonic() - stop0:.1f}s", flush=True)
    healthy = [
        r for r in rows if r["connected"] >= 0.98 * r["gateways"]
        and r["publish_rate"] >= 0.9 * r["expected_rate"]
    ]  # fmt: skip
    best = healthy[-1] if healthy else (rows[-1] if rows else {})
    return {
        "mode": f"full-modbus-{line}-line" if full else "light-no-modbus",
        "gateways_target": steps[-1],
        "gateways_connected": best.get("connected", 0),
        "inverters": best.get("inverters", 0),
        "mib_per_gateway": best.get("mib_per_gateway"),
        "publish_rate": best.get("publish_rate"),
        "expected_rate": best.get("expected_rate"),
        "p95_delay_s": best.get("p95_delay_s"),
        "fd_limit": fd_limit,
        "cpu_percent": best.get("cpu_percent"),
        "upload_interval_s": args.interval,
        "broker": broker_label(url, auth_dir),
        "uploads_published": published,
        "uploads_received": delivered,
        "lost": max(published - delivered, 0),
        "limit": limit,
        "steps": rows,
        "seconds": round(time.monotonic() - started, 1),
    }


BENCH_USER = "bench"


def write_auth_files(auth_dir: Path, serials: list[str]) -> dict[str, str]:
    """A secret per gateway and one for the bench's subscriber, in the files Mosquitto and
    the embedded broker read; returns serial (and BENCH_USER) → secret."""
    import secrets as random_secrets

    from gateways.credentials import ServiceAccount, acl_file_text, mosquitto_hash

    secrets = {sn: random_secrets.token_urlsafe(24) for sn in [*serials, BENCH_USER]}
    auth_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{user}:{mosquitto_hash(secret)}" for user, secret in secrets.items()]
    (auth_dir / "passwd").write_text("\n".join(lines) + "\n")
    account = ServiceAccount(BENCH_USER, secrets[BENCH_USER])
    (auth_dir / "acl").write_text(acl_file_text([account]))
    return secrets


def broker_label(url: str, auth_dir: Path | None) -> str:
    port = urlparse(url).port
    return f"{'embedded aedes with ACL' if auth_dir else 'external'} on port {port}"


def clear_retained(broker, serials: list[str]) -> None:
    """Remove the retained status messages this run left on the broker."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from devices.protocol import STATUS, topic

    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-clean-{os.getpid()}")
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.on_connect = lambda *_: connected.set()
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port, 60)
    client.loop_start()
    try:
        if not connected.wait(10):
            return
        infos = [client.publish(topic(sn, STATUS), b"", qos=1, retain=True) for sn in serials]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def print_row(row: dict, *, header: bool) -> None:
    cols = [
        ("gateways", 9),
        ("inverters", 9),
        ("connected", 9),
        ("start_s", 8),
        ("publish_rate", 12),
        ("expected_rate", 13),
        ("p95_delay_s", 11),
        ("cpu_percent", 11),
        ("rss_mib", 8),
        ("mib_per_gateway", 15),
    ]
    if header:
        print(" ".join(name.rjust(width) for name, width in cols), flush=True)
    print(" ".join(str(row[name]).rjust(width) for name, width in cols), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883?version=311")
    parser.add_argument("--steps", default="1000,2000,5000,10000")
    parser.add_argument("--interval", type=int, default=60, help="upload interval, s")
    parser.add_argument("--window", type=float, default=30.0, help="measurement window, s")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time budget")
    parser.add_argument("--settle", type=float, default=15.0, help="wait after a step, s")
    parser.add_argument("--grace", type=float, default=5.0, help="wait for late messages, s")
    parser.add_argument("--mode", choices=("full", "light"), default="full")
    parser.add_argument(
        "--broker",
        choices=("url", "embedded", "both"),
        default="url",
        help="url: the broker at --url; embedded: the aedes broker of `make run` with per-gateway "
        "ACLs, started here; both: embedded, then --url, and the ratio of their rates",
    )
    parser.add_argument(
        "--line",
        choices=("auto", *FDS_PER_GATEWAY),
        default="auto",
        help="RS-485 line: tcp (4 fds/gateway), pair (3), memory (pymodbus null modem, 0); "
        "auto = tcp if the fd limit allows the largest step, else pair, else memory",
    )
    args = parser.parse_args()
    host = urlparse(args.url).hostname
    if host != "127.0.0.1":
        raise SystemExit("this benchmark only talks to 127.0.0.1")
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    if args.broker == "url":
        result = asyncio.run(run(args, args.url))
    else:
        result = compare_brokers(args)
    print(json.dumps(result, separators=(",", ":")), flush=True)


def run_embedded(args) -> dict:
    """The same run against the broker `make run` starts (aedes with the ACL files)."""
    import tempfile

    from matricloud import stack

    with tempfile.TemporaryDirectory(prefix="fleet-scale-") as tmp:
        auth_dir = Path(tmp) / "auth"
        write_auth_files(auth_dir, [])  # the broker starts with the files in place
        broker = stack.EmbeddedMqtt(
            port=stack.free_port(), logfile=Path(tmp) / "mqtt.log", auth_dir=auth_dir
        ).start()
        try:
            return asyncio.run(run(args, broker.url, auth_dir))
        finally:
            broker.stop()


def compare_brokers(args) -> dict:
    """Embedded broker first, then the one at --url; their received rates as a ratio."""
    print("== embedded broker", flush=True)
    embedded = run_embedded(args)
    if args.broker == "embedded":
        return embedded
    print(f"== broker at {args.url}", flush=True)
    external = asyncio.run(run(args, args.url))
    rate_e, rate_x = embedded.get("publish_rate") or 0, external.get("publish_rate") or 0
    return {
        "gateways_target": embedded["gateways_target"],
        "embedded_gateways_connected": embedded["gateways_connected"],
        "embedded_publish_rate": rate_e,
        "embedded_lost": embedded["lost"],
        "mosquitto_gateways_connected": external["gateways_connected"],
        "mosquitto_publish_rate": rate_x,
        "mosquitto_lost": external["lost"],
        "received_rate_ratio_embedded_to_mosquitto": round(rate_e / rate_x, 3) if rate_x else None,
        "embedded": embedded,
        "mosquitto": external,
    }


if __name__ == "__main__":
    main()
