"""Simulated gateways against the real Mosquitto at 127.0.0.1:1883: status and last will,
telemetry polled over Modbus, commands (modbus, config, scan), idempotency and deadlines,
backfill; plus the demo fleet in the database."""

import asyncio
import base64
import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadInputRegistersRequest,
    WriteSingleRegisterRequest,
)

from devices import protocol
from devices.protocol import Command, Reply, StatusMessage, TelemetryMessage
from devices.registermap import RegisterMap
from matricloud.fleet_file import write_fleet_file
from simulator.clock import SimClock
from simulator.environment import Site
from simulator.fleet import Fleet, FleetThread
from simulator.gateway import GatewayOptions
from simulator.mqtt import MqttHub
from simulator.sources import GatewaySpec, InverterSpec, specs_from_file

BROKER = "mqtt://127.0.0.1:1883?version=311"
NOON = datetime(2026, 6, 21, 10, 0, tzinfo=UTC).timestamp()
FAST = GatewayOptions(restart_scale=0.02, persistent_session=False, scan_timeout_s=0.15)


USED_SERIALS: list[str] = []


def unique(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


@pytest.fixture(autouse=True, scope="module")
def _clean_broker():
    """Remove the retained status messages the test gateways leave on the broker."""
    yield
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("cleaner"))
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    infos = [
        client.publish(protocol.topic(sn, protocol.STATUS), b"", qos=1, retain=True)
        for sn in USED_SERIALS
    ]
    for info in infos:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def gateway_spec(*models: str, interval: int = 1) -> GatewaySpec:
    serial = unique("GW")
    USED_SERIALS.append(serial)
    inverters = tuple(
        InverterSpec(f"{serial}I{a}", model, a) for a, model in enumerate(models, start=1)
    )
    return GatewaySpec(serial, inverters, upload_interval_s=interval, site=Site())


