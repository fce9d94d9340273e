"""Command line shared by `manage.py simulate` and `python -m simulator`.

Three ways to run:

- a fleet: `--gateways N` (synthetic) or `--fleet FILE` (devices listed in a JSON file);
- one standalone inverter for any Modbus master: `--inverter MODEL --modbus-port PORT`;
- a control message to a running fleet: `--fault SN:CODE` / `--clear-fault SN:CODE` /
  `--ota-fault GWSN:KIND` without `--gateways`/`--fleet`/`--inverter` (with one of those, the
  faults are injected at start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse, urlunparse

from simulator.clock import SimClock
from simulator.control import CONTROL_TOPIC, send_control
from simulator.environment import Site
from simulator.gateway import GatewayOptions
from simulator.ota import OtaFault
from simulator.sources import specs_from_file, synthetic_specs

log = logging.getLogger("simulator")
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--gateways", type=int, metavar="N", help="synthetic fleet of N gateways")
    fleet.add_argument(
        "--fleet", metavar="FILE", help="the gateways and inverters of a fleet file (JSON)"
    )
    fleet.add_argument(
        "--mqtt-url",
        default=os.environ.get("MQTT_URL", DEFAULT_MQTT_URL),
        # Not %(default)s: $MQTT_URL may hold a password, and --help must not show it.
        help=f"broker, e.g. mqtt://host:1883?version=311 (default $MQTT_URL or {DEFAULT_MQTT_URL})",
    )
    fleet.add_argument(
        "--credentials", metavar="FILE", help="JSON file: gateway serial → MQTT password"
    )
    fleet.add_argument("--backfill-days", type=float, default=0.0, metavar="D")
    fleet.add_argument(
        "--speed",
        type=float,
        default=None,
        metavar="X",
        help="simulated seconds per real second (default 1; 1440 when backfilling)",
    )
    fleet.add_argument(
        "--backfill-interval",
        type=int,
        metavar="S",
        help="upload interval while backfilling (default: each gateway's own)",
    )
    fleet.add_argument("--upload-interval", type=int, metavar="S", help="override every gateway's")
    fleet.add_argument(
        "--restart-scale",
        type=float,
        default=1.0,
        help="scale of the 10–20 s gateway restart (default %(default)s)",
    )
    fleet.add_argument("--seed", type=int, default=0, help="seed of the synthetic fleet")
    fleet.add_argument("--prefix", default="SIM", help="serial prefix of the synthetic fleet")
    fleet.add_argument(
        "--no-control", action="store_true", help="do not listen on the control topic"
    )
    fleet.add_argument("--control-topic", default=CONTROL_TOPIC)
    fleet.add_argument(
        "--fault", action="append", default=[], metavar="SN:CODE", help="raise a fault code"
    )
    fleet.add_argument(
        "--clear-fault", action="append", default=[], metavar="SN:CODE", help="clear a fault code"
    )
    fleet.add_argument(
        "--ota-fault",
        action="append",
        default=[],
        metavar="GWSN:KIND[:PCT[:S]]",
        help="arm a failure for a gateway's next firmware job: corrupt_chunk, power_loss, "
        "or offline (at PCT %% of the image, for S seconds)",
    )
    fleet.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    inv = parser.add_argument_group("standalone inverter")
    inv.add_argument("--inverter", metavar="MODEL", help="serve one inverter on Modbus TCP")
    inv.add_argument("--modbus-port", type=int, default=5020)
    inv.add_argument("--modbus-host", default="127.0.0.1")
    inv.add_argument("--serial", help="serial number of the standalone inverter")
    inv.add_argument("--latitude", type=float, default=48.137)
    inv.add_argument("--longitude", type=float, default=11.575)
    inv.add_argument("--time-zone", default="Europe/Berlin")


def hide_password(url: str) -> str:
    """The broker URL as it may be printed or logged: a password becomes ***.

    (matricloud.stack.hide_password does the same for the launcher; the simulator runs
    without the matricloud package.)
    """
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    user = parsed.username or ""
    host = parsed.netloc.rpartition("@")[2]
    return urlunparse(parsed._replace(netloc=f"{user}:***@{host}"))


def parse_fault(text: str) -> tuple[str, str]:
    serial, sep, code = text.partition(":")
    if not sep or not serial or not code:
        raise ValueError(f"{text!r}: write SERIAL:CODE, e.g. ECH06S24100042:Protect0080")
    return serial.strip(), code.strip()


def parse_ota_fault(text: str) -> dict[str, Any]:
    """`GWSN:offline:40:5` → the `ota_fault` control request for that gateway."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[0] or len(parts) > 4:
        raise ValueError(f"{text!r}: write GATEWAY:KIND[:PCT[:SECONDS]], e.g. SIMGW0000001:offline")
    request: dict[str, Any] = {"action": "ota_fault", "gateway": parts[0], "fault": parts[1]}
    try:
        if len(parts) > 2:
            request["at_pct"] = float(parts[2])
        if len(parts) > 3:
            request["seconds"] = float(parts[3])
        OtaFault.from_request(request)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return request


