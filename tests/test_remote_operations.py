"""Remote operations end to end: service call → Celery worker → Mosquitto → simulated gateway →
Modbus RTU → simulated inverter → reply → record. Everything is real: a private Mosquitto, a
`celery worker` subprocess on the test database, ingest in a thread, the simulator's gateways
and pymodbus inverters. Refusals are checked by listening on the broker for command frames.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from django.core.exceptions import PermissionDenied
from guardian.shortcuts import assign_perm

from devices import protocol
from gateways.models import GatewayStatus
from inverters.telemetry import GatewayReply, Sample
from maintenance.dispatch import close_reply_waiter, complete, wait_until_finished
from maintenance.models import OperationState, RemoteOperation
from maintenance.remote import (
    OperationRefused,
    configure_gateway,
    read_registers,
    reset_gateway,
    scan_bus,
    set_mode,
    set_power,
    set_smart_load,
    write_registers,
)
from maintenance.tasks import sweep_operations as sweep
from simulator.clock import SimClock
from simulator.environment import Site as SimSite
from simulator.fleet import FleetThread
from simulator.sources import GatewaySpec, InverterSpec
from tests.browser import CHROMIUM, PASSWORD, sign_in
from tests.device_rig import (
    gateway_status,
    start_worker,
    stop_process,
    tasks_to,
    yesterday_noon_in_rome,
)
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.ingest_helpers import TH, running_ingest
from tests.services import Mosquitto, free_port, needs_mosquitto, wait_for

pytestmark = [needs_mosquitto, pytest.mark.django_db(transaction=True)]

GATEWAY_SN = "GWOPS00001"
INVERTER_SN = "GWOPS00001I1"


# --- services -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    mosquitto = Mosquitto(tmp_path_factory.mktemp("ops-broker")).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="module")
def worker(django_db_setup, broker, tmp_path_factory):
    queue = f"ops-test-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path_factory.mktemp("ops-worker") / "worker.log"
    proc = start_worker(queue, broker.url, log_path)
    yield SimpleNamespace(queue=queue, proc=proc, log=log_path)
    stop_process(proc)


class CommandListener:
    """Every command published to any gateway, as the broker delivers it."""

    def __init__(self, broker: protocol.BrokerAddress) -> None:
        self.commands: list[protocol.Command] = []
        self._subscribed = threading.Event()
        self.client = protocol.make_client(f"cmd-listener-{uuid.uuid4().hex[:6]}", broker)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{protocol.TOPIC_ROOT}/+/cmd", 1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        protocol.connect_client(self.client, broker, persistent=False)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, _c, _u, message: mqtt.MQTTMessage) -> None:
        self.commands.append(protocol.Command.decode(message.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def rig(tenants, broker, worker, settings):
    """SunFix's site with one gateway and one ECH10K inverter, simulated and online; the
    site is granted to the owner."""
    settings.MQTT_URL = broker.url
    site = SiteFactory(company=tenants.sunfix, name="Ops test site")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    gateway = GatewayFactory(serial_number=GATEWAY_SN, site=site, upload_interval_s=3600)
    inverter = InverterFactory(serial_number=INVERTER_SN, model=TH, gateway=gateway)
    spec = GatewaySpec(
        serial=GATEWAY_SN,
        inverters=(InverterSpec(INVERTER_SN, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(45.46, 9.19, "Europe/Rome"),
    )
    clock = SimClock(speed=0, start=yesterday_noon_in_rome())
    with (
        tasks_to(worker.queue),
        running_ingest(broker.broker, client_id=f"ops-ingest-{uuid.uuid4().hex[:6]}") as ingest,
        FleetThread([spec], mqtt_url=broker.url, clock=clock) as sim,
    ):
        wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 15, "gateway online")
        listener = CommandListener(broker.broker)
        try:
            yield SimpleNamespace(
                t=tenants,
                site=site,
                gateway=gateway,
                inverter=inverter,
                sim=sim,
                clock=clock,
                ingest=ingest,
                listener=listener,
                worker=worker,
            )
        finally:
            listener.close()
            close_reply_waiter()


def finished(operation: RemoteOperation, timeout: float = 30) -> RemoteOperation:
    operation = wait_until_finished(operation, timeout)
    assert operation.is_finished, f"still {operation.state}: {operation.summary}"
    return operation


def sim_settings(rig) -> dict:
    return rig.sim.call(lambda: rig.sim.fleet.inverter(INVERTER_SN).settings())


# --- reads and writes ---------------------------------------------------------------------------


def test_read_returns_the_simulators_true_values_with_units_and_scale(rig):
    keys = ["batt_soc", "batt_voltage", "batt_current", "pv_power", "grid_frequency", "run_status"]
    operation = finished(read_registers(rig.inverter, keys, acting_user=rig.t.sunfix_om))
    truth = rig.sim.inverter_values(INVERTER_SN)

    assert operation.state == OperationState.SUCCEEDED, operation.error
    values = operation.result["values"]
    assert set(values) == set(keys)
    assert values["batt_voltage"]["unit"] == "V"
    assert values["batt_voltage"]["value"] == pytest.approx(truth["batt_voltage"], abs=0.1)
    assert values["batt_current"]["value"] == pytest.approx(truth["batt_current"], abs=0.1)
    assert values["grid_frequency"]["value"] == pytest.approx(truth["grid_frequency"], abs=0.01)
    assert values["grid_frequency"]["unit"] == "Hz"
    assert values["batt_soc"]["value"] == pytest.approx(truth["batt_soc"], abs=1)
    assert values["run_status"]["value"] == truth["run_status"]
    assert values["batt_voltage"]["display"].endswith(" V")
    assert operation.user == rig.t.sunfix_om and operation.user_email == "om@sunfix.example"
    assert (
        operation.sent_at and operation.finished_at and operation.sent_at <= operation.finished_at
    )
    # One command carried the reads; the gateway received exactly that one.
    assert [c.id for c in rig.listener.commands] == [operation.command_id]


def test_a_group_read_returns_every_point_of_the_group(rig):
    operation = finished(read_registers(rig.inverter, group="TOU", acting_user=rig.t.sunfix_admin))
    assert operation.state == OperationState.SUCCEEDED, operation.error
    values = operation.result["values"]
    assert values["tou_bat_from_grid_power"]["value"] == 3
    assert values["tou_bat_from_grid_start"]["value"] == "22:00"
    assert values["tou1_weekdays"]["value"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def test_a_write_changes_the_simulated_register_and_the_read_back_confirms_it(rig):
    operation = finished(
        write_registers(rig.inverter, {"export_limit_power": 7.5}, acting_user=rig.t.sunfix_om)
    )
    assert operation.state == OperationState.SUCCEEDED, operation.error
    assert operation.before["values"]["export_limit_power"]["value"] == 10
    assert operation.after["values"]["export_limit_power"]["value"] == 7.5
    assert operation.after["values"]["export_limit_power"]["display"] == "7.5 kW"
    assert sim_settings(rig)["export_limit_power"] == 7.5


def test_power_off_and_on_switch_the_simulated_inverter(rig):
    off = finished(set_power(rig.inverter, on=False, acting_user=rig.t.sunfix_om))
    assert off.state == OperationState.SUCCEEDED, off.error
    assert sim_settings(rig)["power_switch"] == "off"
    assert off.before["values"]["power_switch"]["display"] == "On"
    assert off.after["values"]["power_switch"]["display"] == "Off"
    on = finished(set_power(rig.inverter, on=True, acting_user=rig.t.sunfix_om))
    assert on.state == OperationState.SUCCEEDED and sim_settings(rig)["power_switch"] == "on"


def test_a_modbus_exception_from_the_device_is_a_failed_operation_with_its_name(rig):
    # The map allows -1..1; the inverter's grid code refuses |PF| < 0.8.
    operation = finished(
        write_registers(rig.inverter, {"power_factor_setpoint": 0.5}, acting_user=rig.t.sunfix_om)
    )
    assert operation.state == OperationState.FAILED
    assert "ILLEGAL_DATA_VALUE" in operation.error and "PF_Set" in operation.error
    assert operation.before["values"]["power_factor_setpoint"]["value"] == 1
    assert operation.after["values"]["power_factor_setpoint"]["value"] == 1
    assert sim_settings(rig)["power_factor_setpoint"] == 1


def test_refused_requests_say_why_and_publish_no_frame(rig):
    t, inverter = rig.t, rig.inverter
    with pytest.raises(OperationRefused) as out_of_range:
        write_registers(inverter, {"export_limit_power": 12}, acting_user=t.sunfix_om)
    assert "out of range" in out_of_range.value.message
    assert "export_limit_power" in out_of_range.value.errors
    with pytest.raises(OperationRefused) as input_register:
        write_registers(inverter, {"batt_soc": 50}, acting_user=t.sunfix_om)
    assert "input register" in input_register.value.message
    for action in (
        lambda: write_registers(inverter, {"export_limit_power": 5}, acting_user=t.owner),
        lambda: set_power(inverter, on=False, acting_user=t.owner),
        lambda: set_mode(inverter, "pv_mode", acting_user=t.owner),
        lambda: read_registers(inverter, ["batt_soc"], acting_user=t.owner),
        lambda: configure_gateway(rig.gateway, {"upload_interval_s": 30}, acting_user=t.owner),
        lambda: reset_gateway(rig.gateway, acting_user=t.owner),
        lambda: scan_bus(rig.gateway, acting_user=t.owner),
    ):
        with pytest.raises(PermissionDenied, match="Only administrators and O&M engineers"):
            action()
    with pytest.raises(PermissionDenied, match="does not exist"):
        write_registers(inverter, {"export_limit_power": 5}, acting_user=t.nordlicht_admin)

    assert not RemoteOperation.objects.exists()
    time.sleep(1.0)
    assert rig.listener.commands == []
    assert sim_settings(rig)["export_limit_power"] == 10
    # The listener does hear commands: a valid write right after is seen.
    finished(write_registers(inverter, {"export_limit_power": 5}, acting_user=t.sunfix_om))
    wait_for(lambda: len(rig.listener.commands) == 1, 5, "the valid command")


# --- offline gateways, deadlines, lost workers -----------------------------------------------


def restart_simulated_gateway(rig, seconds: float) -> None:
    gateway = rig.sim.fleet.gateway(GATEWAY_SN)
    asyncio.run_coroutine_threadsafe(gateway.restart(seconds), rig.sim.loop)


def test_a_command_for_an_offline_gateway_waits_and_is_delivered_on_reconnect(rig):
    restart_simulated_gateway(rig, 4.0)
    wait_for(lambda: gateway_status(rig.gateway) == GatewayStatus.OFFLINE, 10, "offline")
    operation = write_registers(
        rig.inverter, {"active_power_limit": 80}, acting_user=rig.t.sunfix_om
    )
    time.sleep(1.0)
    operation.refresh_from_db()
    assert operation.state == OperationState.QUEUED and operation.sent_at is None
    assert rig.listener.commands == []

    # Ingest sees the gateway announce itself and hands the waiting operation to a worker
    # (without that, the beat sweep would within seconds).
    operation = finished(operation)
    assert operation.state == OperationState.SUCCEEDED, operation.error
    assert sim_settings(rig)["active_power_limit"] == 80


def test_a_command_for_an_offline_gateway_expires_at_its_deadline_and_is_never_sent(rig):
    restart_simulated_gateway(rig, 3.0)
    wait_for(lambda: gateway_status(rig.gateway) == GatewayStatus.OFFLINE, 10, "offline")
    operation = set_power(rig.inverter, on=False, deadline_s=1.0, acting_user=rig.t.sunfix_om)
    time.sleep(1.2)
    assert sweep()["expired"] == 1
    operation.refresh_from_db()
    assert operation.state == OperationState.EXPIRED
    assert "offline until the deadline" in operation.error
    wait_for(lambda: gateway_status(rig.gateway) == GatewayStatus.ONLINE, 15, "back online")
    assert sweep()["dispatched"] == 0
    time.sleep(0.5)
    assert rig.listener.commands == []
    assert sim_settings(rig)["power_switch"] == "on"


def test_late_and_repeated_replies_change_nothing(rig):
    operation = finished(
        write_registers(rig.inverter, {"active_power_limit": 90}, acting_user=rig.t.sunfix_om)
    )
    assert operation.state == OperationState.SUCCEEDED
    forged = protocol.Reply(operation.command_id, False, {}, "bus error: late")
    assert complete(operation, forged) is False
    sweep()
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED and operation.error == ""
    # Ingest kept the gateway's one reply, once.
    wait_for(lambda: GatewayReply.objects.filter(command_id=operation.command_id).count() == 1, 10)


def test_kill_9_of_the_worker_mid_operation_leaves_nothing_sent_past_the_deadline(
    rig, broker, tmp_path
):
    # An inverter the bus does not have: each of the write's three frames waits 1 s for it.
    ghost = InverterFactory(serial_number="GWOPS00001I9", gateway=rig.gateway, modbus_address=9)
    queue = f"ops-kill-{uuid.uuid4().hex[:8]}"
    proc = start_worker(queue, broker.url, tmp_path / "worker.log")
    try:
        with tasks_to(queue):
            operation = write_registers(
                ghost, {"active_power_limit": 70}, deadline_s=8, acting_user=rig.t.sunfix_om
            )
        wait_for(lambda: operation_state(operation) == OperationState.SENT, 15, "sent")
        wait_for(lambda: published(rig, operation), 10, "the command on the broker")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        stop_process(proc)
    assert operation_state(operation) == OperationState.SENT
    operation.refresh_from_db()
    remaining = (operation.deadline.timestamp() - time.time()) + 0.2
    time.sleep(max(remaining, 0))
    sweep()
    operation.refresh_from_db()
    # The gateway's answer came in through ingest while no worker waited for it.
    assert operation.state == OperationState.FAILED, (operation.state, operation.error)
    assert "No answer from the inverter at address 9" in operation.error
    assert not RemoteOperation.objects.filter(state=OperationState.SENT).exists()


def test_an_unanswered_command_expires_when_its_worker_is_gone(rig, broker, tmp_path):
    queue = f"ops-kill-{uuid.uuid4().hex[:8]}"
    proc = start_worker(queue, broker.url, tmp_path / "worker.log")
    # The gateway dies without the portal noticing yet: the command waits at the broker.
    rig.ingest.stop()
    rig.sim.call(rig.sim.fleet.gateway(GATEWAY_SN).kill)
    try:
        with tasks_to(queue):
            operation = read_registers(
                rig.inverter, ["batt_soc"], deadline_s=3, acting_user=rig.t.sunfix_om
            )
        wait_for(lambda: operation_state(operation) == OperationState.SENT, 15, "sent")
        wait_for(lambda: published(rig, operation), 10, "the command on the broker")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        stop_process(proc)
    time.sleep(max(operation.deadline.timestamp() - time.time(), 0) + 0.2)
    assert sweep()["expired"] == 1
    operation.refresh_from_db()
    assert operation.state == OperationState.EXPIRED
    assert "before the deadline" in operation.error


def published(rig, operation: RemoteOperation) -> bool:
    return any(c.id == operation.command_id for c in rig.listener.commands)


def operation_state(operation: RemoteOperation) -> str:
    return RemoteOperation.objects.values_list("state", flat=True).get(pk=operation.pk)


# --- modes, intelligent load, gateway settings -------------------------------------------------


def upload(rig) -> None:
    rig.sim.call(rig.sim.fleet.gateway(GATEWAY_SN).upload, rig.clock.now())


def newest_batt_power(rig, ts: float) -> float:
    def stored():
        return Sample.objects.filter(inverter=rig.inverter, ts__gte=_aware(ts)).first()

    sample = wait_for(stored, 15, "a sample")
    return sample.batt_power


def _aware(ts: float):
    return dt.datetime.fromtimestamp(ts - 0.001, tz=dt.UTC)


def test_tou_mode_with_a_charging_slot_makes_the_battery_charge_in_the_next_samples(rig):
    inverter_sim = rig.sim.fleet.inverter(INVERTER_SN)
    # Midnight, a half-full battery: self-consumption discharges it to the loads.
    rig.clock.advance(12 * 3600)
    rig.sim.call(inverter_sim.refresh)
    rig.sim.call(lambda: setattr(inverter_sim.physics, "soc", 60.0))
    rig.clock.advance(300)
    upload(rig)
    before = newest_batt_power(rig, rig.clock.now())
    assert before >= 0  # discharging or idle, never charging from the grid

    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    schedule = [
        {
            "start": "00:00",
            "end": "23:59",
            "mode": "charge",
            "charge_power": 4.0,
            "weekdays": every_day,
        }
    ] + [{"mode": "empty"}] * 5
    operation = finished(
        set_mode(
            rig.inverter,
            "tou",
            {"tou_grid_charge_enable": "disabled"},
            schedule,
            acting_user=rig.t.sunfix_om,
        )
    )
    assert operation.state == OperationState.SUCCEEDED, operation.error
    assert operation.after["values"]["work_mode"]["value"] == "tou"
    assert operation.after["values"]["tou1_mode"]["value"] == "charge"

    rig.clock.advance(300)
    upload(rig)
    after = newest_batt_power(rig, rig.clock.now())
    assert after < -3000, (before, after)  # charging at about 4 kW


def test_mode_rules_refuse_what_the_inverter_cannot_do(rig):
    om, inverter = rig.t.sunfix_om, rig.inverter
    overlapping = [
        {"start": "06:00", "end": "12:00", "mode": "charge", "charge_power": 2},
        {"start": "11:00", "end": "14:00", "mode": "discharge", "discharge_power": 2},
    ]
    with pytest.raises(OperationRefused, match="overlap"):
        set_mode(inverter, "tou", {}, overlapping, acting_user=om)
    with pytest.raises(OperationRefused, match="charge power above 0"):
        set_mode(
            inverter,
            "tou",
            {},
            [{"start": "01:00", "end": "05:00", "mode": "charge"}],
            acting_user=om,
        )
    with pytest.raises(OperationRefused, match="cannot be set in this mode"):
        set_mode(inverter, "pv_mode", {"emergency_charge_power": 3}, acting_user=om)
    with pytest.raises(OperationRefused, match="Unknown operating mode"):
        set_mode(inverter, "turbo", acting_user=om)
    with pytest.raises(OperationRefused, match="different start and end"):
        set_mode(
            inverter,
            "tou",
            {"tou_bat_from_grid_start": "02:00", "tou_bat_from_grid_end": "02:00"},
            acting_user=om,
        )
    with pytest.raises(OperationRefused, match="switch-on SOC must be above"):
        set_smart_load(
            inverter,
            "battery_energy",
            {"smart_load_soc_on": 30, "smart_load_soc_off": 60},
            acting_user=om,
        )
    with pytest.raises(OperationRefused, match="recent battery reading|well-charged|low loads"):
        set_mode(inverter, "forced_off_grid", acting_user=om)
    assert not RemoteOperation.objects.exists()


def test_intelligent_load_mode_and_settings_are_written_mode_last(rig):
    operation = finished(
        set_smart_load(
            rig.inverter,
            "battery_energy",
            {"smart_load_soc_on": 80, "smart_load_soc_off": 40},
            acting_user=rig.t.sunfix_om,
        )
    )
    assert operation.state == OperationState.SUCCEEDED, operation.error
    settings_now = sim_settings(rig)
    assert settings_now["smart_load_mode"] == "battery_energy"
    assert (settings_now["smart_load_soc_on"], settings_now["smart_load_soc_off"]) == (80, 40)
    steps = [s["role"] for s in operation.command["steps"]]
    assert steps.index("write") > steps.index("before") and steps[-1] == "after"
    writes = [s for s in operation.command["steps"] if s["role"] == "write"]
    assert writes[-1]["keys"] == ["smart_load_mode"]


def test_gateway_settings_are_applied_by_the_gateway_and_stored(rig):
    operation = finished(
        configure_gateway(
            rig.gateway,
            {"upload_interval_s": 120, "serial_port": {"baud_rate": 19200, "parity": "even"}},
            restart=False,
            acting_user=rig.t.sunfix_om,
        )
    )
    assert operation.state == OperationState.SUCCEEDED, operation.error
    rig.gateway.refresh_from_db()
    assert rig.gateway.upload_interval_s == 120
    assert rig.gateway.settings["serial_port"]["baud_rate"] == 19200
    assert operation.after["settings"]["serial_port"]["parity"] == "even"
    assert operation.before["settings"]["upload_interval_s"] == 3600
    simulated = rig.sim.fleet.gateway(GATEWAY_SN).config
    assert simulated["upload_interval_s"] == 120 and simulated["serial_port"]["parity"] == "even"
    with pytest.raises(OperationRefused, match="baud_rate must be one of"):
        configure_gateway(
            rig.gateway, {"baud_rate": {"baud_rate": 1234}}, acting_user=rig.t.sunfix_om
        )


def test_intellisense_scan_reports_the_inverters_on_the_bus(rig):
    operation = finished(scan_bus(rig.gateway, 1, 3, acting_user=rig.t.sunfix_om))
    assert operation.state == OperationState.SUCCEEDED, operation.error
    assert operation.result["devices"] == [{"address": 1, "model": TH, "serial": INVERTER_SN}]


def test_gateway_reset_restarts_the_gateway(rig):
    operation = finished(reset_gateway(rig.gateway, acting_user=rig.t.sunfix_admin))
    assert operation.state == OperationState.SUCCEEDED, operation.error
    assert operation.result["restart_s"] > 0
    wait_for(lambda: gateway_status(rig.gateway) == GatewayStatus.OFFLINE, 10, "restarting")


# --- malformed answers ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_malformed_answers_fail_the_operation_with_a_reason_and_never_raise(tenants):
    """What a broken or hostile gateway may send back: the record ends failed, nothing raises."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    inverter = InverterFactory(
        serial_number="GWBAD0001I1",
        gateway__serial_number="GWBAD0001",
        gateway__site__company=tenants.sunfix,
    )
    gateway = inverter.gateway
    write = write_registers(inverter, {"export_limit_power": 5}, acting_user=tenants.sunfix_om)
    config = configure_gateway(gateway, {"upload_interval_s": 30}, acting_user=tenants.sunfix_om)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )
    frames = st.lists(
        st.dictionaries(st.sampled_from(["frame", "error", "x"]), json_values | st.text()),
        max_size=8,
    )
    results = st.fixed_dictionaries(
        {}, optional={"frames": frames | json_values, "settings": json_values}
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(result=results, which=st.sampled_from(["write", "config"]))
    def check(result, which):
        operation = write if which == "write" else config
        RemoteOperation.objects.filter(pk=operation.pk).update(state=OperationState.SENT)
        operation.refresh_from_db()
        # Through the protocol decoder, as the worker and ingest receive it.
        wire = protocol.Reply(operation.command_id, True, result).encode()
        complete(operation, protocol.Reply.decode(wire))
        operation.refresh_from_db()
        assert operation.state in (OperationState.FAILED, OperationState.SUCCEEDED)
        if operation.state == OperationState.FAILED:
            assert operation.error
        else:
            assert which == "config" and isinstance(result.get("settings"), dict)

    check()
    # A garbled frame (bad CRC) is named as such.
    RemoteOperation.objects.filter(pk=write.pk).update(state=OperationState.SENT)
    write.refresh_from_db()
    bad = [{"frame": "AQMCAAH/"}] * len(write.command["steps"])
    complete(write, protocol.Reply(write.command_id, True, {"frames": bad}))
    write.refresh_from_db()
    assert write.state == OperationState.FAILED and "Invalid answer" in write.error


# --- in the browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_an_operation_page_shows_pending_and_updates_itself_when_the_gateway_answers(
    rig, page, shots
):
    """O&M engineer's view: the gateway is away, the write waits; it comes back, the open page
    turns to Succeeded with the values before and after, without a reload."""
    rig.t.sunfix_om.set_password(PASSWORD)
    rig.t.sunfix_om.save()
    finished(read_registers(rig.inverter, group="Battery Info", acting_user=rig.t.sunfix_om))
    finished(set_power(rig.inverter, on=True, acting_user=rig.t.sunfix_om))
    with pytest.raises(PermissionDenied):
        set_power(
            rig.inverter, on=False, acting_user=rig.t.owner
        )  # refused: not recorded, not sent
    restart_simulated_gateway(rig, 5.0)
    wait_for(lambda: gateway_status(rig.gateway) == GatewayStatus.OFFLINE, 10, "offline")
    operation = set_mode(
        rig.inverter,
        "emergency_charging",
        {
            "emergency_charge_power": 2.5,
            "emergency_charge_target_soc": 90,
        },
        acting_user=rig.t.sunfix_om,
    )

    sign_in(page, rig.t.sunfix_om.email)
    page.goto(f"/maintenance/operations/{operation.pk}/")
    assert page.is_visible(".operation-state >> text=Queued")
    reloads = []
    page.on("framenavigated", lambda frame: reloads.append(frame.url))

    page.wait_for_selector(".operation-state >> text=Succeeded", timeout=30_000)
    assert reloads == []  # htmx swapped the state in place
    page.wait_for_selector("text=Emergency Charging")
    page.screenshot(path=shots / "operation.png", full_page=True)

    page.goto("/maintenance/operations/")
    page.wait_for_selector(f"text={INVERTER_SN}")
    assert page.locator("table tbody tr").count() == 3
    page.screenshot(path=shots / "operations.png")


