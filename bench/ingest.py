"""Ingest throughput, end to end, against two baselines measured in the same run.

1. end to end: pre-generated ECH10K-TH-EU uploads (six poll blocks, 118 decoded points per
   sample, one upload per message, 2,000 gateways) published to Mosquitto at 127.0.0.1:1883 by
   separate publisher processes → ingest (`IngestService` in this process, tuned as
   `manage.py ingest` tunes itself: paho network thread, decoding writer thread, storer
   thread) → committed rows;
2. the same traffic received by a null subscriber process that only parses each message with
   the protocol module and discards it (same MQTT client settings and process tuning);
3. raw binary COPY of the same decoded rows into the same partitioned table.

The broker at :1883 runs Mosquitto's defaults, so the publishers keep at most `--window`
(900) messages published but not yet delivered to the subscriber under test: beyond 1,000
queued messages Mosquitto silently drops (the shipped configuration lifts that limit).

    .venv/bin/python bench/ingest.py [--messages 30000] [--gateways 2000] [--publishers 2]
                                     [--batch-size N] [--window 900] [--profile] [--port 1883]

It creates its own database (`<DATABASE_URL name>_bench_ingest`) from the migrations, drops it
afterwards and removes its persistent MQTT session. It prints where the CPU time goes per
sample (threads of the ingest process, PostgreSQL backends, publishers); `--profile` adds a
cProfile of the decoding thread. The last line is one JSON object: samples_per_s,
null_subscriber_msgs_per_s, ratio_to_null_subscriber, copy_rows_per_s, points_per_sample,
lost (and more).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import multiprocessing as mp
import os
import pstats
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import bench_database, recreate_database  # noqa: E402

HOST, PORT = "127.0.0.1", 1883
MODEL = "ECH10K-TH-EU"
TIME_LIMIT_S = 120


# --------------------------------------------------------------------------------------------
# Publishers and the null subscriber (separate processes)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packets(messages) -> list[bytes]:
    """MQTT 3.1.1 QoS-1 PUBLISH packets, packet ids 1, 2, … (the window keeps them unique)."""
    packets = []
    for i, (topic, payload) in enumerate(messages):
        name = topic.encode()
        body = len(name).to_bytes(2, "big") + name + (i % 65535 + 1).to_bytes(2, "big") + payload
        packets.append(b"\x32" + _varint(len(body)) + body)
    return packets


def publisher_process(messages, start, results, published, consumed, window) -> None:
    """A publisher process: QoS-1 uploads as fast as the subscriber under test keeps up.

    It speaks MQTT 3.1.1 over a plain socket with packets encoded before the clock starts:
    gateways are not on the ingest host, so the harness should take as little of this
    machine's CPU as it can (a paho publisher costs ~80 µs per message, this one ~10).

    At most `window` messages may be published but not yet delivered to the subscriber under
    test (across all publishers): the broker at 127.0.0.1:1883 runs Mosquitto's defaults, whose
    max_queued_messages (1,000) silently drops what a subscriber has not taken off the broker
    yet. Delivered-but-unacknowledged messages are in flight, not queued (ingest's Receive
    Maximum allows 65,535), so ingest still batches freely. Reports the PUBACKs it got.
    """
    import socket

    packets = publish_packets(messages)
    sock = socket.create_connection((HOST, PORT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client_id = f"bench-pub-{os.getpid()}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(client_id).to_bytes(2, "big") + client_id
    sock.sendall(b"\x10" + _varint(len(body)) + body)  # CONNECT, clean session, no keepalive
    if sock.recv(4) != b"\x20\x02\x00\x00":
        raise RuntimeError("the broker refused the publisher")
    acked = 0

    def read_acks():
        nonlocal acked
        buffer = b""
        while acked < len(packets):
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
            whole = len(buffer) - len(buffer) % 4  # PUBACK = 0x40 0x02 id id
            acked += buffer[:whole].count(b"\x40\x02")
            buffer = buffer[whole:]

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    start.wait()
    chunk = 25
    for i in range(0, len(packets), chunk):
        part = packets[i : i + chunk]
        while published.value - consumed.value + len(part) > window:
            time.sleep(0.0002)
        with published.get_lock():
            published.value += len(part)
        sock.sendall(b"".join(part))
    reader.join(TIME_LIMIT_S)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    results.put(acked)


def null_subscriber_process(prefix: str, expected: int, ready, results, consumed) -> None:
    """Receive and parse (TelemetryMessage.decode) our traffic, then discard it."""
    from devices import protocol
    from ingest.service import tune_process

    tune_process()  # the same process settings as ingest, for a fair comparison
    broker = protocol.BrokerAddress(HOST, PORT)
    client_id = f"bench-null-{uuid.uuid4().hex[:8]}"
    client = protocol.make_client(client_id, broker, persistent=False)
    state = {"n": 0, "first": 0.0, "last": 0.0, "errors": 0}
    needle = f"/{prefix}"
    done = threading.Event()

    def on_message(_c, _u, msg):
        if needle not in msg.topic:
            return
        try:
            protocol.TelemetryMessage.decode(msg.payload)
        except protocol.ProtocolError:
            state["errors"] += 1
        state["n"] += 1
        with consumed.get_lock():
            consumed.value += 1
        now = time.time()
        state["first"] = state["first"] or now
        state["last"] = now
        if state["n"] >= expected:
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in protocol.cloud_subscriptions()])
    client.on_subscribe = lambda *_: ready.set()
    protocol.connect_client(client, broker, receive_maximum=65535, asynchronous=True)
    client.loop_start()
    done.wait(TIME_LIMIT_S)
    client.disconnect()
    client.loop_stop()
    results.put(dict(state))


def start_publishers(ctx, payloads, n_publishers: int, consumed, window: int):
    """Publisher processes, connected and waiting for `start`; each reports its acks."""
    start = ctx.Event()
    results = ctx.Queue()
    published = ctx.Value("q", 0)
    shares = [payloads[i::n_publishers] for i in range(n_publishers)]
    procs = [
        ctx.Process(
            target=publisher_process,
            args=(share, start, results, published, consumed, window),
            daemon=True,
        )
        for share in shares
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let them connect
    return start, results, procs


# --------------------------------------------------------------------------------------------
# Main


def build_fleet(n_gateways: int, prefix: str):
    from accounts.models import Company, CompanyType
    from gateways.models import Gateway
    from inverters.models import Inverter
    from sites.models import Site

    company = Company.objects.create(name="Bench", type=CompanyType.INSTALLER, country="DE")
    site = Site.objects.create(
        company=company,
        name="Bench site",
        address="-",
        country="DE",
        latitude=0,
        longitude=0,
        time_zone="Europe/Berlin",
        capacity_kwp=10,
        tariff_per_kwh=0.3,
    )
    gateways = Gateway.objects.bulk_create(
        Gateway(serial_number=f"{prefix}{i:05d}", company=company, site=site)
        for i in range(n_gateways)
    )
    inverters = Inverter.objects.bulk_create(
        Inverter(
            serial_number=f"{gw.serial_number}I1",
            model=MODEL,
            gateway=gw,
            modbus_address=1,
            company=company,
            site=site,
        )
        for gw in gateways
    )
    return gateways, inverters


def pregenerate(gateways, inverters, n_messages: int):
    """Uploads with all six 60-second poll blocks, values varying per message."""
    import random

    from devices import protocol
    from devices.registermap import RegisterMap

    rm = RegisterMap.for_model(MODEL)
    blocks_spec = [b for b in rm.poll_blocks if b.interval_s < 3600]
    # Measurements vary at random; fault words stay clear and the inverter runs on-grid, as
    # in a healthy fleet (every fault bit flipping on every upload would be an alarm storm).
    fixed = {}
    for key in [p.key for p in rm.fault_words()] + ["run_status"]:
        p = rm.point(key)
        for i, word in enumerate(rm.encode_value(key, [] if p.fault_word else "on_grid")):
            fixed[(p.table, p.address + i)] = word
    rng = random.Random(7)
    base_ms = int((time.time() - 3600) * 1000)
    payloads = []
    for k in range(n_messages):
        g = k % len(gateways)
        step = k // len(gateways)
        blocks = tuple(
            protocol.Block(
                b.table,
                b.start,
                tuple(
                    fixed.get((b.table, b.start + i), rng.randrange(0, 30000))
                    for i in range(b.count)
                ),
            )
            for b in blocks_spec
        )
        reading = protocol.DeviceReading(1, inverters[g].serial_number, MODEL, blocks)
        message = protocol.TelemetryMessage(step, base_ms + step * 1000, (reading,))
        topic = protocol.topic(gateways[g].serial_number, protocol.TELEMETRY)
        payloads.append((topic, message.encode()))
    return payloads


def drop_session(client_id: str) -> None:
    """Remove a persistent session from the shared broker (clean start, expiry 0)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(HOST, PORT, 30, clean_start=True, properties=props)
    client.loop_start()
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by thread name."""
    out = {}
    for thread in threading.enumerate():
        out[thread.name] = cpu_seconds(f"self/task/{thread.native_id}")
    return out


def backend_pids(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [r[0] for r in rows]


def main() -> int:
    global PORT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--gateways", type=int, default=2000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: ingest's")
    parser.add_argument(
        "--window",
        type=int,
        default=900,
        help="messages published but not yet delivered (below the broker's 1,000-message queue)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the decoding thread")
    parser.add_argument("--port", type=int, default=PORT, help="broker port on 127.0.0.1")
    args = parser.parse_args()
    PORT = args.port
    n = args.messages

    base_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/matricloud")
    admin_url, bench_url = bench_database(base_url, "bench_ingest")
    recreate_database(admin_url, bench_url)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matricloud.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_DEBUG"] = "false"  # as in production: no per-query debug records
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    ingest_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("fork")
    try:
        call_command("migrate", verbosity=0)
        from devices import protocol
        from devices.decoding import EMPTY_TEXT_ARRAY, codec_for_model
        from ingest.service import IngestService, run_in_thread, tune_process
        from inverters.telemetry import create_partitions_ahead, layout_id_for, sample_counts

        create_partitions_ahead(1)
        prefix = f"BN{uuid.uuid4().hex[:4].upper()}"
        gateways, inverters = build_fleet(args.gateways, prefix)
        t = time.perf_counter()
        payloads = pregenerate(gateways, inverters, n)
        gen_s = time.perf_counter() - t
        codec = codec_for_model(MODEL)
        first = protocol.TelemetryMessage.decode(payloads[0][1]).devices[0]
        points = sum(v is not None for v in codec.decode(first.blocks).vec)
        size = sum(len(p) for _, p in payloads) / n
        connection.close()  # forked children must not share it

        # 2. The null subscriber (first: it stores nothing).
        ready, results, consumed = ctx.Event(), ctx.Queue(), ctx.Value("q", 0)
        null = ctx.Process(
            target=null_subscriber_process, args=(prefix, n, ready, results, consumed)
        )
        null.start()
        ready.wait(10)
        start, pub_results, procs = start_publishers(
            ctx, payloads, args.publishers, consumed, args.window
        )
        t0 = time.time()
        start.set()
        null_state = results.get(timeout=TIME_LIMIT_S + 10)
        null.join(10)
        published_null = sum(pub_results.get(timeout=TIME_LIMIT_S) for _ in procs)
        for p in procs:
            p.join(10)
        null_rate = null_state["n"] / max(null_state["last"] - t0, 1e-9)

        # 1. End to end through ingest, in this process as `manage.py ingest` runs it.
        options = {"batch_size": args.batch_size} if args.batch_size else {}
        service = IngestService(
            protocol.BrokerAddress(HOST, PORT), client_id=ingest_id, log_interval=3600, **options
        )
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            run = service.run

            def profiled_run():
                profiler.enable()
                try:
                    run()
                finally:
                    profiler.disable()

            service.run = profiled_run
        tune_process()
        thread = run_in_thread(service)
        if not service.connected.wait(10):
            raise RuntimeError(f"ingest did not connect to {HOST}:{PORT}")
        consumed = ctx.Value("q", 0)
        start, pub_results, procs = start_publishers(
            ctx, payloads, args.publishers, consumed, args.window
        )
        threads_before = thread_cpu()
        publishers_before = sum(cpu_seconds(p.pid) for p in procs)
        t0 = time.time()
        start.set()
        deadline = time.monotonic() + TIME_LIMIT_S
        while service.counters.samples < n and time.monotonic() < deadline:
            consumed.value = service.counters.delivered
            time.sleep(0.002)
        t_done = time.time()
        threads = {k: v - threads_before.get(k, 0.0) for k, v in thread_cpu().items()}
        postgres_cpu = sum(cpu_seconds(pid) for pid in backend_pids(bench_url))
        publishers_cpu = sum(cpu_seconds(p.pid) for p in procs) - publishers_before
        published = sum(pub_results.get(timeout=TIME_LIMIT_S) for _ in procs)
        for p in procs:
            p.join(10)
        time.sleep(0.5)
        service.stop()
        thread.join(30)
        counters = service.counters
        connection.close()
        stored = sample_counts([inv.id for inv in inverters])
        e2e_rate = counters.samples / max(t_done - t0, 1e-9)

        # 3. Raw binary COPY of the same rows into the same table.
        layout = layout_id_for(codec)
        by_serial = {inv.serial_number: inv.id for inv in inverters}
        copy_rows = []
        for _, payload in payloads:
            msg = protocol.TelemetryMessage.decode(payload)
            device = msg.devices[0]
            d = codec.decode(device.blocks)
            ts = dt.datetime.fromtimestamp(msg.ts_ms / 1000, dt.UTC)
            faults = EMPTY_TEXT_ARRAY if d.fault_codes == [] else d.fault_codes
            row = (by_serial[device.serial], ts, layout, *d.typed, faults, codec.pack_vals(d))
            copy_rows.append(row)
        copy_rate = copy_baseline(connection, copy_rows)
    finally:
        try:
            drop_session(ingest_id)
        except OSError:
            pass
        connection.close()
        recreate_database(admin_url, bench_url, drop_only=True)

    lost = published - stored
    report = {
        "samples_per_s": round(e2e_rate),
        "null_subscriber_msgs_per_s": round(null_rate),
        "ratio_to_null_subscriber": round(e2e_rate / null_rate, 3) if null_rate else None,
        "copy_rows_per_s": round(copy_rate),
        "points_per_sample": points,
        "lost": lost,
        "messages": n,
        "published": published,
        "stored": stored,
        "null_received": null_state["n"],
        "duplicates": counters.duplicates,
        "rejected": counters.rejected,
        "batches": counters.batches,
        "gateways": args.gateways,
        "payload_bytes": round(size),
    }
    per_msg = {
        "paho network thread (receive, on_message)": sum(
            v for k, v in threads.items() if k.startswith("paho-mqtt-client")
        ),
        "ingest-writer (protocol + register decoding)": threads.get("ingest-writer", 0.0),
        "ingest-storer (COPY, SQL, commit, acks)": threads.get("ingest-storer", 0.0),
        "PostgreSQL backends (insert, rollups, latest)": postgres_cpu,
        "publisher processes": publishers_cpu,
    }
    print(
        f"ingest bench: {n} uploads of {MODEL} ({points} points, ~{size:.0f} B) from "
        f"{args.gateways} gateways, {args.publishers} publisher processes, "
        f"broker {HOST}:{PORT}, at most {args.window} messages undelivered"
    )
    print(f"  payloads generated in {gen_s:.1f} s (not measured)")
    print(
        f"  null subscriber (parse + discard): {null_rate:,.0f} msgs/s "
        f"({null_state['n']}/{published_null} received)"
    )
    print(
        f"  end to end (publish → committed rows): {e2e_rate:,.0f} samples/s = "
        f"{report['ratio_to_null_subscriber']} × null subscriber; {counters.batches} batches, "
        f"{counters.duplicates} duplicates, {counters.rejected} rejected (others' traffic)"
    )
    print(f"  raw binary COPY of the same rows: {copy_rate:,.0f} rows/s")
    print(f"  published {published}, stored {stored}, lost {lost}")
    print("  where the time goes (CPU µs per sample, end-to-end phase):")
    for name, seconds in per_msg.items():
        print(f"    {seconds / n * 1e6:7.1f}  {name}")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        print("  decoding thread, cProfile by own time:")
        print("\n".join("    " + line for line in out.getvalue().splitlines()[:40]))
    print(json.dumps(report))
    return 0 if lost == 0 else 1


def copy_baseline(connection, rows) -> float:
    """One binary COPY of the decoded rows straight into the partitioned table."""
    from devices.decoding import TYPED_COLUMNS, use_packed_arrays
    from ingest.storage import _SAMPLE_TYPES
    from inverters.telemetry import SAMPLE_TABLE

    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {SAMPLE_TABLE}")
    types = list(_SAMPLE_TYPES)
    types[1] = "timestamptz"
    cols = ", ".join(["inverter_id", "ts", "layout_id", *TYPED_COLUMNS, "fault_codes", "vals"])
    raw = connection.connection
    t = time.perf_counter()
    with raw.cursor() as cur:
        use_packed_arrays(cur)
        with cur.copy(f"COPY {SAMPLE_TABLE} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    raw.commit()
    return len(rows) / (time.perf_counter() - t)


if __name__ == "__main__":
    sys.exit(main())
