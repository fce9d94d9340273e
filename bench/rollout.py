"""A firmware rollout to many gateways, against raw publishing of the same chunks.

1. rollout: `--gateways` simulated gateways (1,000; light mode, all in one simulator process of
   their own, as command_rtt.py's load) each get a `--image-kib` image (1 MiB) of their model:
   `upgrades.offers.offer_job` for every target → the `ota` command → each gateway pulls the
   chunks from the delivery service (`manage.py ota`, a process of its own so its memory can be
   measured), verifies, installs and reports; measured from the first offer until every target
   is finished (polling the rows);
2. baseline, in the same run, through the same broker: one paho client publishes the same
   chunks (the same bytes, with the same header) on the same gateways' `ota/res/…` topics at
   QoS 1, keeping as many unacknowledged as the delivery service does, measured until the
   simulator process counted every chunk arriving at the gateways' sessions.

    .venv/bin/python bench/rollout.py [--gateways 1000] [--image-kib 1024] [--mqtt-url URL]

The delivery process's peak resident memory is its VmHWM (/proc/<pid>/status) at the end. The
bench creates its own database (`<DATABASE_URL name>_bench_rollout`) and a media folder for
the release, and drops both afterwards. The broker is a private Mosquitto with the shipped
configuration's tuning unless `--mqtt-url` is given. The last line is one JSON object:
`seconds`, `raw_seconds`, `ratio`, `worker_peak_rss_mib`, `succeeded`, `failed` (and more:
`downloaded_seconds`, when no target was offered or downloading any more).

The simulator process freezes its start-up objects out of the garbage collector (`gc.freeze()`)
before either measurement: a thousand devices in one process are objects a full collection
would otherwise walk several times per run, a pause no real device has.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdb import bench_database, recreate_database  # noqa: E402
from command_rtt import SimulatorProcess, private_mosquitto, start  # noqa: E402

PREFIX = "BRO"
GATEWAY_MODEL = "CPS WiFi Kit"
NEW_VERSION = "10.01"
PENDING = 256  # unacknowledged chunks in flight: what the delivery service allows itself


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--image-kib", type=int, default=1024)
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--mqtt-url", help="an external broker instead of a private Mosquitto")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--mqtt-version",
        choices=("311", "5"),
        default="311",
        help="MQTT version of every client, the gateways' and the portal's (default 3.1.1, as "
        "the local run and most gateway firmware speak it)",
    )
    args = parser.parse_args()
    broker = None
    if args.mqtt_url is None:
        broker = private_mosquitto()
        args.mqtt_url = broker.url
    if "version=" not in args.mqtt_url:
        joiner = "&" if "?" in args.mqtt_url else "?"
        args.mqtt_url = f"{args.mqtt_url}{joiner}version={args.mqtt_version}"
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/matricloud")
    admin_url, db_url = bench_database(base, "bench_rollout")
    recreate_database(admin_url, db_url)
    media = Path(tempfile.mkdtemp(prefix="bench-rollout-media-"))
    run_id = uuid.uuid4().hex[:8]
    os.environ.update(
        DATABASE_URL=db_url,
        MQTT_URL=args.mqtt_url,
        MEDIA_ROOT=str(media),
        FIRMWARE_CHUNK_BYTES=str(args.chunk_kib * 1024),
        DJANGO_SETTINGS_MODULE="matricloud.settings",
        DJANGO_DEBUG="false",
        DATABASE_CONN_MAX_AGE="600",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logs = ROOT / ".matricloud" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fleet = delivery = None
    result: dict = {}
    try:
        specs = fleet_specs(args.gateways)
        image = build(args.image_kib * 1024)
        targets = register(specs, image)
        fleet = SimulatorProcess(_run_fleet, args.mqtt_url, specs, timeout=600)
        print(f"{fleet.reply} simulated gateways online", flush=True)
        raw_seconds = raw_baseline(args.mqtt_url, specs, image, args.chunk_kib * 1024, fleet)
        print(f"raw publishing: {raw_seconds:.2f} s", flush=True)
        delivery = start(
            [sys.executable, "manage.py", "ota", "--client-id", f"bench-ota-{run_id}"]
            + ["--log-interval", "5"],
            logs / "rollout-ota.log",
            "connected to",
            env,
        )
        time.sleep(0.5)  # its SUBACK
        seconds, states, downloaded = rollout(targets, args.timeout)
        peak_mib = peak_rss_mib(delivery.pid)
        result = {
            "seconds": round(seconds, 2),
            "raw_seconds": round(raw_seconds, 2),
            "ratio": round(seconds / raw_seconds, 2),
            "downloaded_seconds": round(downloaded, 2),
            "worker_peak_rss_mib": round(peak_mib, 1),
            "succeeded": states.get("succeeded", 0),
            "failed": states.get("failed", 0),
            "gateways": len(specs),
            "image_bytes": len(image),
            "chunk_bytes": args.chunk_kib * 1024,
            "states": states,
            "reasons": failure_reasons(),
        }
        print(
            f"rollout: {result['seconds']} s for {len(specs)} gateways "
            f"({result['succeeded']} succeeded, {result['failed']} failed), ratio "
            f"{result['ratio']} to raw publishing, delivery peak RSS "
            f"{result['worker_peak_rss_mib']} MiB",
            flush=True,
        )
    finally:
        if delivery is not None:
            delivery.terminate()
            try:
                delivery.wait(15)
            except subprocess.TimeoutExpired:
                delivery.kill()
        if fleet is not None:
            fleet.stop()
        from django.db import connections

        from maintenance.dispatch import close_reply_waiter

        close_reply_waiter()
        connections.close_all()
        recreate_database(admin_url, db_url, drop_only=True)
        shutil.rmtree(media, ignore_errors=True)
        if broker is not None:
            broker.stop()
    print(json.dumps(result))


# --- the fleet ---------------------------------------------------------------------------------


def fleet_specs(count: int) -> list:
    from simulator.sources import GatewaySpec

    # Light gateways without inverters: the rollout is the gateways' own firmware.
    return [
        GatewaySpec(serial=f"{PREFIX}{i:06d}", inverters=(), upload_interval_s=3600)
        for i in range(count)
    ]


def build(size: int) -> bytes:
    from devices import ota

    return ota.build_image(GATEWAY_MODEL, "gateway", NEW_VERSION, size)


def register(specs: list, image: bytes) -> list[int]:
    """Company, site, gateways, the release (stored through Django's storage), one task and a
    target per gateway; returns the target ids."""
    import hashlib

    from django.core.files.base import ContentFile

    from accounts.models import Company, CompanyType
    from gateways.models import Gateway
    from sites.models import Site
    from upgrades.models import FirmwareRelease, ReleaseModel, UpgradeTarget, UpgradeTask

    company = Company.objects.create(type=CompanyType.INSTALLER, name="Bench", country="DE")
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
    gateways = Gateway.objects.bulk_create(
        Gateway(
            serial_number=g.serial,
            company=company,
            site=site,
            model=GATEWAY_MODEL,
            firmware_version=g.firmware,
            upload_interval_s=g.upload_interval_s,
        )
        for g in specs
    )
    release = FirmwareRelease(
        kind="gateway",
        firmware_type="gateway",
        version=NEW_VERSION,
        file_name="bench.bin",
        size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
    )
    release.file.save("bench.bin", ContentFile(image), save=False)
    release.save()
    ReleaseModel.objects.create(
        release=release,
        kind="gateway",
        firmware_type="gateway",
        model=GATEWAY_MODEL,
        version=NEW_VERSION,
    )
    task = UpgradeTask.objects.create(
        company=company,
        kind="gateway",
        release=release,
        firmware_type="gateway",
        model=GATEWAY_MODEL,
        state="running",
        waves=[100],
        max_parallel=len(specs),
    )
    rows = UpgradeTarget.objects.bulk_create(
        UpgradeTarget(task=task, gateway=g, from_version=g.firmware_version) for g in gateways
    )
    return [t.pk for t in rows]


def _run_fleet(mqtt_url: str, specs: list, conn) -> None:
    """The simulated gateways (light mode); answers `count` with the chunks that arrived at
    their sessions while counting, `count_on`/`count_off` switch counting."""
    sys.path.insert(0, str(ROOT))
    from devices import ota
    from simulator.fleet import FleetThread
    from simulator.gateway import GatewayOptions

    options = GatewayOptions(
        persistent_session=False, keepalive=120, modbus=False, restart_scale=0.0
    )
    thread = FleetThread(specs, mqtt_url=mqtt_url, options=options).start(timeout=600)
    # A thousand devices' state lives in this one process: without this, every full garbage
    # collection (several per run) stops all of them for a tenth of a second to walk it. Real
    # devices have no such pause; both measurements below run with it off.
    gc.freeze()
    counted = [0]
    saved: dict = {}

    def count_on() -> None:
        for serial, gateway in thread.fleet.gateways.items():
            client = gateway.client
            saved[serial] = client.on_message

            def counting(c, u, message, _inner=client.on_message):
                if "/ota/res/" in message.topic:
                    counted[0] += 1  # the baseline's chunks end here
                else:
                    _inner(c, u, message)

            client.on_message = counting
            client.subscribe(ota.gateway_response_filter(serial), qos=1)

    def count_off() -> None:
        for serial, gateway in thread.fleet.gateways.items():
            gateway.client.on_message = saved.pop(serial)

    conn.send(len(thread.fleet.gateways))
    while True:
        request = conn.recv()
        if request == "stop":
            break
        if request == "count":
            conn.send(counted[0])
        elif request == "count_on":
            thread.call(count_on)
            conn.send(True)
        elif request == "count_off":
            thread.call(count_off)
            conn.send(True)
    thread.stop()


def _ask(fleet: SimulatorProcess, request: str):
    fleet._conn.send(request)
    return fleet._conn.recv()


# --- the two measurements ----------------------------------------------------------------------


def raw_baseline(mqtt_url: str, specs: list, image: bytes, chunk: int, fleet) -> float:
    """The same chunks published straight to the gateways' response topics."""
    from devices import ota, protocol

    _ask(fleet, "count_on")
    time.sleep(1)  # the subscriptions
    broker = protocol.BrokerAddress.from_url(mqtt_url)
    client = protocol.make_client(f"bench-raw-{uuid.uuid4().hex[:6]}", broker, persistent=False)
    client.max_queued_messages_set(0)
    pending = threading.Semaphore(PENDING)
    client.on_publish = lambda *_: pending.release()
    protocol.connect_client(client, broker, persistent=False)
    client.loop_start()
    jobs = {g.serial: uuid.uuid4().hex for g in specs}
    offsets = range(0, len(image), chunk)
    total = len(offsets) * len(specs)
    started = time.monotonic()
    for offset in offsets:
        for serial, job in jobs.items():
            pending.acquire()
            payload = ota.ChunkResponse(job, offset, image[offset : offset + chunk]).encode()
            client.publish(ota.job_topic(serial, ota.RES, job), payload, qos=protocol.QOS)
    while (arrived := _ask(fleet, "count")) < total:
        if time.monotonic() - started > 600:
            raise RuntimeError(f"only {arrived} of {total} chunks arrived")
        time.sleep(0.02)
    seconds = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    _ask(fleet, "count_off")
    return seconds


def rollout(targets: list[int], timeout: float) -> tuple[float, dict[str, int], float]:
    """Offer every target, then poll until all are finished; (seconds, count per state,
    seconds until no target was offered or downloading any more)."""
    from django.db import connection

    from upgrades.offers import offer_jobs

    started = time.monotonic()
    offered = offer_jobs(targets)
    print(f"{offered} offers sent in {time.monotonic() - started:.2f} s", flush=True)
    states: dict[str, int] = {}
    last_print = 0.0
    downloaded = float("nan")
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT state, count(*) FROM upgrades_upgradetarget GROUP BY state")
            states = dict(cursor.fetchall())
        done = states.get("succeeded", 0) + states.get("failed", 0)
        elapsed = time.monotonic() - started
        if math.isnan(downloaded) and not states.get("offered") and not states.get("downloading"):
            downloaded = elapsed
        if done >= len(targets):
            return elapsed, states, downloaded
        if elapsed > timeout:
            print(f"timed out: {states}", flush=True)
            return elapsed, states, downloaded
        if elapsed - last_print >= 1:
            last_print = elapsed
            print(f"  {elapsed:.0f} s: {states}", flush=True)
        time.sleep(0.05)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def failure_reasons() -> list[str]:
    from django.db.models import Count

    from upgrades.models import UpgradeTarget

    rows = (
        UpgradeTarget.objects.filter(state="failed")
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n")[:3]
    )
    return [f"{r['n']}× {r['reason'][:120]}" for r in rows]


if __name__ == "__main__":
    main()
