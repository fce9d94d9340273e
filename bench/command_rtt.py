"""Remote-read round trip, end to end, against a direct pymodbus read of the same register.

1. whole path: `maintenance.remote.read_registers` (checks, record `queued`) → Celery (Redis) →
   a `celery worker` process → MQTT command → simulated gateway → Modbus RTU over its TCP line →
   simulated inverter → reply → the worker parses it and updates the record → this script sees
   the record finished (polling the row every millisecond); the simulator runs in a process of
   its own, as a gateway is a device of its own;
2. baseline: a pymodbus client reads the same input register (batt_soc, FC4) from the same
   simulated inverter's line server (RTU over TCP), one request at a time.

The two are measured interleaved (one of each per round) so machine noise hits both alike.

Then, with `--load-gateways N` (default 1,000; 0 skips it), the same is measured again while
ingest carries the telemetry of N more simulated gateways (1–3 inverters each, polled over
Modbus on in-process lines, uploading every `--load-interval` seconds, default 10 s — six times
the production default, so N/10 uploads a second), run in a second simulator process and
registered in the database like real gateways, so ingest stores every sample. The load's own
throughput is reported beside (samples stored per second during the loaded rounds, rejected
messages), so the figure is known to be taken under that load.

    .venv/bin/python bench/command_rtt.py [--samples 300] [--warmup 20] [--mqtt-url URL]
                                          [--load-gateways 1000] [--load-interval 10]

It creates its own database (`<DATABASE_URL name>_bench_rtt`) from the migrations and drops it
afterwards. The broker is a private Mosquitto started with the tuning of the shipped
deploy/mosquitto/mosquitto.conf (among it `set_tcp_nodelay true`), or `--mqtt-url` (a broker
without TCP_NODELAY adds about 40 ms per hop: Nagle's algorithm meets the delayed ACK). Celery
uses REDIS_URL with a queue of its own. The last line is one JSON object: p50_ms,
p95_ms, direct_p50_ms, direct_p95_ms, samples (and more), and under `loaded` the same figures
measured under the load with the load's samples per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import bench_database, recreate_database  # noqa: E402

MODEL = "ECH10K-TH-EU"
GATEWAY_SN = "BENCHRTT0001"
INVERTER_SN = "BENCHRTT0001I1"
KEY = "batt_soc"
STATE_SQL = "SELECT state FROM gateways_remoteoperation WHERE id = %s"


class private_mosquitto:  # noqa: N801 - used like a function
    """`mosquitto` on a free port with the shipped configuration's tuning."""

    KEYS = ("set_tcp_nodelay", "max_queued_messages", "max_queued_bytes", "max_inflight_messages")

    def __init__(self) -> None:
        import shutil
        import socket
        import tempfile

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        shipped = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        tuning = [line for line in shipped if line.split(" ")[0] in self.KEYS]
        self.dir = Path(tempfile.mkdtemp(prefix="bench-rtt-mqtt-"))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "\n".join([f"listener {self.port} 127.0.0.1", "allow_anonymous true", "user root"])
            + "\n"
            + "\n".join(tuning)
            + "\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"mqtt://127.0.0.1:{self.port}"
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)
        print(f"private mosquitto on {self.url} with: {', '.join(tuning)}")

    def stop(self) -> None:
        import shutil

        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start(cmd: list[str], log: Path, ready: str, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    end = time.monotonic() + 60
    while ready not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError(f"{cmd[2:5]} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--mqtt-url", help="an external broker instead of a private Mosquitto")
    parser.add_argument("--load-gateways", type=int, default=1000)
    parser.add_argument("--load-interval", type=int, default=10)
    args = parser.parse_args()
    broker = None
    if args.mqtt_url is None:
        broker = private_mosquitto()
        args.mqtt_url = broker.url

    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/matricloud")
    admin_url, db_url = bench_database(base, "bench_rtt")
    recreate_database(admin_url, db_url)
    run_id = uuid.uuid4().hex[:8]
    queue = f"bench-rtt-{run_id}"
    os.environ.update(
        DATABASE_URL=db_url,
        MQTT_URL=args.mqtt_url,
        DJANGO_SETTINGS_MODULE="matricloud.settings",
        DATABASE_CONN_MAX_AGE="600",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logs = ROOT / ".matricloud" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen] = []
    fleet = None
    load = None
    try:
        user, inverter = make_fleet_rows()
        fleet = start_simulator(args.mqtt_url)
        procs.append(
            start(
                [sys.executable, "manage.py", "ingest", "--client-id", f"bench-rtt-{run_id}"],
                logs / "rtt-ingest.log",
                "connected to",
                env,
            )
        )
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "matricloud",
                    "worker",
                    "--pool",
                    "solo",
                    "--queues",
                    queue,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel",
                    "INFO",
                ],
                logs / "rtt-worker.log",
                "ready.",
                env,
            )
        )
        wait_online(inverter.gateway)
        result = measure(fleet, user, inverter, queue, args.samples, args.warmup)
        if args.load_gateways:
            specs = load_specs(args.load_gateways, args.load_interval)
            register_load(specs, user.company)
            load = SimulatorProcess(_run_load, args.mqtt_url, specs, timeout=300)
            print(
                f"load: {len(specs)} gateways, {sum(len(g.inverters) for g in specs)} "
                f"inverters, every {args.load_interval} s; settling …",
                flush=True,
            )
            time.sleep(args.load_interval * 2)
            before = load_counts()
            started = time.monotonic()
            loaded = measure(fleet, user, inverter, queue, args.samples, args.warmup // 2)
            seconds = time.monotonic() - started
            after = load_counts()
            loaded["load_gateways"] = len(specs)
            loaded["load_gateways_online"] = after["online"]
            loaded["load_samples_per_s"] = round(
                (after["samples"] - before["samples"]) / seconds, 1
            )
            loaded["load_expected_samples_per_s"] = round(
                sum(len(g.inverters) for g in specs) / args.load_interval, 1
            )
            loaded["rejected"] = after["rejected"]
            loaded["rejected_reasons"] = after["reasons"]
            print(
                f"loaded: p50 {loaded['p50_ms']} ms  p95 {loaded['p95_ms']} ms  with "
                f"{loaded['load_samples_per_s']} samples/s stored "
                f"(expected {loaded['load_expected_samples_per_s']}), "
                f"{after['online']} load gateways online, {after['rejected']} rejected",
                flush=True,
            )
            result["loaded"] = loaded
    finally:
        if load is not None:
            load.stop()
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if fleet is not None:
            fleet.stop()
        if broker is not None:
            broker.stop()
        from django.db import connections

        connections.close_all()
        recreate_database(admin_url, db_url, drop_only=True)
    print(json.dumps(result))


def make_fleet_rows():
    from accounts.models import Company, CompanyType, Role, User
    from gateways.models import Gateway
    from inverters.models import Inverter
    from sites.models import Site

    company = Company.objects.create(
        type=CompanyType.INSTALLER, name="Bench Installers", country="DE"
    )
    user = User.objects.create_user(
        email="om@bench.example", password="bench-password-1", company=company, role=Role.OM
    )
    site = Site.objects.create(
        company=company,
        name="Bench site",
        address="Bench street 1",
        country="DE",
        latitude=48.1,
        longitude=11.6,
        time_zone="Europe/Berlin",
        capacity_kwp=10,
        tariff_per_kwh="0.30",
    )
    gateway = Gateway.objects.create(
        serial_number=GATEWAY_SN, company=company, site=site, upload_interval_s=3600
    )
    inverter = Inverter.objects.create(
        serial_number=INVERTER_SN,
        model=MODEL,
        gateway=gateway,
        modbus_address=1,
        company=company,
        site=site,
    )
    return user, inverter


class SimulatorProcess:
    """Simulated gateways and inverters in a process of their own, as real gateways are
    devices of their own: in this process they would compete for the GIL with the poll loop.
    `reply` is what the child answers once its fleet is online (the measured gateway's line
    port, or how many load gateways started)."""

    def __init__(self, target, *args: object, timeout: float = 60) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(*args, child), daemon=True)
        self.proc.start()
        if not self._conn.poll(timeout):
            raise RuntimeError("the simulator did not start")
        self.reply = self._conn.recv()

    @property
    def line_port(self) -> int:
        return self.reply

    def stop(self) -> None:
        self._conn.send("stop")
        self.proc.join(60)


