"""Firmware delivery to simulated gateways and inverters through the real Mosquitto at
127.0.0.1:1883: the gateway pulls the image in chunks, checks it and installs it on itself or
on an inverter over Modbus; corrupted chunks, wrong images, power cuts and lost connections end
the way a device would end them."""

import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices import protocol
from devices.ota import Offer, build_image, sha256_hex
from devices.registermap import RegisterMap
from simulator.clock import SimClock
from simulator.control import send_control
from simulator.environment import Site
from simulator.fleet import FleetThread
from simulator.gateway import GatewayOptions
from simulator.ota import OtaFault
from simulator.sources import GatewaySpec, InverterSpec
from tests.ota_peer import OtaPeer, new_job

BROKER = "mqtt://127.0.0.1:1883?version=311"
FAST = GatewayOptions(restart_scale=0.02, persistent_session=False, ota_chunk_timeout_s=2.0)
CHUNK = 16 * 1024
USED_SERIALS: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _clean_broker():
    """Remove the retained status messages the test gateways leave on the broker."""
    yield
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cleaner{uuid.uuid4().hex[:8]}")
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


@pytest.fixture
def peer():
    made = OtaPeer()
    yield made
    made.close()


def gateway_spec(*models: str, firmware: str = "10.00") -> GatewaySpec:
    serial = f"GW{uuid.uuid4().hex[:10].upper()}"
    USED_SERIALS.append(serial)
    inverters = tuple(
        InverterSpec(f"{serial}I{a}", model, a, firmware={"dsp": "01.20", "lcd": "02.00"})
        for a, model in enumerate(models, start=1)
    )
    return GatewaySpec(serial, inverters, firmware=firmware, site=Site())


def run_fleet(
    *specs: GatewaySpec, options: GatewayOptions = FAST, control_topic: str | None = None
) -> FleetThread:
    clock = SimClock(time.time(), speed=0)  # no polling: only the firmware job on the wire
    return FleetThread(
        list(specs),
        mqtt_url=BROKER,
        clock=clock,
        options=options,
        control=control_topic is not None,
        control_topic=control_topic,
    )


def gateway_offer(peer: OtaPeer, version: str = "10.10", size: int = 100_000, **image) -> Offer:
    data = build_image(image.get("model", "CPS WiFi Kit"), "gateway", version, size)
    job = new_job()
    peer.serve(job, data)
    return Offer(job, len(data), sha256_hex(data), version, "CPS WiFi Kit", CHUNK)


def inverter_offer(
    peer: OtaPeer, model: str, ftype: str = "dsp", version: str = "01.30", size: int = 40_000
) -> Offer:
    data = build_image(model, ftype, version, size)
    job = new_job()
    peer.serve(job, data)
    return Offer(job, len(data), sha256_hex(data), version, model, CHUNK, "inverter", 1, ftype)


def test_gateway_firmware_is_pulled_checked_and_runs_after_the_restart(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    with run_fleet(spec) as fleet:
        offer = gateway_offer(peer, "10.10", 200_000)
        reply = peer.offer(spec.serial, offer)
        assert reply.ok, reply.error
        final = peer.final(offer.job)
        assert (final.state, final.version, final.received) == ("succeeded", "10.10", offer.size)
        states = [r.state for r in peer.reports(offer.job)]
        assert states[0] == "downloading"
        assert states[-4:] == ["verifying", "installing", "rebooting", "succeeded"]
        assert peer.status[spec.serial].online and peer.status[spec.serial].firmware == "10.10"
        assert fleet.call(lambda: fleet.fleet.gateway(spec.serial).stats["restarts"]) == 1
        requests = [s.message for s in peer.requests(offer.job)]
        offsets = sorted(o for r in requests for o, _n in r.pieces())
        assert offsets == list(range(0, offer.size, CHUNK))  # every chunk once, none again
        # several chunks per request, never more than the window in one
        assert len(requests) < offer.chunks
        assert all(r.length <= FAST.ota_window * CHUNK for r in requests)


def test_inverter_firmware_goes_over_modbus_and_the_version_register_changes(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    inverter_serial = spec.inverters[0].serial
    with run_fleet(spec) as fleet:
        inverter = fleet.call(lambda: fleet.fleet.inverter(inverter_serial))
        assert fleet.call(inverter.firmware_versions)["dsp"] == "01.20"
        offer = inverter_offer(peer, "ECH10K-TH-EU", "dsp", "01.30", 50_000)
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job)
        assert (final.state, final.version) == ("succeeded", "01.30"), final.error
        versions = fleet.call(inverter.firmware_versions)
        assert versions["dsp"] == "01.30" and versions["lcd"] == "02.00"
        # what the portal's next device-information read decodes
        assert fleet.inverter_values(inverter_serial)["dsp_version"] == "01.30"
        assert fleet.call(lambda: inverter.firmware_receiver.installs) == 1
        line = fleet.call(lambda: fleet.fleet.gateway(spec.serial).line.transactions)
        assert line > 50_000 // 240  # one FC16 write per 240 bytes, on the RS-485 line


def test_a_corrupted_chunk_fails_the_hash_and_the_old_firmware_keeps_running(peer):
    spec = gateway_spec("ECH10K-TH-EU", firmware="10.00")
    with run_fleet(spec) as fleet:
        fleet.arm_ota_fault(spec.serial, OtaFault("corrupt_chunk"))
        offer = gateway_offer(peer, "10.20")
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job)
        assert final.state == "failed"
        assert final.error.startswith("SHA-256 mismatch")
        assert final.error.endswith("running 10.00") and final.version == "10.00"
        assert "installing" not in [r.state for r in peer.reports(offer.job)]
        assert peer.status[spec.serial].firmware == "10.00"


