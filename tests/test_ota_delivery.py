"""Firmware delivery end to end: offer_job → the `ota` command → the simulated gateway pulls
the image from the delivery service → its reports move the job (real PostgreSQL, Mosquitto
and simulator; faults armed as the simulator's control channel arms them)."""

from __future__ import annotations

import collections
import json
import time

import pytest
from django.core.files.storage import default_storage

from devices import ota, protocol
from gateways.models import Gateway
from inverters.models import Inverter
from maintenance.dispatch import close_reply_waiter
from simulator.clock import SimClock
from simulator.environment import Site
from simulator.fleet import FleetThread
from simulator.gateway import GatewayOptions
from simulator.ota import OtaFault
from simulator.sources import GatewaySpec, InverterSpec
from tests.factories import GatewayFactory, InverterFactory
from tests.ota_helpers import (
    CountingStorage,
    ResponseSpy,
    gateway_target,
    make_target,
    make_task,
    running_delivery,
    store_release,
)
from tests.services import wait_for
from upgrades.models import DeviceKind, TargetState, UpgradeTarget
from upgrades.offers import offer_job

pytestmark = pytest.mark.django_db(transaction=True)
CHUNK = 4096
SIZE = 10 * CHUNK + 123  # the last chunk is short
WIFI = "CPS WiFi Kit"
TH = "ECH10K-TH-EU"
FAST = GatewayOptions(restart_scale=0.02, persistent_session=False, ota_chunk_timeout_s=2.0)


@pytest.fixture
def rig(settings, mosquitto):
    """Settings of a small rollout on the test broker; the worker's session closed after."""
    settings.MQTT_URL = mosquitto.url
    settings.FIRMWARE_CHUNK_BYTES = CHUNK
    yield mosquitto
    close_reply_waiter()


@pytest.fixture
def spy(rig):
    watcher = ResponseSpy(rig.broker)
    yield watcher
    watcher.close()


def simulated(rig, gateway: Gateway, *inverters: Inverter, fault: OtaFault | None = None):
    """The gateway (and its inverters) as a simulated device on the test broker."""
    spec = GatewaySpec(
        gateway.serial_number,
        tuple(
            InverterSpec(
                i.serial_number,
                i.model,
                i.modbus_address,
                firmware={k.lower(): v for k, v in i.firmware_versions.items()},
            )
            for i in inverters
        ),
        model=gateway.model,
        firmware=gateway.firmware_version or "10.00",
        site=Site(),
    )
    clock = SimClock(time.time(), speed=0)  # no polling: only the firmware job on the wire
    fleet = FleetThread([spec], mqtt_url=rig.url, clock=clock, options=FAST)
    fleet.start()
    if fault is not None:
        fleet.call(lambda: fleet.fleet.gateway(spec.serial).ota.arm(fault, None))
    return fleet


def finished(target: UpgradeTarget):
    def check():
        target.refresh_from_db()
        return target.state in (TargetState.SUCCEEDED, TargetState.FAILED)

    return check


def image(model: str, version: str, ftype: str = "gateway", size: int = SIZE) -> bytes:
    return ota.build_image(model, ftype, version, size)


def upgrade(rig, target: UpgradeTarget, fleet: FleetThread, **delivery) -> UpgradeTarget:
    """Offer the job and wait until the device has finished it."""
    try:
        with running_delivery(rig.broker, **delivery):
            assert offer_job(target)
            wait_for(finished(target), 30, "the upgrade to finish")
    finally:
        fleet.stop()
    return target


def test_a_gateway_is_upgraded_end_to_end(rig, spy):
    gateway = GatewayFactory(serial_number="GWOTA00001", firmware_version="10.00")
    target = gateway_target(gateway, image(WIFI, "10.10"), "10.10")
    fleet = simulated(rig, gateway)
    try:
        with running_delivery(rig.broker) as service:
            assert offer_job(target)
            target.refresh_from_db()
            assert target.state == TargetState.OFFERED and target.job and target.attempt == 1
            assert target.from_version == "10.00"
            assert not offer_job(target), "an offered target is not offered again"
            wait_for(finished(target), 30, "the upgrade to finish")
    finally:
        fleet.stop()
    assert target.state == TargetState.SUCCEEDED, target.reason
    assert target.reported_version == "10.10" and target.received == SIZE
    assert target.finished_at is not None
    gateway.refresh_from_db()
    assert gateway.firmware_version == "10.10"
    assert sorted(spy.offsets(target.job)) == list(range(0, SIZE, CHUNK))
    assert service.counters.chunks == 11 and service.counters.refused == 0