def _run_fleet(mqtt_url: str, specs: list, options, answer, conn) -> None:
    sys.path.insert(0, str(ROOT))
    from simulator.fleet import FleetThread

    kwargs = {"options": options} if options is not None else {}
    fleet = FleetThread(specs, mqtt_url=mqtt_url, **kwargs).start(timeout=300)
    conn.send(answer(fleet.fleet))
    conn.recv()
    fleet.stop()


def _line_port(fleet) -> int:
    return fleet.gateway(GATEWAY_SN).bus.port


def _gateway_count(fleet) -> int:
    return len(fleet.gateways)


def _run_simulator(mqtt_url: str, conn) -> None:
    sys.path.insert(0, str(ROOT))
    from simulator.sources import GatewaySpec, InverterSpec

    spec = GatewaySpec(
        serial=GATEWAY_SN,
        inverters=(InverterSpec(INVERTER_SN, MODEL, 1),),
        upload_interval_s=3600,
    )
    _run_fleet(mqtt_url, [spec], None, _line_port, conn)


# Inverter serials are read back from 8 registers (16 characters): prefix + "INV" + 8 digits.
LOAD_PREFIX = "BRL"


def load_specs(count: int, interval: int) -> list:
    from simulator.sources import synthetic_specs

    return synthetic_specs(count, prefix=LOAD_PREFIX, upload_interval_s=interval)