class Listener:
    """A plain subscriber on the broker, collecting what arrives."""

    def __init__(self, *filters: str) -> None:
        self.messages: list[tuple[float, mqtt.MQTTMessage]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("listener"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.connect("127.0.0.1", 1883)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        assert self._ready.wait(5)

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append((time.time(), message))

    def of(self, kind: str, serial: str | None = None) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [
                m
                for _, m in self.messages
                if m.topic.endswith("/" + kind) and (serial is None or f"/{serial}/" in m.topic)
            ]

    def wait(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError("timed out waiting for the broker")

    def send(self, serial: str, command: Command) -> None:
        self.client.publish(protocol.topic(serial, protocol.CMD), command.encode(), qos=1)

    def replies(self, serial: str, command_id: str) -> list[Reply]:
        replies = [Reply.decode(m.payload) for m in self.of("reply", serial)]
        return [r for r in replies if r.id == command_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener():
    made = []

    def make(*filters):
        made.append(Listener(*filters))
        return made[-1]

    yield make
    for item in made:
        item.close()


def deadline(seconds: float = 10.0) -> int:
    return int((time.time() + seconds) * 1000)


def test_status_is_retained_online_and_the_last_will_says_offline(listener):
    spec = gateway_spec("ECH10K-TH-EU")
    status_topic = protocol.topic(spec.serial, protocol.STATUS)
    with FleetThread([spec], mqtt_url=BROKER, options=FAST) as fleet:
        late = listener(status_topic)  # subscribes after the gateway came online
        retained = late.wait(lambda: late.of("status"))[0]
        assert retained.retain
        status = StatusMessage.decode(retained.payload)
        assert status.online and status.model == "CPS WiFi Kit" and status.signal_dbm < 0
        watcher = listener(status_topic)
        watcher.wait(lambda: watcher.of("status"))
        fleet.call(fleet.fleet.gateway(spec.serial).kill)  # socket closed, no DISCONNECT
        will = watcher.wait(
            lambda: [m for m in watcher.of("status") if not StatusMessage.decode(m.payload).online]
        )
        assert will
    after = listener(status_topic)
    last = after.wait(lambda: after.of("status"))[0]
    assert last.retain and not StatusMessage.decode(last.payload).online


def test_telemetry_is_polled_over_modbus_and_decodes_to_the_inverters_state(listener):
    spec = gateway_spec("ECH6K-SML-EU", "ECH20K-TH-EU", interval=3600)
    watch = listener(protocol.topic(spec.serial, protocol.TELEMETRY))
    clock = SimClock(NOON, speed=0)  # frozen: the state cannot move between poll and check
    with FleetThread([spec], mqtt_url=BROKER, options=FAST, clock=clock) as fleet:
        gateway = fleet.fleet.gateway(spec.serial)
        fleet.call(gateway.upload, clock.now())
        fleet.call(gateway.upload, clock.now())
        messages = watch.wait(lambda: len(watch.of("telemetry")) >= 2 and watch.of("telemetry"))
        truth = {inv.serial: fleet.inverter_values(inv.serial) for inv in spec.inverters}
        transactions = fleet.call(lambda: gateway.line.transactions)
    first, second = (TelemetryMessage.decode(m.payload) for m in messages[:2])
    assert second.seq == first.seq + 1 and first.ts_ms == int(NOON * 1000)
    assert transactions >= 2 * 7 + 2 * 6  # every block came over the RTU line
    for reading in first.devices:
        assert reading.error is None
        rm = RegisterMap.for_model(reading.model)
        decoded = rm.decode_blocks({(b.table, b.start): b.registers for b in reading.blocks})
        true = truth[reading.serial]
        for key in rm.telemetry_keys():
            if isinstance(true[key], float | int):
                assert abs(decoded[key] - true[key]) <= rm.point(key).scale / 2 + 1e-9, key
            else:
                assert decoded[key] == true[key], key
    assert [d.address for d in first.devices] == [1, 2]
    assert [d.model for d in first.devices] == ["ECH6K-SML-EU", "ECH20K-TH-EU"]


def test_telemetry_flows_at_the_upload_interval_with_increasing_seq(listener):
    spec = gateway_spec("ECH10K-TH-EU", interval=1)
    watch = listener(protocol.topic(spec.serial, protocol.TELEMETRY))
    with FleetThread([spec], mqtt_url=BROKER, options=FAST):
        messages = watch.wait(lambda: len(watch.of("telemetry")) >= 3 and watch.of("telemetry"))
    decoded = [TelemetryMessage.decode(m.payload) for m in messages]
    assert [m.seq for m in decoded] == list(range(decoded[0].seq, decoded[0].seq + len(decoded)))
    gaps = [b.ts_ms - a.ts_ms for a, b in zip(decoded, decoded[1:], strict=False)]
    assert all(900 <= gap <= 1100 for gap in gaps)


def test_modbus_command_forwards_the_frame_and_duplicates_and_expired_get_one_reply(listener):
    spec = gateway_spec("ECH10K-TH-EU", interval=3600)
    watch = listener(protocol.topic(spec.serial, protocol.REPLY))
    framer = FramerRTU(DecodePDU(False))
    clock = SimClock(NOON, speed=0)
    with FleetThread([spec], mqtt_url=BROKER, options=FAST, clock=clock) as fleet:
        inverter = fleet.fleet.inverter(spec.inverters[0].serial)
        soc = inverter.rm.point("batt_soc").address
        request = framer.buildFrame(ReadInputRegistersRequest(address=soc, count=4, dev_id=1))
        read = Command("modbus", {"frame": base64.b64encode(request).decode()}, deadline())
        watch.send(spec.serial, read)
        watch.send(spec.serial, read)  # the same command again: no second reply
        absent = framer.buildFrame(ReadInputRegistersRequest(address=soc, count=1, dev_id=9))
        silent = Command(
            "modbus", {"frame": base64.b64encode(absent).decode(), "timeout_ms": 200}, deadline()
        )
        watch.send(spec.serial, silent)
        expired = Command("scan", {}, int(time.time() * 1000) - 1000)
        watch.send(spec.serial, expired)
        mode = inverter.rm.point("work_mode").address
        bad_write = framer.buildFrame(
            WriteSingleRegisterRequest(address=mode, registers=[9], dev_id=1)
        )
        rejected = Command("modbus", {"frame": base64.b64encode(bad_write).decode()}, deadline())
        watch.send(spec.serial, rejected)
        watch.wait(lambda: watch.replies(spec.serial, silent.id))
        watch.wait(lambda: watch.replies(spec.serial, rejected.id))
        time.sleep(0.3)
        expected = fleet.call(lambda: inverter.input.words(soc, 4))
    replies = watch.replies(spec.serial, read.id)
    assert len(replies) == 1 and replies[0].ok
    frame = base64.b64decode(replies[0].result["frame"])
    used, pdu = framer.handleFrame(frame, 1, 0)
    assert used == len(frame) and pdu.registers == expected  # CRC checked by the framer
    assert [r.error for r in watch.replies(spec.serial, silent.id)] == [
        "timeout: no response on the bus"
    ]
    assert [(r.ok, r.error) for r in watch.replies(spec.serial, expired.id)] == [(False, "expired")]
    (answer,) = watch.replies(spec.serial, rejected.id)  # the device's exception, forwarded
    _, pdu = framer.handleFrame(base64.b64decode(answer.result["frame"]), 1, 0)
    assert answer.ok and isinstance(pdu, ExceptionResponse) and pdu.exception_code == 3


def test_config_changes_the_upload_interval_after_a_simulated_restart(listener):
    spec = gateway_spec("ECH6K-SML-EU", interval=1)
    watch = listener(
        protocol.topic(spec.serial, protocol.TELEMETRY),
        protocol.topic(spec.serial, protocol.STATUS),
        protocol.topic(spec.serial, protocol.REPLY),
    )
    with FleetThread([spec], mqtt_url=BROKER, options=FAST) as fleet:
        watch.wait(lambda: len(watch.of("telemetry")) >= 2)
        config = Command("config", {"upload_interval_s": 2}, deadline())
        watch.send(spec.serial, config)
        reply = watch.wait(lambda: watch.replies(spec.serial, config.id))[0]
        assert reply.ok and reply.result["applied"] == ["upload_interval_s"]
        assert 0.1 <= reply.result["restart_s"] <= 0.4
        sent_at = time.time()
        watch.wait(
            lambda: [
                m
                for t, m in watch.messages
                if t > sent_at
                and m.topic.endswith("/status")
                and StatusMessage.decode(m.payload).online
            ]
        )
        online_at = time.time()
        statuses = [StatusMessage.decode(m.payload).online for m in watch.of("status")]
        assert statuses[-2:] == [False, True]  # last will, then online again
        watch.wait(
            lambda: (
                len([t for t, m in watch.messages if t > online_at and "telemetry" in m.topic]) >= 3
            ),
            timeout=15,
        )
        assert fleet.call(lambda: fleet.fleet.gateway(spec.serial).interval) == 2
    after = [
        TelemetryMessage.decode(m.payload)
        for t, m in watch.messages
        if t > online_at and m.topic.endswith("/telemetry")
    ]
    gaps = [b.ts_ms - a.ts_ms for a, b in zip(after, after[1:], strict=False)]
    assert gaps and all(1900 <= gap <= 2100 for gap in gaps)


def test_scan_lists_the_inverters_on_the_bus(listener):
    spec = gateway_spec("ECH6K-SML-EU", "ECH10K-TH-EU", "ECH20K-TH-EU", interval=3600)
    watch = listener(protocol.topic(spec.serial, protocol.REPLY))
    with FleetThread([spec], mqtt_url=BROKER, options=FAST):
        scan = Command("scan", {"first": 1, "last": 5, "timeout_ms": 150}, deadline())
        watch.send(spec.serial, scan)
        reply = watch.wait(lambda: watch.replies(spec.serial, scan.id), timeout=15)[0]
    assert reply.ok
    assert reply.result["devices"] == [
        {"address": inv.address, "model": inv.model, "serial": inv.serial} for inv in spec.inverters
    ]


def test_backfill_publishes_history_then_continues_live(listener):
    spec = gateway_spec("ECH10K-TH-EU", interval=60)
    watch = listener(protocol.topic(spec.serial, protocol.TELEMETRY))
    clock = SimClock(time.time() - 1800, speed=0, catch_up=True)  # started below
    with FleetThread([spec], mqtt_url=BROKER, options=FAST, clock=clock):
        start = time.time() - 1800  # once the fleet is up, whatever its start took
        clock.set(start, speed=1800)  # half an hour in one second
        watch.wait(lambda: clock.live and len(watch.of("telemetry")) >= 25, timeout=15)
    decoded = [TelemetryMessage.decode(m.payload) for m in watch.of("telemetry")]
    stamps = [m.ts_ms / 1000 for m in decoded]
    assert stamps[0] < start + 120 and stamps == sorted(stamps)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert max(gaps) < 200  # one message a simulated minute (a slot may be skipped)
    assert stamps[-1] > time.time() - 120


def test_after_a_backfill_every_gateway_uploads_on_its_live_interval_at_once(listener):
    """The end of `make run`'s backfill: while catching up the gateways upload every 1800
    simulated seconds; once the clock is live each one uploads within one live interval and
    keeps that cadence. A gateway asleep on a backfill slot used to wait for it in real time,
    up to half an hour."""
    live_s, backfill_s, behind_s, speed = 2, 1800, 6 * 3600, 7201.0
    specs = [gateway_spec("ECH6K-SML-EU", interval=live_s) for _ in range(6)]
    watch = listener(*(protocol.topic(s.serial, protocol.TELEMETRY) for s in specs))
    clock = SimClock(time.time() - behind_s, speed=0, catch_up=True)  # started below

    def stamps(serial: str) -> list[float]:
        return [
            TelemetryMessage.decode(m.payload).ts_ms / 1000 for m in watch.of("telemetry", serial)
        ]

    def live_stamps(serial: str) -> list[float]:
        return [ts for ts in stamps(serial) if ts >= live_at]

    with FleetThread(
        specs, mqtt_url=BROKER, options=FAST, clock=clock, backfill_interval_s=backfill_s
    ):
        set_at = time.time()  # the backfill runs from now, whatever the fleet's start took
        clock.set(set_at - behind_s, speed=speed)
        live_at = set_at + behind_s / (speed - 1)  # about 3 real seconds from now
        give_up = live_at + 3 * live_s + 1.5 - time.time()
        with contextlib.suppress(AssertionError):  # the assertions below say who is late
            watch.wait(lambda: all(len(live_stamps(s.serial)) >= 3 for s in specs), give_up)
    for spec in specs:
        history = [ts for ts in stamps(spec.serial) if ts < live_at - backfill_s]
        assert len(history) >= 2, spec.serial  # it did backfill
    first_live = {s.serial: (live_stamps(s.serial) or [None])[0] for s in specs}
    late = {
        sn: None if ts is None else round(ts - live_at, 2)
        for sn, ts in first_live.items()
        if ts is None or ts - live_at > live_s + 0.5
    }
    assert late == {}, f"first live upload later than {live_s} s after the switch (s): {late}"
    for spec in specs:
        live = live_stamps(spec.serial)
        gaps = [b - a for a, b in zip(live, live[1:], strict=False)]
        assert len(gaps) >= 2 and all(abs(gap - live_s) < 0.1 for gap in gaps), (spec.serial, gaps)


def test_a_config_without_restart_moves_the_next_upload_to_the_new_interval(listener):
    """The gateway asleep on a slot of the old interval (an hour) wakes up and re-plans, so
    the next upload comes on the new interval's grid."""
    spec = gateway_spec("ECH6K-SML-EU", interval=3600)
    watch = listener(
        protocol.topic(spec.serial, protocol.TELEMETRY),
        protocol.topic(spec.serial, protocol.REPLY),
    )
    clock = SimClock(NOON, speed=0)  # the first slot of the hour is up to an hour away
    with FleetThread([spec], mqtt_url=BROKER, options=FAST, clock=clock) as fleet:
        config = Command("config", {"upload_interval_s": 60, "restart": False}, deadline())
        watch.send(spec.serial, config)
        reply = watch.wait(lambda: watch.replies(spec.serial, config.id))[0]
        assert reply.ok and "restart_s" not in reply.result
        clock.advance(60)  # past the first slot of a minute
        first = watch.wait(lambda: watch.of("telemetry"), timeout=5)[0]
        assert fleet.call(lambda: fleet.fleet.gateway(spec.serial).stats["restarts"]) == 0
    assert TelemetryMessage.decode(first.payload).ts_ms == int((NOON + 60) * 1000)


def test_credentials_give_each_gateway_its_serial_as_username():
    specs = [gateway_spec("ECH6K-SML-EU"), gateway_spec("ECH6K-SML-EU")]
    fleet = Fleet(specs, mqtt_url=BROKER, credentials={specs[0].serial: "s3cret"})

    async def build():
        fleet.hub = MqttHub()
        gateways = [fleet.build_gateway(spec) for spec in specs]
        await fleet.hub.close()
        return gateways

    with_password, anonymous = asyncio.run(build())
    assert (with_password.broker.username, with_password.broker.password) == (
        specs[0].serial,
        "s3cret",
    )
    assert anonymous.broker.username is None


@pytest.mark.django_db
def test_demo_fleet_is_created_once_and_feeds_the_simulator(tenants, tmp_path):
    from guardian.shortcuts import get_objects_for_user

    from gateways.models import Gateway
    from inverters.models import Inverter
    from matricloud.demo_fleet import ensure_demo_fleet
    from sites.models import Site as SiteModel

    first = ensure_demo_fleet()
    again = ensure_demo_fleet()
    assert first["created"] == {"sites": 17, "gateways": 17, "inverters": 25}
    assert again["created"] == {"sites": 0, "gateways": 0, "inverters": 0}
    helios_sites = SiteModel.objects.filter(company__path__startswith=tenants.helios.path)
    assert helios_sites.count() == 12
    assert helios_sites.filter(company=tenants.sunfix).count() == 8
    assert helios_sites.filter(country="IT").exists()
    assert helios_sites.filter(country__in=["US", "CA"]).count() >= 2
    assert SiteModel.objects.filter(company=tenants.nordlicht).count() == 5
    granted = get_objects_for_user(tenants.owner, "pv_sites.view_site")
    assert [s.company_id for s in granted] == [tenants.sunfix.pk]
    models = set(Inverter.objects.values_list("model", flat=True))
    assert models == {"ECH6K-SML-EU", "ECH10K-TH-EU", "ECH20K-TH-EU"}
    assert set(Gateway.objects.values_list("model", flat=True)) == {
        "CPS WiFi Kit",
        "CPS 4G Kit",
        "CPS ETH Kit",
    }
    fleet = tmp_path / "fleet.json"
    assert write_fleet_file(fleet) == 17
    specs = specs_from_file(fleet)
    assert len(specs) == 17
    by_serial = {inv.serial: inv for spec in specs for inv in spec.inverters}
    for fault in first["faults"]:
        serial, code = fault.split(":")
        rm = RegisterMap.for_model(by_serial[serial].model)
        assert rm.fault_code(code) is not None
    lakeshore = next(s for s in specs if s.site.name == "Lakeshore Family Home")
    assert lakeshore.site.time_zone == "America/Toronto"
    assert [inv.address for inv in lakeshore.inverters] == [1, 2]
    assert sum(inv.pv_kwp for inv in lakeshore.inverters) == pytest.approx(9.6)