def test_an_inverter_is_upgraded_through_its_gateway(rig):
    inverter = InverterFactory(
        serial_number="GWOTA00002I3",
        model=TH,
        gateway__serial_number="GWOTA00002",
        gateway__firmware_version="10.00",
        modbus_address=3,
        firmware_versions={"DSP": "01.20", "LCD": "02.00"},
    )
    release = store_release(DeviceKind.INVERTER, "dsp", TH, "01.30", image(TH, "01.30", "dsp"))
    target = make_target(make_task(release, inverter.company, TH), inverter.gateway, inverter)
    upgrade(rig, target, simulated(rig, inverter.gateway, inverter))
    assert target.state == TargetState.SUCCEEDED, target.reason
    assert target.from_version == "01.20" and target.reported_version == "01.30"
    inverter.refresh_from_db()
    assert inverter.firmware_versions == {"DSP": "01.30", "LCD": "02.00"}
    assert Gateway.objects.get(pk=inverter.gateway_id).firmware_version == "10.00"


@pytest.mark.parametrize(
    ("fault", "says"),
    [("corrupt_chunk", "SHA-256 mismatch"), ("power_loss", "power lost during install")],
)
def test_a_device_failure_ends_the_job_with_the_old_version(rig, fault, says):
    gateway = GatewayFactory(serial_number="GWOTA00003", firmware_version="10.00")
    target = gateway_target(gateway, image(WIFI, "10.10"), "10.10")
    upgrade(rig, target, simulated(rig, gateway, fault=OtaFault(fault)))
    assert target.state == TargetState.FAILED
    assert says in target.reason and "running 10.00" in target.reason
    assert target.reported_version == "10.00" and target.finished_at is not None
    gateway.refresh_from_db()
    assert gateway.firmware_version == "10.00"


def test_an_image_for_another_model_is_refused_by_the_device(rig):
    gateway = GatewayFactory(serial_number="GWOTA00004", firmware_version="10.00")
    # The task says WiFi kit, but the image inside is built for the 4G kit.
    target = gateway_target(gateway, image("CPS 4G Kit", "10.10"), "10.10")
    upgrade(rig, target, simulated(rig, gateway))
    assert target.state == TargetState.FAILED
    assert "image is for model CPS 4G Kit" in target.reason
    assert target.reported_version == "10.00"
    assert Gateway.objects.get(pk=gateway.pk).firmware_version == "10.00"


def test_an_offer_the_device_refuses_fails_the_job(rig):
    inverter = InverterFactory(
        serial_number="GWOTA00009I1", model=TH, gateway__serial_number="GWOTA00009"
    )
    release = store_release(DeviceKind.INVERTER, "dsp", TH, "01.30", image(TH, "01.30", "dsp"))
    target = make_target(make_task(release, inverter.company, TH), inverter.gateway, inverter)
    target.modbus_address = 9  # the bus has nothing there
    target.save()
    upgrade(rig, target, simulated(rig, inverter.gateway, inverter))
    assert target.state == TargetState.FAILED
    assert "refused" in target.reason and "no inverter at address 9" in target.reason


def test_a_gateway_offline_mid_transfer_resumes_where_it_was(rig, spy):
    gateway = GatewayFactory(serial_number="GWOTA00005", firmware_version="10.00")
    size = 40 * CHUNK
    target = gateway_target(gateway, image(WIFI, "10.10", size=size), "10.10")
    fleet = simulated(rig, gateway, fault=OtaFault("offline", at_pct=40, seconds=1.5))
    sim_gateway = fleet.call(lambda: fleet.fleet.gateway(gateway.serial_number))
    try:
        with running_delivery(rig.broker):
            assert offer_job(target)
            wait_for(finished(target), 30, "the upgrade to finish")
            job, held, dropped_at = fleet.call(lambda: sim_gateway.ota.last_outage)
    finally:
        fleet.stop()
    assert target.state == TargetState.SUCCEEDED, target.reason
    assert job == target.job and 0.4 * size <= held < size
    served = [s for s in spy.served if s.job == target.job and not s.error]
    after = [s.offset for s in served if s.at > dropped_at]
    # After the reconnect the transfer went on from the bytes held. Requests still in flight
    # when the link dropped may reach the cloud again (QoS 1 redelivers what was not
    # acknowledged), so at most the window before `held` can go out a second time …
    window = GatewayOptions().ota_window * CHUNK
    assert after and held - window <= min(after) <= held and held in after
    # … and everything else the gateway already held was sent once: far from a second copy.
    below = collections.Counter(s.offset for s in served if s.offset < held)
    assert sorted(below) == list(range(0, held, CHUNK))
    assert all(n == 1 or (held - window <= offset and n == 2) for offset, n in below.items())
    assert sum(s.size for s in served) < 1.5 * size