def test_a_corrupted_chunk_for_an_inverter_leaves_its_version_alone(peer):
    spec = gateway_spec("ECH6K-SML-EU")
    with run_fleet(spec) as fleet:
        fleet.arm_ota_fault(spec.serial, OtaFault("corrupt_chunk"), spec.inverters[0].serial)
        offer = inverter_offer(peer, "ECH6K-SML-EU", "lcd", "02.10")
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job)
        assert final.state == "failed" and final.error.startswith("SHA-256 mismatch")
        assert final.version == "02.00"
        assert fleet.inverter_values(spec.inverters[0].serial)["lcd_version"] == "02.00"


def test_an_image_built_for_another_model_is_refused_by_the_device(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    with run_fleet(spec) as fleet:
        offer = inverter_offer(peer, "ECH6K-SML-EU", "dsp", "01.30", 200_000)
        offer = Offer(**{**offer.__dict__, "model": "ECH10K-TH-EU"})  # the cloud got it wrong
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job)
        assert final.state == "failed"
        assert "image is for model ECH6K-SML-EU, this device is ECH10K-TH-EU" in final.error
        assert fleet.inverter_values(spec.inverters[0].serial)["dsp_version"] == "01.20"
        # refused at the first chunk: no more than the first window was asked for
        assert len(peer.requests(offer.job)) <= FAST.ota_window < offer.chunks


def test_power_lost_during_a_gateway_install_restarts_on_the_old_version(peer):
    spec = gateway_spec("ECH10K-TH-EU", firmware="10.00")
    with run_fleet(spec) as fleet:
        fleet.arm_ota_fault(spec.serial, OtaFault("power_loss"))
        offer = gateway_offer(peer, "10.30")
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job)
        assert (final.state, final.version) == ("failed", "10.00")
        assert final.error == "power lost during install; running 10.00"
        assert fleet.call(lambda: fleet.fleet.gateway(spec.serial).stats["restarts"]) == 1
        assert peer.status[spec.serial].online and peer.status[spec.serial].firmware == "10.00"


def test_power_lost_during_an_inverter_install_keeps_the_old_version(peer):
    spec = gateway_spec("ECH20K-TH-EU")
    topic = f"mcsim-test/{uuid.uuid4().hex[:8]}"
    inverter_serial = spec.inverters[0].serial
    with run_fleet(spec, control_topic=topic):
        request = {"action": "ota_fault", "inverter": inverter_serial, "fault": "power_loss"}
        result = send_control(BROKER, request, topic=topic)
        assert result["ok"] and result["result"] == {
            "gateway": spec.serial,
            "armed": {inverter_serial: {"kind": "power_loss", "at_pct": 50.0, "seconds": 5.0}},
        }
        offer = inverter_offer(peer, "ECH20K-TH-EU", "dsp", "01.40")
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job)
        assert final.state == "failed"
        assert final.error == "power lost during install; running 01.20"
        status = send_control(
            BROKER, {"action": "status", "inverter": inverter_serial}, topic=topic
        )
        assert status["result"]["firmware"]["dsp"] == "01.20"