def register_load(specs: list, company) -> None:
    """The load's gateways and inverters as the portal knows real ones (ingest stores only
    what it knows), on one site."""
    from gateways.models import Gateway
    from inverters.models import Inverter
    from sites.models import Site

    site = Site.objects.create(
        company=company,
        name="Load site",
        address="Load street 1",
        country="DE",
        latitude=48.1,
        longitude=11.6,
        time_zone="Europe/Berlin",
        capacity_kwp=10,
        tariff_per_kwh="0.30",
    )
    gateways = Gateway.objects.bulk_create(
        Gateway(
            serial_number=g.serial,
            company=company,
            site=site,
            upload_interval_s=g.upload_interval_s,
        )
        for g in specs
    )
    Inverter.objects.bulk_create(
        Inverter(
            serial_number=i.serial,
            model=i.model,
            gateway=gateway,
            modbus_address=i.address,
            company=company,
            site=site,
        )
        for gateway, g in zip(gateways, specs, strict=True)
        for i in g.inverters
    )


def load_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM gateways_gateway WHERE serial_number LIKE %s AND status = %s",
            [LOAD_PREFIX + "%", "online"],
        )
        online = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM inverters_sample")
        samples = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM inverters_rejectedmessage")
        rejected = cursor.fetchone()[0]
        cursor.execute(
            "SELECT reason, count(*) FROM inverters_rejectedmessage GROUP BY reason "
            "ORDER BY count(*) DESC LIMIT 3"
        )
        reasons = [f"{n}× {reason[:120]}" for reason, n in cursor.fetchall()]
    return {"online": online, "samples": samples, "rejected": rejected, "reasons": reasons}


def _run_load(mqtt_url: str, specs: list, conn) -> None:
    """The load's gateways: lines in memory, Modbus polled as in production."""
    sys.path.insert(0, str(ROOT))
    from simulator.gateway import GatewayOptions

    options = GatewayOptions(
        persistent_session=False, keepalive=120, modbus_timeout_s=5.0, line="memory"
    )
    _run_fleet(mqtt_url, specs, options, _gateway_count, conn)


def start_simulator(mqtt_url: str) -> SimulatorProcess:
    return SimulatorProcess(_run_simulator, mqtt_url)


