"""Ingest end to end: gateways publish to a real Mosquitto, ingest stores what they said.

Each test runs its own Mosquitto (a free port, its own persistence directory) so nothing else
on the machine's broker can disturb the counts (tests/services.py); fleets, uploads and the
running ingest come from tests/ingest_helpers.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db import utils as db_utils
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import protocol
from devices.registermap import RegisterMap
from gateways.models import Gateway, GatewayStatus
from ingest.batch import BatchProcessor
from ingest.service import sweep_offline
from inverters.models import Inverter, InverterStatus
from inverters.telemetry import (
    EnergyDaily,
    GatewayReply,
    InverterLatest,
    RejectedMessage,
    Sample,
    sample_counts,
)
from tests.ingest_helpers import (
    SML,
    TH,
    make_fleet,
    now_ms,
    publisher,
    reading,
    register_image,
    running_ingest,
    settled,
    telemetry,
)
from tests.services import (
    BASE_DIR,
    SHIPPED_CONF,
    Mosquitto,
    database_url,
    needs_mosquitto,
    wait_for,
)


def ingest_subprocess(broker_url: str, client_id: str, log: Path) -> subprocess.Popen:
    """`manage.py ingest` against the test database, as production runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MQTT_URL": broker_url,
        "DJANGO_SETTINGS_MODULE": "matricloud.settings",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "ingest",
            "--client-id",
            client_id,
            "--flush-interval",
            "0.2",
            "--log-interval",
            "2",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


# ---------------------------------------------------------------------------------------------
# Tests

pytestmark = [needs_mosquitto, pytest.mark.django_db(transaction=True)]

VALUES_TH = {
    "pv_power": 5321,
    "batt_power": -1200,
    "abf_grid_power": -850,
    "load_power": 2100,
    "batt_soc": 64,
    "batt_soh": 97,
    "batt_temp": 24.5,
    "temp_inverter": 41.3,
    "batt_voltage": 409.6,
    "batt_current": -2.9,
    "grid_frequency": 50.01,
    "pv_energy_total": 12345.6,
    "grid_import_energy_total": 800.2,
    "grid_export_energy_total": 4321.0,
    "run_status": "on_grid",
    "work_mode_active": 2,
}


def test_uploads_become_rows_with_the_decoded_values(mosquitto, clean_samples):
    [(gateway, [th, sml])] = make_fleet(models=(TH, SML))
    ts = now_ms() - 60_000
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        for i in range(3):
            pub.telemetry(
                gateway,
                telemetry(
                    i,
                    ts + i * 60_000,
                    reading(th, {**VALUES_TH, "pv_power": 5000 + i}, hourly=i == 0),
                    reading(sml, {"pv_power": 3000 + i, "batt_soc": 50}),
                ),
            )
        pub.flush()
        wait_for(settled(service, 3), what="3 messages")
    assert service.counters.samples == 6 and service.counters.rejected == 0
    rows = list(Sample.objects.filter(inverter=th).order_by("ts"))
    assert [r.pv_power for r in rows] == [5000, 5001, 5002]
    first = rows[0]
    assert first.ts.timestamp() * 1000 == ts
    assert (first.batt_power, first.grid_power, first.load_power) == (-1200, -850, 2100)
    assert (first.batt_soc, first.batt_soh) == (64, 97)
    assert first.batt_temp == pytest.approx(24.5) and first.inv_temp == pytest.approx(41.3)
    assert first.pv_energy_total == 12345.6  # float8: the kWh counter is exact
    assert first.import_energy_total == 800.2 and first.export_energy_total == 4321.0
    assert first.run_status == 2 and first.fault_codes == []
    # Every other point is in the compact array, in the layout's key order.
    values = first.values()
    ref = RegisterMap.for_model(TH).decode_blocks(
        {k: v for k, v in register_image(TH, {**VALUES_TH, "pv_power": 5000}).items()}
    )
    for key in ("batt_voltage", "batt_current", "grid_frequency", "bms_cycle_count"):
        assert values[key] == pytest.approx(ref[key], rel=1e-6)
    assert len(first.vals) + 18 >= 80

    latest = InverterLatest.objects.get(inverter=th)
    assert latest.pv_power == 5002 and latest.device_status == "running"
    assert latest.display_values()["run_status"] == "on_grid"
    assert latest.values()["batt_voltage"] == pytest.approx(409.6)
    assert latest.device_info["model_name"] == TH  # from the hourly block of the first upload
    th.refresh_from_db()
    gateway.refresh_from_db()
    assert th.status == InverterStatus.RUNNING and th.last_seen_at is not None
    assert th.firmware_versions["DSP"] == "01.20"
    assert gateway.status == GatewayStatus.ONLINE
    assert Sample.objects.filter(inverter=sml).count() == 3