def test_a_lost_connection_mid_transfer_resumes_where_the_gateway_was(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    with run_fleet(spec) as fleet:
        fleet.arm_ota_fault(spec.serial, OtaFault("offline", at_pct=40, seconds=1.5))
        offer = gateway_offer(peer, "10.40", 200_000)
        assert peer.offer(spec.serial, offer).ok
        final = peer.final(offer.job, timeout=20)
        assert (final.state, final.version) == ("succeeded", "10.40")
        gateway = fleet.call(lambda: fleet.fleet.gateway(spec.serial))
        assert fleet.call(lambda: gateway.stats["outages"]) == 1
        job, held, dropped_at = fleet.call(lambda: gateway.ota.last_outage)
        assert job == offer.job and 0.4 * offer.size <= held < offer.size
        requests = peer.requests(offer.job)
        after = [r.message.offset for r in requests if r.at > dropped_at]
        assert after and min(after) >= held  # resumed where it was, never below
        assert [r.message.offset for r in requests].count(0) == 1
        resumed = [r for r in peer.reports(offer.job) if r.state == "downloading"]
        assert any(r.received == held for r in resumed)  # it says where it goes on from


def test_the_same_job_offered_twice_is_flashed_once(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    with run_fleet(spec) as fleet:
        offer = inverter_offer(peer, "ECH10K-TH-EU", "lcd", "02.20")
        assert peer.offer(spec.serial, offer).ok
        assert peer.final(offer.job).state == "succeeded"
        again = peer.offer(spec.serial, offer)
        assert again.ok and again.result["state"] == "succeeded"
        peer.wait(lambda: len(_finals(peer, offer.job)) == 2, 5, "the final report again")
        # the same command again (a cloud that uses the job id as the command id): no second
        # reply, but the final report once more
        again = inverter_offer(peer, "ECH10K-TH-EU", "lcd", "02.30")
        assert peer.offer(spec.serial, again, command_id=again.job).ok
        assert peer.final(again.job).state == "succeeded"
        peer.send(spec.serial, again, command_id=again.job)
        peer.wait(lambda: len(_finals(peer, again.job)) == 2, 5, "the final report again")
        inverter = fleet.call(lambda: fleet.fleet.inverter(spec.inverters[0].serial))
        assert fleet.call(lambda: inverter.firmware_receiver.installs) == 2  # one per job
        assert [r.message.offset for r in peer.requests(offer.job)].count(0) == 1
        assert [r.message.offset for r in peer.requests(again.job)].count(0) == 1


def _finals(peer: OtaPeer, job: str) -> list:
    return [r for r in peer.reports(job) if r.state in ("succeeded", "failed")]


def test_a_busy_gateway_refuses_a_second_job_and_bad_offers_are_refused(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    with run_fleet(spec):
        first = gateway_offer(peer, "10.50", 200_000)
        peer.hold(first.job)  # no answers yet: the gateway stays busy downloading
        assert peer.offer(spec.serial, first).ok
        second = gateway_offer(peer, "10.60")
        reply = peer.offer(spec.serial, second)
        assert not reply.ok and reply.error == f"busy with firmware job {first.job}"
        peer.fail(first.job, "job cancelled")  # the cloud ends the first one
        final = peer.final(first.job)
        assert final.state == "failed" and final.error.startswith("job cancelled")

        wrong_address = inverter_offer(peer, "ECH10K-TH-EU")
        wrong_address = Offer(**{**wrong_address.__dict__, "address": 7})
        reply = peer.offer(spec.serial, wrong_address)
        assert reply.error == "no inverter at address 7 on this gateway"
        trip = inverter_offer(peer, "ECH10K-TH-EU", "trip_board")
        reply = peer.offer(spec.serial, trip)
        assert reply.error == (
            "model ECH10K-TH-EU has no firmware type 'trip_board' "
            "(it has: dsp, slave_dsp, lcd, arc)"
        )
        huge = Offer(new_job(), 64 * 1024 * 1024, "0" * 64, "11.00", "CPS WiFi Kit")
        reply = peer.offer(spec.serial, huge)
        assert reply.error.startswith("image too large: 67108864 bytes")


def test_a_light_mode_gateway_upgrades_its_own_firmware_and_its_inverters(peer):
    spec = gateway_spec("ECH10K-TH-EU")
    light = GatewayOptions(
        restart_scale=0.02, persistent_session=False, ota_chunk_timeout_s=2.0, modbus=False
    )
    with run_fleet(spec, options=light) as fleet:
        offer = gateway_offer(peer, "10.70", 150_000)
        assert peer.offer(spec.serial, offer).ok
        assert peer.final(offer.job).version == "10.70"
        assert peer.status[spec.serial].firmware == "10.70"
        assert fleet.call(lambda: fleet.fleet.gateway(spec.serial).line) is None
        offer = inverter_offer(peer, "ECH10K-TH-EU", "arc", "00.90")
        assert peer.offer(spec.serial, offer).ok
        assert peer.final(offer.job).version == "00.90"
        assert fleet.inverter_values(spec.inverters[0].serial)["arc_version"] == "00.90"


def test_every_model_lists_the_firmware_types_it_takes():
    for model in ("ECH6K-SML-EU", "ECH10K-TH-EU", "ECH20K-TH-EU"):
        types = RegisterMap.for_model(model).firmware_types
        assert set(types) == {"dsp", "slave_dsp", "lcd", "arc"}
        assert types["dsp"].version_point == "dsp_version"