def test_requests_for_foreign_stale_or_impossible_jobs_are_refused(rig, spy):
    a = GatewayFactory(serial_number="GWOTA00006")
    b = GatewayFactory(serial_number="GWOTA00007", site=a.site, company=a.company)
    target = gateway_target(a, image("CPS WiFi Kit", "2.00"), "2.00")
    with running_delivery(rig.broker) as service:
        assert offer_job(target)  # nobody listens on A's command topic: the job stays open
        target.refresh_from_db()
        job = target.job
        peer = protocol.make_client("intruder", rig.broker, persistent=False)
        protocol.connect_client(peer, rig.broker, persistent=False)
        peer.loop_start()

        def ask(serial: str, job_id: str, offset: int, length: int = CHUNK) -> None:
            request = ota.ChunkRequest(job_id, offset, length).encode()
            peer.publish(ota.job_topic(serial, ota.REQ, job_id), request, qos=1)

        try:
            ask(b.serial_number, job, 0)  # B asks for A's job
            ask(a.serial_number, "0" * 32, 0)  # a job nobody has
            ask(a.serial_number, job, SIZE)  # past the end
            ask(a.serial_number, job, 10 * CHUNK, CHUNK)  # runs past the end
            ask(a.serial_number, job, CHUNK)  # a good one
            peer.publish(ota.job_topic(a.serial_number, ota.REQ, job), b"not json", qos=1)
            peer.publish(ota.job_topic(a.serial_number, ota.REQ, job), b'{"v": 1}', qos=1)
            wait_for(lambda: len(spy.served) >= 5, 10, "five answers")
            time.sleep(0.3)
            # B's report on A's job changes nothing either.
            report = ota.StateReport(job, ota.SUCCEEDED, SIZE, version="2.00").encode()
            peer.publish(ota.job_topic(b.serial_number, ota.REQ, job), report, qos=1)
            wait_for(lambda: service.counters.stale >= 1, 10, "the foreign report")
        finally:
            peer.disconnect()
            peer.loop_stop()
    answers = {(s.serial, s.offset): (s.error, s.size) for s in spy.served}
    assert answers[(b.serial_number, 0)] == ("unknown job", 0)
    assert answers[(a.serial_number, 0)] == ("unknown job", 0)
    assert answers[(a.serial_number, SIZE)][0] == "offset past the end of the image"
    assert answers[(a.serial_number, 10 * CHUNK)][0] == "offset past the end of the image"
    assert answers[(a.serial_number, CHUNK)] == (None, CHUNK)
    assert service.counters.bad == 2 and service.counters.refused == 4
    target.refresh_from_db()
    assert target.state == TargetState.DOWNLOADING and target.received == CHUNK
    assert Gateway.objects.get(pk=a.pk).firmware_version == ""


def test_a_range_request_is_answered_chunk_by_chunk_and_a_too_long_one_is_refused(rig, spy):
    gateway = GatewayFactory(serial_number="GWOTA00012")
    data = image(WIFI, "2.00")
    target = gateway_target(gateway, data, "2.00")
    serial = gateway.serial_number
    with running_delivery(rig.broker) as service:
        assert offer_job(target)  # nobody listens on the command topic: the job stays open
        target.refresh_from_db()
        job = target.job
        peer = protocol.make_client("ranger", rig.broker, persistent=False)
        protocol.connect_client(peer, rig.broker, persistent=False)
        peer.loop_start()

        def ask(offset: int, length: int, chunk: int | None = CHUNK) -> None:
            request = ota.ChunkRequest(job, offset, length, chunk).encode()
            peer.publish(ota.job_topic(serial, ota.REQ, job), request, qos=1)

        try:
            ask(4 * CHUNK, 4 * CHUNK)  # four chunks in one request
            ask(8 * CHUNK, SIZE - 8 * CHUNK)  # the rest: three chunks, the last one short
            wait_for(lambda: len(spy.served) >= 7, 10, "seven chunks")
            ask(0, (ota.MAX_RANGE_CHUNKS + 1) * CHUNK)  # longer than the bound
            ask(0, ota.MAX_CHUNK_BYTES + 1, chunk=None)  # nor the one-chunk form
            ask(8 * CHUNK, 4 * CHUNK)  # runs past the end
            wait_for(lambda: service.counters.bad >= 2 and len(spy.served) >= 8, 10, "refusals")
            time.sleep(0.3)
        finally:
            peer.disconnect()
            peer.loop_stop()
    answers = [(s.offset, s.size, s.error) for s in spy.served if s.serial == serial]
    expected = [(o, min(CHUNK, SIZE - o), None) for o in range(4 * CHUNK, SIZE, CHUNK)]
    assert answers[:7] == expected  # one response per chunk, in order, none larger
    assert answers[7:] == [(8 * CHUNK, 0, "offset past the end of the image")]
    assert service.counters.bad == 2 and service.counters.chunks == 7
    with pytest.raises(protocol.ProtocolError):
        ota.decode_request(ota.ChunkRequest(job, 0, ota.MAX_REQUEST_BYTES + 1, None).encode())
    decoded = ota.decode_request(ota.ChunkRequest(job, 0, 8 * CHUNK, CHUNK).encode())
    assert decoded.pieces() == [(n * CHUNK, CHUNK) for n in range(8)]
    target.refresh_from_db()
    assert target.state == TargetState.DOWNLOADING