def test_a_resent_upload_is_stored_and_counted_once(mosquitto, clean_samples):
    [(gateway, [inv])] = make_fleet()
    ts = now_ms() - 120_000
    messages = [
        telemetry(i, ts + i * 60_000, reading(inv, {"pv_energy_total": 100 + i, "pv_power": i}))
        for i in range(3)
    ]
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        for payload in messages + messages[1:] + [messages[2]]:
            pub.telemetry(gateway, payload)
        pub.flush()
        wait_for(settled(service, 6), what="6 messages")
    assert service.counters.samples == 3 and service.counters.duplicates == 3
    assert sample_counts([inv.id]) == 3
    days = EnergyDaily.objects.filter(inverter=inv)  # may straddle the site's midnight
    assert sum(d.samples for d in days) == 3
    assert sum(d.pv_kwh for d in days) == pytest.approx(2.0)


def test_bad_messages_are_rejected_with_a_reason_and_good_devices_kept(mosquitto, clean_samples):
    [(gateway, [inv]), (other_gw, [other_inv])] = make_fleet(2)
    Inverter.objects.create(
        serial_number="NOMAP0001",
        model="XYZ-1",
        gateway=gateway,
        modbus_address=9,
        company=gateway.company,
    )
    ts = now_ms()
    good = reading(inv, {"pv_power": 1})
    unknown = protocol.DeviceReading(5, "NOSUCHINV", TH, good.blocks)
    no_map = protocol.DeviceReading(9, "NOMAP0001", "XYZ-1", good.blocks)
    bad_block = protocol.DeviceReading(
        1, inv.serial_number, TH, (protocol.Block("input", 0x0600, (1, 2, 3)),)
    )
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        pub.telemetry(gateway, telemetry(1, ts, good, unknown))  # one stored, one rejected
        pub.telemetry(gateway, telemetry(2, ts + 1, reading(other_inv)))  # wrong gateway
        pub.telemetry(gateway, telemetry(3, ts + 2, bad_block))
        pub.telemetry(gateway, telemetry(4, ts + 3, no_map))
        pub.telemetry(gateway, telemetry(5, ts + 4, reading(inv, model=SML)))
        pub.telemetry(gateway, telemetry(6, 946684800000, reading(inv)))  # year 2000
        pub.publish("mc/v1/GWUNKNOWN1/telemetry", telemetry(7, ts, good))
        pub.publish(protocol.topic(gateway.serial_number, "status"), b"{not json")
        pub.flush()
        wait_for(settled(service, 8), what="8 messages")
    reasons = sorted(RejectedMessage.objects.values_list("reason", flat=True))
    assert service.counters.rejected == len(reasons) == 8
    expected = [
        "payload is not JSON",
        "unknown inverter NOSUCHINV",
        f"is not on gateway {gateway.serial_number}",
        "is not a poll block",
        "no register map for model XYZ-1",
        f"reports model {SML}",
        "outside the accepted window",
        "unknown gateway GWUNKNOWN1",
    ]
    for part in expected:
        assert any(part in r for r in reasons), (part, reasons)
    assert sample_counts([inv.id]) == 1
    rejected = RejectedMessage.objects.get(reason__contains="unknown gateway")
    assert rejected.company_id is None and bytes(rejected.payload).startswith(b'{"v":1')
    assert RejectedMessage.objects.filter(company=gateway.company).count() == 7