@pytest.mark.django_db(transaction=False)
def test_an_unreachable_broker_leaves_the_operation_queued_for_the_sweep(tenants, settings):
    from maintenance.dispatch import execute

    settings.MQTT_URL = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    inverter = InverterFactory(
        serial_number="GWNOMQ0001I1",
        gateway__serial_number="GWNOMQ0001",
        gateway__status="online",
        gateway__site__company=tenants.sunfix,
    )
    operation = read_registers(inverter, ["batt_soc"], acting_user=tenants.sunfix_om)
    close_reply_waiter()
    try:
        assert execute(operation.pk) == "waiting"
    finally:
        close_reply_waiter()
    operation.refresh_from_db()
    assert operation.state == OperationState.QUEUED and operation.sent_at is None


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_an_om_engineer_reads_and_writes_parameters_of_a_simulated_inverter(rig, page, shots):
    """Maintenance → Parameters: Read shows the simulator's value, Write changes the inverter."""
    rig.t.sunfix_om.set_password(PASSWORD)
    rig.t.sunfix_om.save()
    sign_in(page, rig.t.sunfix_om.email)
    page.goto(f"/maintenance/parameters/?inverter={rig.inverter.pk}&q=Batt_SOC")
    row = page.locator("tr", has_text="[0X0603/1539]")
    row.get_by_role("button", name="Read").click()
    soc = rig.sim.inverter_values(INVERTER_SN)["batt_soc"]
    page.wait_for_selector(f"#value-batt_soc >> text={round(soc)} %", timeout=20_000)

    page.goto(f"/maintenance/parameters/?inverter={rig.inverter.pk}&q=ExportLimitPower")
    page.locator("tr", has_text="ExportLimitPower").get_by_role("link", name="Write").click()
    page.wait_for_selector("#parameter-dialog >> text=Value Range")
    page.fill("#parameter-dialog input[type=number]", "12")
    page.click("#parameter-dialog button[type=submit]")
    # The browser holds back a value outside the field's range (the server refuses it too).
    assert page.locator("#parameter-dialog input[type=number]:invalid").count() == 1
    assert not RemoteOperation.objects.filter(kind="write").exists()
    page.fill("#parameter-dialog input[type=number]", "6.5")
    page.click("#parameter-dialog button[type=submit]")
    page.wait_for_selector("#value-export_limit_power >> text=6.5 kW", timeout=20_000)
    assert sim_settings(rig)["export_limit_power"] == 6.5
    page.goto(f"/maintenance/parameters/?inverter={rig.inverter.pk}&mode=group&group=Power+Control")
    page.wait_for_selector("text=6.5 kW")
    page.screenshot(path=shots / "parameters.png")