def test_reports_for_a_stale_job_change_nothing_and_a_late_success_counts(rig):
    gateway = GatewayFactory(serial_number="GWOTA00008", firmware_version="1.00")
    target = gateway_target(gateway, image("CPS WiFi Kit", "2.00"), "2.00")
    peer = protocol.make_client("device", rig.broker, persistent=False)
    protocol.connect_client(peer, rig.broker, persistent=False)
    peer.loop_start()

    def report(job: str, state: str, **kw) -> None:
        body = ota.StateReport(job, state, **kw).encode()
        peer.publish(ota.job_topic(gateway.serial_number, ota.REQ, job), body, qos=1)

    try:
        with running_delivery(rig.broker) as service:
            assert offer_job(target)
            target.refresh_from_db()
            old_job = target.job
            # The rollout gave up on it and offered again: the first job is stale now.
            UpgradeTarget.objects.filter(pk=target.pk).update(state=TargetState.WAITING)
            assert offer_job(target)
            target.refresh_from_db()
            assert target.job != old_job and target.attempt == 2
            report(old_job, ota.SUCCEEDED, received=SIZE, version="2.00")
            wait_for(lambda: service.counters.stale >= 1, 10, "the stale report")
            target.refresh_from_db()
            assert target.state == TargetState.OFFERED
            report(target.job, ota.INSTALLING, received=SIZE)
            wait_for(lambda: finished(target)() or target.state == "installing", 10, "install")
            # Failed by the rollout for want of news; then the device says it made it.
            UpgradeTarget.objects.filter(pk=target.pk).update(
                state=TargetState.FAILED, reason="no progress for 600 s"
            )
            report(target.job, ota.VERIFYING, received=SIZE)  # too late: changes nothing
            report(target.job, ota.SUCCEEDED, received=SIZE, version="2.00")
            wait_for(lambda: finished(target)() and target.state == "succeeded", 10, "success")
    finally:
        peer.disconnect()
        peer.loop_stop()
    assert target.reason == "" and target.reported_version == "2.00"
    assert Gateway.objects.get(pk=gateway.pk).firmware_version == "2.00"


def test_delivery_reads_only_the_requested_ranges(rig, settings):
    gateway = GatewayFactory(serial_number="GWOTA00010", firmware_version="10.00")
    size = 64 * CHUNK
    target = gateway_target(gateway, image(WIFI, "10.10", size=size), "10.10")
    storage = CountingStorage(location=settings.MEDIA_ROOT)
    upgrade(rig, target, simulated(rig, gateway), storage=storage)
    assert target.state == TargetState.SUCCEEDED
    assert storage.opened == 1, "one handle per release, kept open"
    assert storage.reads and max(storage.reads) == CHUNK and sum(storage.reads) == size
    assert default_storage.size(target.task.release.file.name) == size


def test_an_inverter_offer_names_its_address_and_board(rig):
    inverter = InverterFactory(serial_number="INVOTA0011", modbus_address=7)
    release = store_release(
        DeviceKind.INVERTER, "lcd", inverter.model, "3.1", image(inverter.model, "3.1", "lcd")
    )
    target = make_target(
        make_task(release, inverter.company, inverter.model), inverter.gateway, inverter
    )
    peer = protocol.make_client("device", rig.broker, persistent=False)
    got = []
    peer.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    protocol.connect_client(peer, rig.broker, persistent=False)
    peer.loop_start()
    peer.subscribe(protocol.topic(inverter.gateway.serial_number, protocol.CMD), qos=1)
    time.sleep(0.3)
    try:
        assert offer_job(target)
        wait_for(lambda: got, 5, "the command")
    finally:
        peer.disconnect()
        peer.loop_stop()
    target.refresh_from_db()
    command = got[0]
    assert command["op"] == "ota" and command["id"] == target.job
    offer = ota.Offer.from_params(command["params"])
    assert offer.target == ota.TARGET_INVERTER and offer.address == 7
    assert offer.firmware_type == "lcd" and offer.size == release.size and offer.chunk == CHUNK
    assert offer.model == inverter.model and offer.sha256 == release.sha256
    assert command["deadline"] > time.time() * 1000
    assert Inverter.objects.get(pk=inverter.pk).firmware_versions == {}