def test_status_last_will_and_silence_turn_a_gateway_offline(mosquitto, clean_samples):
    [(gateway, [inv]), (quiet, [quiet_inv])] = make_fleet(2, upload_interval_s=1)
    status_topic = protocol.topic(gateway.serial_number, protocol.STATUS)
    offline = protocol.StatusMessage(False).encode()
    with running_ingest(mosquitto.broker) as service:
        gw_client = protocol.make_client(
            gateway.serial_number, mosquitto.broker, will=(status_topic, offline)
        )
        protocol.connect_client(gw_client, mosquitto.broker)
        gw_client.loop_start()
        online = protocol.StatusMessage(True, "CPS WiFi Kit", "10.02", -67).encode()
        gw_client.publish(status_topic, online, qos=1, retain=True).wait_for_publish(5)
        with publisher(mosquitto.broker) as pub:
            pub.telemetry(gateway, telemetry(1, now_ms(), reading(inv)))
            pub.telemetry(quiet, telemetry(1, now_ms(), reading(quiet_inv)))
        wait_for(settled(service, 3), what="status and telemetry")
        gateway.refresh_from_db()
        assert gateway.status == GatewayStatus.ONLINE
        assert (gateway.signal_strength, gateway.firmware_version) == (-67, "10.02")
        # The gateway drops off the network: the broker publishes its last will.
        gw_client.loop_stop()
        gw_client.socket().close()
        wait_for(
            lambda: Gateway.objects.get(pk=gateway.pk).status == GatewayStatus.OFFLINE,
            10,
            "the last will",
        )
    assert Inverter.objects.get(pk=inv.pk).status == InverterStatus.OFFLINE
    # The other gateway just stops uploading: three missed intervals and the sweep says so.
    quiet.refresh_from_db()
    assert quiet.status == GatewayStatus.ONLINE
    assert sweep_offline(now=quiet.last_seen_at + dt.timedelta(seconds=2)) == (0, 0)
    assert sweep_offline(now=quiet.last_seen_at + dt.timedelta(seconds=4)) == (1, 1)
    assert Gateway.objects.get(pk=quiet.pk).status == GatewayStatus.OFFLINE
    assert Inverter.objects.get(pk=quiet_inv.pk).status == InverterStatus.OFFLINE


def test_replies_are_kept_once_for_the_operations_engine(mosquitto, clean_samples):
    [(gateway, _)] = make_fleet()
    reply_topic = protocol.topic(gateway.serial_number, protocol.REPLY)
    reply = protocol.Reply("cmd-1", True, {"registers": [1, 2]})
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        pub.publish(reply_topic, reply.encode())
        pub.publish(reply_topic, reply.encode())  # late duplicate: changes nothing
        pub.publish(reply_topic, protocol.Reply("cmd-2", False, error="timeout").encode())
        pub.flush()
        wait_for(settled(service, 3), what="replies")
    rows = {r.command_id: r for r in GatewayReply.objects.filter(gateway=gateway)}
    assert set(rows) == {"cmd-1", "cmd-2"}
    assert rows["cmd-1"].result == {"registers": [1, 2]} and rows["cmd-2"].error == "timeout"


def _publish_stream(broker, gateway, inverter, n: int, start_ms: int, rate: float, done):
    """A gateway uploading `n` samples at `rate`/s in a thread; survives broker restarts."""

    def run():
        client = protocol.make_client(f"{gateway.serial_number}-pub", broker)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 2)
        acked: set[int] = set()
        client.on_publish = lambda c, u, mid, rc, props: acked.add(mid)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect_async(broker.host, broker.port, 30, clean_start=False, properties=props)
        client.loop_start()
        topic = protocol.topic(gateway.serial_number, protocol.TELEMETRY)
        blocks = reading(inverter)
        # While the broker is away publish() says "no connection" but keeps the message and
        # sends it after the reconnect, as a gateway would; PUBACKs are counted here.
        mids = []
        for i in range(n):
            mids.append(client.publish(topic, telemetry(i, start_ms + i * 1000, blocks), 1).mid)
            time.sleep(1 / rate)
        wait_for(lambda: acked.issuperset(mids), 60, "the broker's acknowledgements")
        done["published"] = len(acked.intersection(mids))
        client.disconnect()
        client.loop_stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_broker_restart_under_load_loses_nothing(mosquitto, clean_samples):
    [(gateway, [inv])] = make_fleet()
    n, done = 600, {}
    with running_ingest(mosquitto.broker, client_id="ingest-restart") as service:
        stream = _publish_stream(mosquitto.broker, gateway, inv, n, now_ms() - n * 1000, 400, done)
        wait_for(lambda: service.counters.samples > 100, what="the first samples")
        mosquitto.stop()
        time.sleep(0.5)
        mosquitto.start()  # same port, same persistence file: sessions and queues survive
        stream.join(60)
        assert done["published"] == n
        wait_for(lambda: sample_counts([inv.id]) == n, 30, f"{n} samples")
    assert service.counters.connects >= 2