def run(options: dict[str, Any], *, write: Callable[[str], None] = print) -> int:
    """Run what the options ask for; returns a process exit status."""
    faults = [parse_fault(f) for f in options.get("fault") or []]
    clears = [parse_fault(f) for f in options.get("clear_fault") or []]
    ota_faults = [parse_ota_fault(f) for f in options.get("ota_fault") or []]
    if options.get("inverter"):
        return _standalone(options, write)
    selects_fleet = options.get("gateways") is not None or options.get("fleet")
    if (faults or clears or ota_faults) and not selects_fleet:
        return _send(options, faults, clears, write, ota_faults)
    if options.get("gateways") is not None:
        specs = synthetic_specs(
            options["gateways"],
            seed=options.get("seed", 0),
            prefix=options.get("prefix", "SIM"),
            upload_interval_s=options.get("upload_interval") or 60,
        )
    elif options.get("fleet"):
        specs = specs_from_file(options["fleet"])
    else:
        write("error: give --gateways N or --fleet FILE")
        return 2
    if not specs:
        write("no gateways with inverters to simulate")
        return 1
    return asyncio.run(_fleet(options, specs, faults, clears, write))


def _standalone(options: dict[str, Any], write: Callable[[str], None]) -> int:
    from simulator.inverter import run_standalone

    site = Site(options["latitude"], options["longitude"], options["time_zone"])
    write(
        f"inverter {options['inverter']} on modbus tcp "
        f"{options['modbus_host']}:{options['modbus_port']} (unit 1)"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_standalone(
                options["inverter"],
                port=options["modbus_port"],
                host=options["modbus_host"],
                serial=options.get("serial"),
                site=site,
                duration_s=options.get("duration"),
            )
        )
    return 0


def _send(options, faults, clears, write, ota_faults=()) -> int:
    status = 0
    for request in ota_faults:
        result = send_control(options["mqtt_url"], request, topic=options.get("control_topic"))
        if result is None:
            write(f"{request['gateway']}: no running simulator holds this gateway")
            status = 1
        elif not result.get("ok"):
            write(f"{request['gateway']}: {result.get('error')}")
            status = 1
        else:
            write(f"{request['gateway']}: {request['fault']} armed for the next firmware job")
    requests = [{"action": "fault", "inverter": sn, "code": code} for sn, code in faults]
    requests += [{"action": "clear_fault", "inverter": sn, "code": code} for sn, code in clears]
    for request in requests:
        result = send_control(options["mqtt_url"], request, topic=options.get("control_topic"))
        if result is None:
            write(f"{request['inverter']}: no running simulator holds this inverter")
            status = 1
        elif not result.get("ok"):
            write(f"{request['inverter']}: {result.get('error')}")
            status = 1
        else:
            write(f"{request['inverter']}: {request['action']} {request['code']} ok")
    return status


async def _fleet(options, specs, faults, clears, write) -> int:
    from simulator.fleet import Fleet, freeze_heap

    days = options.get("backfill_days") or 0.0
    speed = options.get("speed")
    if days > 0:
        clock = SimClock(time.time() - days * 86400, speed or 1440.0, catch_up=True)
    else:
        clock = SimClock(speed=speed if speed is not None else 1.0, catch_up=False)
    fleet = Fleet(
        specs,
        mqtt_url=options["mqtt_url"],
        credentials=options.get("credentials"),
        clock=clock,
        options=GatewayOptions(restart_scale=options.get("restart_scale", 1.0)),
        control=not options.get("no_control"),
        control_topic=options.get("control_topic"),
        upload_interval_s=options.get("upload_interval"),
        backfill_interval_s=options.get("backfill_interval") if days > 0 else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    inverters = sum(len(s.inverters) for s in specs)
    where = hide_password(options["mqtt_url"])
    write(f"starting {len(specs)} gateway(s), {inverters} inverter(s) → {where}")
    await fleet.start(on_progress=lambda n: log.info("%d gateways started", n))
    freeze_heap()
    online = await fleet.wait_online(30.0)
    write(f"{online}/{len(specs)} gateways online; simulated time {_fmt(clock.now())}")
    for serial, code in faults:
        try:
            fleet.inject_fault(serial, code)
            write(f"fault {code} raised on {serial}")
        except KeyError as exc:
            write(f"fault {serial}:{code} not raised: {exc.args[0]}")
    for serial, code in clears:
        with contextlib.suppress(KeyError):
            fleet.clear_fault(serial, code)
    for request in options.get("ota_fault") or []:
        request = parse_ota_fault(request)
        gateway = fleet.gateways.get(request["gateway"])
        if gateway is None:
            write(f"firmware-job fault not armed: no gateway {request['gateway']}")
            continue
        gateway.ota.arm(OtaFault.from_request(request))
        write(f"{request['fault']} armed for the next firmware job of {request['gateway']}")
    duration = options.get("duration")
    started = time.monotonic()
    last_report = started
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if now - last_report >= 60:
                last_report = now
                s = fleet.summary()
                write(
                    f"{_fmt(s['sim_time'])} {'live' if s['live'] else 'backfill'}: "
                    f"{s['connected']}/{s['gateways']} online, "
                    f"{s.get('published_telemetry', 0)} telemetry messages"
                )
    finally:
        await fleet.stop()
    return 0


def _fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulated MatriCloud gateways (MQTT) and inverters (Modbus).",
    )
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    try:
        return run(vars(args), write=lambda line: print(line, flush=True))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
