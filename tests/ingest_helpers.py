"""Fleets, uploads and a running ingest for the device-layer tests (ingest, storage, alarms,
fuzzing, remote operations): gateways with inverters, what a gateway publishes for them, a
gateway-like publisher, and the ingest service in a thread of the test process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from devices import protocol
from devices.registermap import RegisterMap
from gateways.models import Gateway
from ingest.service import IngestService, run_in_thread
from inverters.models import Inverter
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.services import wait_for

TH, SML = "ECH10K-TH-EU", "ECH6K-SML-EU"


def make_fleet(
    n_gateways: int = 1,
    models: Iterable[str] = (TH,),
    *,
    prefix: str = "GWT",
    tz: str = "Europe/Rome",
    upload_interval_s: int = 60,
) -> list[tuple[Gateway, list[Inverter]]]:
    """Gateways with inverters (one per model, bus addresses 1, 2, …) on one site of a new
    company; serial numbers `<prefix>00000`, `<prefix>00000I1`, …"""
    site = SiteFactory(name="Test site", time_zone=tz)
    fleet = []
    for g in range(n_gateways):
        gateway = GatewayFactory(
            serial_number=f"{prefix}{g:05d}", site=site, upload_interval_s=upload_interval_s
        )
        inverters = [
            InverterFactory(
                serial_number=f"{prefix}{g:05d}I{a}", model=model, gateway=gateway, modbus_address=a
            )
            for a, model in enumerate(models, start=1)
        ]
        fleet.append((gateway, inverters))
    return fleet


def register_image(model: str, values: Mapping[str, Any] | None = None) -> dict[tuple, list]:
    """Every poll block of a model: defaults from the map, `values` encoded over them."""
    rm = RegisterMap.for_model(model)
    words: dict[tuple[str, int], int] = {}
    for table, segments in rm.raw_block_layout().items():
        for seg in segments:
            for i, w in enumerate(seg.values):
                words[(table, seg.start + i)] = w
    for key, value in (values or {}).items():
        p = rm.point(key)
        for i, w in enumerate(rm.encode_value(key, value)):
            words[(p.table, p.address + i)] = w
    return {
        (b.table, b.start): [words.get((b.table, b.start + i), 0) for i in range(b.count)]
        for b in rm.poll_blocks
    }


def reading(
    inverter: Inverter,
    values: Mapping[str, Any] | None = None,
    *,
    hourly: bool = False,
    model: str | None = None,
) -> protocol.DeviceReading:
    """What a gateway uploads for one inverter (the hourly block only when `hourly`)."""
    model = model or inverter.model
    rm = RegisterMap.for_model(model)
    image = register_image(model, values)
    blocks = tuple(
        protocol.Block(b.table, b.start, tuple(image[(b.table, b.start)]))
        for b in rm.poll_blocks
        if hourly or b.interval_s < 3600
    )
    return protocol.DeviceReading(inverter.modbus_address, inverter.serial_number, model, blocks)


def telemetry(seq: int, ts_ms: int, *readings: protocol.DeviceReading) -> bytes:
    """One telemetry message of a gateway, encoded as it goes over MQTT."""
    return protocol.TelemetryMessage(seq, ts_ms, tuple(readings)).encode()


def now_ms() -> int:
    return int(time.time() * 1000)


class Publisher:
    """A gateway-like paho client that publishes QoS 1 and waits for the broker's PUBACKs."""

    def __init__(self, broker: protocol.BrokerAddress, client_id: str = "test-publisher"):
        self.client = protocol.make_client(client_id, broker, persistent=False)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        protocol.connect_client(self.client, broker, persistent=False)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def telemetry(self, gateway: Gateway, payload: bytes) -> None:
        self.publish(protocol.topic(gateway.serial_number, protocol.TELEMETRY), payload)

    def flush(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert all(i.is_published() for i in self.infos), "broker did not acknowledge"
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def publisher(broker: protocol.BrokerAddress, client_id: str = "test-publisher"):
    """A connected Publisher, closed (after its last PUBACK) when the block ends."""
    pub = Publisher(broker, client_id)
    try:
        yield pub
    finally:
        pub.close()


@contextlib.contextmanager
def running_ingest(broker: protocol.BrokerAddress, client_id: str = "test-ingest", **kwargs):
    """IngestService in a thread of this process; stopped (and its DB connection closed)."""
    kwargs.setdefault("flush_interval", 0.1)
    service = IngestService(broker, client_id=client_id, log_interval=3600, **kwargs)
    thread = run_in_thread(service)
    try:
        wait_for(service.connected.is_set, 10, "ingest to connect")
        yield service
    finally:
        service.stop()
        thread.join(15)
        assert not thread.is_alive(), "ingest did not stop"


def settled(service: IngestService, messages: int) -> Callable[[], bool]:
    """True once `messages` messages went through a committed batch."""
    return lambda: service.counters.committed >= messages