def test_kill_9_of_ingest_under_load_loses_nothing(mosquitto_factory, clean_samples, tmp_path):
    # The shipped queue settings: while ingest restarts, more than Mosquitto's default of
    # 1,000 messages may queue up for it.
    mosquitto = mosquitto_factory(_queue_settings())
    [(gateway, [inv])] = make_fleet()
    # Five seconds of uploads: the kill lands mid-stream even on a busy machine.
    n, done = 2000, {}
    log = tmp_path / "ingest.log"
    proc = ingest_subprocess(mosquitto.url, "ingest-kill", log)
    try:
        wait_for(lambda: "connected to" in log.read_text(), 30, "ingest subprocess to connect")
        stream = _publish_stream(mosquitto.broker, gateway, inv, n, now_ms() - n * 1000, 400, done)
        wait_for(lambda: sample_counts([inv.id]) > 150, 30, "the first samples")
        proc.kill()  # SIGKILL: whatever was received but not committed is not acknowledged
        proc.wait(10)
        stored_at_kill = sample_counts([inv.id])
        proc = ingest_subprocess(mosquitto.url, "ingest-kill", log)
        stream.join(60)
        assert done["published"] == n
        wait_for(lambda: sample_counts([inv.id]) == n, 60, f"{n} samples after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert stored_at_kill < n
    # 2,000 s of samples may straddle the site's local midnight: count over its days.
    days = EnergyDaily.objects.filter(inverter=inv)
    assert sum(day.samples for day in days) == n


def _queue_settings() -> str:
    keys = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages")
    lines = [
        line.strip()
        for line in SHIPPED_CONF.read_text().splitlines()
        if line.strip().split(" ")[0] in keys
    ]
    assert any(line.startswith("max_queued_messages") for line in lines), (
        "deploy/mosquitto/mosquitto.conf must lift max_queued_messages"
    )
    return "\n".join(lines)


def _burst_while_ingest_is_away(broker: Mosquitto, gateway, inverter, n: int) -> tuple[int, int]:
    """Ingest subscribes, goes away (persistent session), n uploads arrive, ingest returns."""
    with running_ingest(broker.broker, client_id="ingest-burst"):
        pass
    upload = reading(inverter)
    payloads = [telemetry(i, now_ms() - (n - i) * 1000, upload) for i in range(n)]
    with publisher(broker.broker) as pub:
        for payload in payloads:
            pub.telemetry(gateway, payload)
    with running_ingest(broker.broker, client_id="ingest-burst", batch_size=5000) as service:
        wait_for(lambda: service.counters.received > 0, 10, "the queued messages")
        previous = -1
        while service.counters.received != previous:  # until nothing more arrives
            previous = service.counters.received
            time.sleep(0.7)
        stored = service.counters.samples
    return stored, sample_counts([inverter.id])


def test_shipped_queue_settings_keep_a_burst_beyond_1000_messages(mosquitto_factory, clean_samples):
    [(gateway, [inv])] = make_fleet()
    shipped = mosquitto_factory(_queue_settings(), name="shipped")
    stored, total = _burst_while_ingest_is_away(shipped, gateway, inv, 4000)
    assert stored == total == 4000
    # The same burst against Mosquitto's defaults: the session queue silently drops messages.
    defaults = mosquitto_factory(name="defaults")
    with connection.cursor() as cur:
        cur.execute("TRUNCATE inverters_sample")
    stored, _ = _burst_while_ingest_is_away(defaults, gateway, inv, 4000)
    assert stored < 1500


def test_fleet_status_prints_one_json_object(mosquitto, clean_samples, capsys):
    [(gateway, [inv])] = make_fleet()
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        pub.telemetry(gateway, telemetry(1, now_ms() - 1000, reading(inv)))
        pub.publish("mc/v1/GWNOBODY/telemetry", b"{}")
        pub.flush()
        wait_for(settled(service, 2), what="2 messages")
    call_command("fleet_status", "--json")
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status["gateways_total"] == 1 and status["gateways_online"] == 1
    assert status["inverters_total"] == 1 and status["inverters_reporting"] == 1
    assert status["samples"] == 1 and status["rejected_messages"] == 1
    assert status["open_alarms"] == 0 and 0 < status["newest_sample_age_s"] < 60
    call_command("fleet_status")
    assert "gateways online" in capsys.readouterr().out


def test_simulated_fleet_through_ingest_stores_the_simulators_own_values(mosquitto, clean_samples):
    """simulator (gateways polling pymodbus inverters) → Mosquitto → ingest → rows."""
    from simulator.clock import SimClock
    from simulator.environment import Site as SimSite
    from simulator.fleet import FleetThread
    from simulator.sources import GatewaySpec, InverterSpec

    fleet = make_fleet(2, models=(TH, SML), prefix="GWSIM", upload_interval_s=3600)
    specs = [
        GatewaySpec(
            serial=gw.serial_number,
            inverters=tuple(InverterSpec(i.serial_number, i.model, i.modbus_address) for i in invs),
            upload_interval_s=3600,
            site=SimSite(45.46, 9.19, "Europe/Rome"),
        )
        for gw, invs in fleet
    ]
    # Frozen: the simulator's state stays what it uploaded; the test advances it.
    clock = SimClock(speed=0)
    inverters = [inv for _, invs in fleet for inv in invs]
    with (
        running_ingest(mosquitto.broker) as service,
        FleetThread(specs, mqtt_url=mosquitto.url, clock=clock) as sim,
    ):
        assert sim.call(sim.fleet.wait_online, 10) == 2

        def upload_all():
            for gw, _ in fleet:
                sim.call(sim.fleet.gateway(gw.serial_number).upload, clock.now())

        upload_all()
        sim.inject_fault(inverters[0].serial_number, "Protect0080")
        clock.advance(300)
        upload_all()
        wait_for(lambda: sample_counts([i.id for i in inverters]) == 8, 20, "8 samples")
        truth = {i.serial_number: sim.inverter_values(i.serial_number) for i in inverters}
    assert service.counters.rejected == 0
    for inv in inverters:
        rm = RegisterMap.for_model(inv.model)
        newest = Sample.objects.filter(inverter=inv).latest("ts")
        assert newest.ts.timestamp() == pytest.approx(clock.now(), abs=0.001)
        stored = newest.display_values(inv.model)
        compared = 0
        for key, expected in truth[inv.serial_number].items():
            if key not in stored or rm.point(key).table != "input":
                continue
            p = rm.point(key)
            if isinstance(expected, int | float) and not isinstance(expected, bool):
                # The registers quantise to the point's scale; float4 keeps ~7 digits.
                tolerance = p.scale + abs(expected) * 1e-6
                assert abs(stored[key] - expected) <= tolerance, (inv, key, stored[key], expected)
            else:
                assert stored[key] == expected, (inv, key)
            compared += 1
        assert compared >= 80, compared
    assert "Protect0080" in Sample.objects.filter(inverter=inverters[0]).latest("ts").fault_codes
    from alarms.models import Alarm

    assert Alarm.objects.get(inverter=inverters[0]).code == "Protect0080"
    latest = InverterLatest.objects.get(inverter=inverters[1])
    assert latest.device_info["serial_number"] == inverters[1].serial_number


class _FlakyProcessor(BatchProcessor):
    """Fails like a database would: two outages, and one upload it can never store."""

    def __init__(self, poison_ts_ms: int) -> None:
        super().__init__()
        self.outages = 2
        self.poison_ts_ms = poison_ts_ms

    def store(self, work):
        if self.outages:
            self.outages -= 1
            raise db_utils.OperationalError("server closed the connection unexpectedly")
        if any(row[1] == self.poison_ts_ms for row in work.rows):
            raise db_utils.DataError("value out of range")
        return super().store(work)


def test_database_outages_are_retried_and_a_poison_upload_is_isolated(mosquitto, clean_samples):
    [(gateway, [inv])] = make_fleet()
    ts = now_ms() - 60_000
    processor = _FlakyProcessor(poison_ts_ms=ts + 3)
    with (
        running_ingest(mosquitto.broker, processor=processor) as service,
        publisher(mosquitto.broker) as pub,
    ):
        for seq in range(6):
            pub.telemetry(gateway, telemetry(seq, ts + seq, reading(inv)))
        pub.flush()
        wait_for(settled(service, 6), 20, "the batch after the outages")
    assert service.counters.db_errors == 2
    assert service.counters.samples == 5 and service.counters.acked == 6
    assert sample_counts([inv.id]) == 5
    [rejected] = RejectedMessage.objects.all()
    assert rejected.reason.startswith("storage failed") and b'"seq":3,' in bytes(rejected.payload)