def wait_online(gateway) -> None:
    from gateways.models import GatewayStatus

    end = time.monotonic() + 30
    while True:
        gateway.refresh_from_db()
        if gateway.status == GatewayStatus.ONLINE:
            return
        if time.monotonic() > end:
            raise RuntimeError("the simulated gateway did not come online")
        time.sleep(0.1)


def measure(fleet, user, inverter, queue: str, samples: int, warmup: int) -> dict:
    from pymodbus.client import ModbusTcpClient
    from pymodbus.framer import FramerType

    from devices.registermap import RegisterMap
    from maintenance.models import OperationState, RemoteOperation
    from maintenance.remote import read_registers
    from matricloud.celery import app as celery_app

    celery_app.conf.task_default_queue = queue
    point = RegisterMap.for_model(MODEL).point(KEY)
    line_port = fleet.line_port
    direct = ModbusTcpClient("127.0.0.1", port=line_port, framer=FramerType.RTU, timeout=1)
    if not direct.connect():
        raise RuntimeError("cannot connect to the simulated line")
    finished = (OperationState.SUCCEEDED, OperationState.FAILED, OperationState.EXPIRED)

    call_ms: list[float] = []
    from django.db import connection

    def whole_path() -> tuple[float, dict]:
        t0 = time.perf_counter()
        operation = read_registers(inverter, [KEY], acting_user=user)
        call_ms.append((time.perf_counter() - t0) * 1000)
        # A bare cursor: the poll should cost the machine as little as possible.
        with connection.cursor() as cursor:
            while True:
                cursor.execute(STATE_SQL, [operation.pk])
                if (state := cursor.fetchone()[0]) in finished:
                    break
                time.sleep(0.001)
        elapsed = (time.perf_counter() - t0) * 1000
        if state != OperationState.SUCCEEDED:
            raise RuntimeError(
                f"read ended {state}: {RemoteOperation.objects.get(pk=operation.pk).error}"
            )
        return elapsed, RemoteOperation.objects.get(pk=operation.pk).result["values"][KEY]

    def direct_read() -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        answer = direct.read_input_registers(point.address, count=point.n_registers, device_id=1)
        elapsed = (time.perf_counter() - t0) * 1000
        if answer.isError():
            raise RuntimeError(f"direct read failed: {answer}")
        return elapsed, answer.registers

    for _ in range(warmup):
        whole_path()
        direct_read()
    path_ms, direct_ms = [], []
    call_ms.clear()
    last_value = None
    for _ in range(samples):
        elapsed, value = whole_path()
        path_ms.append(elapsed)
        last_value = value
        direct_ms.append(direct_read()[0])
    direct.close()
    stages = RemoteOperation.objects.order_by("-pk")[:samples].values_list(
        "created_at", "sent_at", "finished_at"
    )
    to_worker = [(sent - created).total_seconds() * 1000 for created, sent, _ in stages]
    device = [(done - sent).total_seconds() * 1000 for _, sent, done in stages]
    result = {
        "p50_ms": round(statistics.median(path_ms), 2),
        "p95_ms": round(percentile(path_ms, 0.95), 2),
        "direct_p50_ms": round(statistics.median(direct_ms), 2),
        "direct_p95_ms": round(percentile(direct_ms, 0.95), 2),
        "samples": samples,
        "max_ms": round(max(path_ms), 2),
        "p50_ratio_to_direct": round(statistics.median(path_ms) / statistics.median(direct_ms), 1),
        "service_call_p50_ms": round(statistics.median(call_ms), 2),
        "queued_to_sent_p50_ms": round(statistics.median(to_worker), 2),
        "sent_to_finished_p50_ms": round(statistics.median(device), 2),
        "register": f"{point.name} {point.display_address}",
        "last_value": last_value["display"] if last_value else None,
        "operations": RemoteOperation.objects.count(),
    }
    print(
        f"whole path  p50 {result['p50_ms']} ms  p95 {result['p95_ms']} ms  max {result['max_ms']}"
    )
    print(f"direct read p50 {result['direct_p50_ms']} ms  p95 {result['direct_p95_ms']} ms")
    return result


if __name__ == "__main__":
    main()
