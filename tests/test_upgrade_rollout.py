"""The rollout engine (upgrades/rollout.py): reservations, waves, the error threshold, the
parallel limit, maintenance windows in the site's time zone, preconditions, stalled and
untaken jobs, devices already up to date.

The engine's ticks are called directly; offers go to a private Mosquitto through the real
upgrades.offers. Device reports are written as the delivery service records them, except in
the end-to-end tests at the bottom, where the simulator's gateways pull real images from the
real delivery service.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import threading
import time
import uuid

import pytest
from django.utils import timezone

from devices import ota, protocol
from gateways.models import Gateway, GatewayStatus
from inverters.models import Inverter, InverterStatus
from maintenance.dispatch import close_reply_waiter
from simulator.clock import SimClock
from simulator.fleet import FleetThread
from simulator.gateway import GatewayOptions
from simulator.sources import GatewaySpec
from tests.device_rig import start_worker, stop_process, tasks_to
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.ota_helpers import running_delivery
from tests.rollout_helpers import (
    fresh,
    in_flight,
    make_release,
    make_task,
    online,
    raise_urgent_alarm,
    recover,
    report,
    set_latest,
    states,
    target_of,
)
from tests.services import Mosquitto, needs_mosquitto
from upgrades.models import DeviceKind, FirmwareType, TargetState, TaskState
from upgrades.rollout import advance, in_window
from upgrades.task_services import resume_task
from upgrades.tasks import advance_upgrades

pytestmark = [needs_mosquitto]

S = TargetState
FAST = GatewayOptions(restart_scale=0.02, ota_chunk_timeout_s=2.0)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    mosquitto = Mosquitto(tmp_path_factory.mktemp("rollout-broker")).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def mqtt(broker, settings):
    """Offers go to the private broker (a fresh session per test)."""
    settings.MQTT_URL = broker.url
    close_reply_waiter()
    yield broker
    close_reply_waiter()


@pytest.fixture
def gateways(tenants, mqtt):
    """make(n, site=…) → n online gateways of SunFix, serial numbers in creation order."""

    def make(n: int, site=None, **fields) -> list[Gateway]:
        site = site or SiteFactory(company=tenants.sunfix)
        made = [
            GatewayFactory(
                site=site,
                company=tenants.sunfix,
                status=GatewayStatus.ONLINE,
                firmware_version="1.0.0",
                **fields,
            )
            for _ in range(n)
        ]
        return sorted(made, key=lambda g: g.serial_number)

    return make


def succeed_offered(task, version: str = "2.0.0") -> int:
    """Every offered device of the task reports success."""
    offered = list(task.targets.filter(state=S.OFFERED))
    for target in offered:
        report(target, S.SUCCEEDED, reported_version=version)
    return len(offered)


# --- starting --------------------------------------------------------------------------------


def test_a_reservation_in_the_future_does_not_start_until_it_is_due(tenants, gateways):
    [gw] = gateways(1)
    at = timezone.now() + dt.timedelta(hours=2)
    task = make_task(
        tenants.sunfix, make_release(), [gw], state=TaskState.SCHEDULED, reservation_at=at
    )
    advance()
    assert fresh(task).state == TaskState.SCHEDULED
    assert states(task) == {S.WAITING: 1}
    advance(now=at + dt.timedelta(seconds=1))
    assert fresh(task).state == TaskState.RUNNING
    assert states(task) == {S.OFFERED: 1}


def test_a_task_awaiting_approval_never_starts(tenants, gateways):
    [gw] = gateways(1)
    task = make_task(
        tenants.sunfix,
        make_release(),
        [gw],
        state=TaskState.AWAITING_APPROVAL,
        reservation_at=timezone.now() - dt.timedelta(hours=1),
    )
    for _ in range(3):
        advance()
    assert fresh(task).state == TaskState.AWAITING_APPROVAL
    assert states(task) == {S.WAITING: 1}


# --- waves, threshold, parallel limit ---------------------------------------------------------


def test_waves_of_1_10_and_100_percent_open_one_after_another(tenants, gateways):
    devices = gateways(30)
    task = make_task(tenants.sunfix, make_release(), devices, waves=[1, 10, 100])
    assert sorted(set(task.targets.values_list("wave", flat=True))) == [0, 1, 2]
    advance()
    # Wave 1: one device of 30 (1 % rounded up).
    assert states(task) == {S.OFFERED: 1, S.WAITING: 29}
    assert fresh(task).current_wave == 0
    advance()
    assert states(task) == {S.OFFERED: 1, S.WAITING: 29}, "no wave opens while one is busy"
    succeed_offered(task)
    advance()
    # Wave 2: up to 10 % of 30 = 3 devices, so 2 more.
    assert fresh(task).current_wave == 1
    assert states(task) == {S.SUCCEEDED: 1, S.OFFERED: 2, S.WAITING: 27}
    succeed_offered(task)
    advance()
    assert fresh(task).current_wave == 2
    assert states(task) == {S.SUCCEEDED: 3, S.OFFERED: 27}
    succeed_offered(task)
    advance()
    task = fresh(task)
    assert task.state == TaskState.COMPLETED and task.finished_at is not None
    assert states(task) == {S.SUCCEEDED: 30}


def test_a_wave_below_its_success_rate_pauses_the_task_with_the_reason(tenants, gateways):
    devices = gateways(20)
    task = make_task(
        tenants.sunfix,
        make_release(),
        devices,
        waves=[50, 100],
        wave_success_pct=90,
        error_threshold_pct=50,
    )
    advance()
    offered = list(task.targets.filter(state=S.OFFERED))
    assert len(offered) == 10
    for target in offered[:2]:
        report(target, S.FAILED, reason="verification failed")
    for target in offered[2:]:
        report(target, S.SUCCEEDED, reported_version="2.0.0")
    advance()
    task = fresh(task)
    assert task.state == TaskState.PAUSED
    assert task.current_wave == 0
    assert task.state_reason == (
        "wave 1: 8 of 10 devices succeeded (80 %) — below the 90 % needed for the next wave"
    )
    assert states(task)[S.WAITING] == 10


def test_the_error_threshold_pauses_the_task_and_says_why(tenants, gateways):
    devices = gateways(10)
    task = make_task(tenants.sunfix, make_release(), devices, error_threshold_pct=20)
    advance()
    targets = list(task.targets.order_by("id"))
    assert all(t.state == S.OFFERED for t in targets)
    for target in targets[:3]:
        report(target, S.FAILED, reason="checksum mismatch")
    for target in targets[3:5]:
        report(target, S.SUCCEEDED, reported_version="2.0.0")
    # 3 of 5 finished failed: 60 %, above 20 %.
    advance()
    task = fresh(task)
    assert task.state == TaskState.PAUSED
    assert task.state_reason == "3 of 5 devices failed (60 %) — above the 20 % threshold"


def test_the_threshold_counts_every_finished_device_of_the_task(tenants, gateways):
    devices = gateways(10)
    task = make_task(tenants.sunfix, make_release(), devices, error_threshold_pct=20)
    advance()
    targets = list(task.targets.order_by("id"))
    for target in targets[:3]:
        report(target, S.FAILED, reason="checksum mismatch")
    for target in targets[3:]:
        report(target, S.SUCCEEDED, reported_version="2.0.0")
    advance()
    task = fresh(task)
    assert task.state == TaskState.PAUSED
    assert task.state_reason == "3 of 10 devices failed (30 %) — above the 20 % threshold"


def test_a_resumed_task_goes_on_until_another_device_fails(tenants, gateways):
    devices = gateways(6)
    task = make_task(
        tenants.sunfix, make_release(), devices, error_threshold_pct=20, max_parallel=2
    )
    advance()
    first, second = task.targets.filter(state=S.OFFERED).order_by("id")
    report(first, S.FAILED, reason="flash write error")
    report(second, S.SUCCEEDED, reported_version="2.0.0")
    advance()
    assert fresh(task).state == TaskState.PAUSED
    # The operator resumes: the failure so far is accepted.
    resume_task(tenants.sunfix_om, fresh(task))
    advance()
    assert fresh(task).state == TaskState.RUNNING
    assert states(task)[S.OFFERED] == 2
    third = task.targets.filter(state=S.OFFERED).first()
    report(third, S.FAILED, reason="flash write error")
    advance()
    task = fresh(task)
    assert task.state == TaskState.PAUSED
    assert task.state_reason.startswith("2 of 3 devices failed (67 %)")


def test_max_parallel_is_never_exceeded(tenants, gateways):
    devices = gateways(40)
    task = make_task(
        tenants.sunfix, make_release(), devices, max_parallel=7, error_threshold_pct=100
    )
    rng = random.Random(15)
    seen = []
    for _ in range(60):
        advance()
        seen.append(in_flight(task))
        assert seen[-1] <= 7
        for target in task.targets.filter(state__in=[S.OFFERED, S.DOWNLOADING, S.INSTALLING]):
            roll = rng.random()
            if roll < 0.3:
                report(target, S.DOWNLOADING, received=1024)
            elif roll < 0.45:
                report(target, S.INSTALLING)
            elif roll < 0.75:
                report(target, S.SUCCEEDED, reported_version="2.0.0")
            elif roll < 0.8:
                report(target, S.FAILED, reason="flash write error")
        if fresh(task).state == TaskState.COMPLETED:
            break
    assert fresh(task).state == TaskState.COMPLETED
    assert max(seen) == 7, "the limit is used, not only respected"
    assert set(states(task)) <= {S.SUCCEEDED, S.FAILED}


def test_a_gateway_gets_one_job_at_a_time_across_tasks(tenants, gateways):
    [gw] = gateways(1)
    inverter = InverterFactory(gateway=gw, status=InverterStatus.RUNNING)
    gateway_task = make_task(tenants.sunfix, make_release(), [gw])
    inverter_release = make_release(
        DeviceKind.INVERTER, FirmwareType.DSP, inverter.model, "01.30", seed="dsp"
    )
    inverter_task = make_task(tenants.sunfix, inverter_release, [inverter])
    advance()
    advance()
    assert states(gateway_task) == {S.OFFERED: 1}
    assert states(inverter_task) == {S.WAITING: 1}, "the gateway is busy with its own job"
    report(target_of(gateway_task, gw), S.SUCCEEDED, reported_version="2.0.0")
    advance()
    assert states(inverter_task) == {S.OFFERED: 1}
    assert fresh(gateway_task).state == TaskState.COMPLETED


# --- maintenance window ------------------------------------------------------------------------


def test_the_maintenance_window_follows_each_sites_time_zone(tenants, gateways):
    berlin = SiteFactory(company=tenants.sunfix, time_zone="Europe/Berlin")
    new_york = SiteFactory(company=tenants.sunfix, time_zone="America/New_York")
    [gw_berlin] = gateways(1, site=berlin)
    [gw_new_york] = gateways(1, site=new_york)
    task = make_task(
        tenants.sunfix,
        make_release(),
        [gw_berlin, gw_new_york],
        window_start=dt.time(1, 0),
        window_end=dt.time(4, 0),
    )
    # 01:30 UTC in January: 02:30 in Berlin (inside), 20:30 the evening before in New York.
    night_in_berlin = dt.datetime(2030, 1, 15, 1, 30, tzinfo=dt.UTC)
    advance(now=night_in_berlin)
    assert target_of(task, gw_berlin).state == S.OFFERED
    assert target_of(task, gw_new_york).state == S.WAITING
    # 07:00 UTC: 08:00 in Berlin, 02:00 in New York.
    advance(now=dt.datetime(2030, 1, 15, 7, 0, tzinfo=dt.UTC))
    assert target_of(task, gw_new_york).state == S.OFFERED


def test_a_window_may_cross_midnight_and_ends_before_its_end_time(tenants, gateways):
    berlin = SiteFactory(company=tenants.sunfix, time_zone="Europe/Berlin")
    [gw] = gateways(1, site=berlin)
    task = make_task(
        tenants.sunfix,
        make_release(),
        [gw],
        window_start=dt.time(22, 0),
        window_end=dt.time(2, 0),
    )
    target = target_of(task, gw)

    def berlin_time(h: int, m: int = 0) -> dt.datetime:
        # Summer: Berlin is UTC+2.
        return dt.datetime(2030, 7, 1, h, m, tzinfo=dt.UTC) - dt.timedelta(hours=2)

    assert in_window(task, target, berlin_time(22, 0))
    assert in_window(task, target, berlin_time(23, 59))
    assert in_window(task, target, berlin_time(0, 30))
    assert not in_window(task, target, berlin_time(2, 0))
    assert not in_window(task, target, berlin_time(21, 59))
    assert not in_window(task, target, berlin_time(12, 0))
    advance(now=berlin_time(12))
    assert states(task) == {S.WAITING: 1}
    advance(now=berlin_time(23, 30))
    assert states(task) == {S.OFFERED: 1}


def test_a_device_without_a_site_keeps_the_window_in_utc(tenants, mqtt):
    gw = GatewayFactory(
        site=None, company=tenants.sunfix, status=GatewayStatus.ONLINE, firmware_version="1.0"
    )
    task = make_task(
        tenants.sunfix, make_release(), [gw], window_start=dt.time(3), window_end=dt.time(4)
    )
    advance(now=dt.datetime(2030, 1, 1, 2, 59, tzinfo=dt.UTC))
    assert states(task) == {S.WAITING: 1}
    advance(now=dt.datetime(2030, 1, 1, 3, 0, tzinfo=dt.UTC))
    assert states(task) == {S.OFFERED: 1}


# --- preconditions -----------------------------------------------------------------------------


@pytest.fixture
def inverter_task(tenants, gateways):
    """An inverter task on one running inverter with a full battery, in grid mode."""

    def make(**fields):
        [gw] = gateways(1)
        inverter = InverterFactory(
            gateway=gw, status=InverterStatus.RUNNING, firmware_versions={"DSP": "01.22"}
        )
        set_latest(inverter, soc=80.0, work_mode_active="self_consumption", grid_status="connected")
        release = make_release(
            DeviceKind.INVERTER, FirmwareType.DSP, inverter.model, "01.30", seed="dsp"
        )
        task = make_task(tenants.sunfix, release, [inverter], **fields)
        return task, gw, inverter

    return make


def skipped_because(task, device) -> str:
    target = target_of(task, device)
    assert target.state == S.SKIPPED, target.state
    return target.reason


def test_an_offline_gateway_is_skipped_and_upgraded_once_it_is_back(inverter_task):
    task, gw, inverter = inverter_task()
    Gateway.objects.filter(pk=gw.pk).update(status=GatewayStatus.OFFLINE)
    advance()
    assert skipped_because(task, inverter) == f"gateway {gw.serial_number} is offline"
    advance()
    assert skipped_because(task, inverter) == f"gateway {gw.serial_number} is offline"
    online(gw)
    advance()
    target = target_of(task, inverter)
    assert target.state == S.OFFERED and target.reason == "" and target.job


def test_an_offline_inverter_is_skipped_until_it_answers_again(inverter_task):
    task, gw, inverter = inverter_task()
    Inverter.objects.filter(pk=inverter.pk).update(status=InverterStatus.OFFLINE)
    advance()
    assert skipped_because(task, inverter) == f"inverter {inverter.serial_number} is offline"
    online(inverter)
    advance()
    assert target_of(task, inverter).state == S.OFFERED


def test_a_low_battery_is_skipped_until_it_charged(inverter_task):
    task, gw, inverter = inverter_task(min_soc=40)
    set_latest(inverter, soc=25.0)
    advance()
    assert skipped_because(task, inverter) == (
        f"battery SOC 25 % of inverter {inverter.serial_number} is below 40 %"
    )
    set_latest(inverter, soc=41.0)
    advance()
    assert target_of(task, inverter).state == S.OFFERED


def test_no_soc_reading_fails_the_battery_check(inverter_task):
    task, gw, inverter = inverter_task(min_soc=40)
    set_latest(inverter, soc=None)
    advance()
    assert skipped_because(task, inverter) == (
        f"no SOC reading from inverter {inverter.serial_number}"
    )
    set_latest(inverter, soc=90.0)
    advance()
    assert target_of(task, inverter).state == S.OFFERED


def test_a_gateway_waits_for_the_battery_of_every_inverter_on_its_bus(tenants, gateways):
    [gw] = gateways(1)
    full = InverterFactory(gateway=gw, modbus_address=1, status=InverterStatus.RUNNING)
    low = InverterFactory(gateway=gw, modbus_address=2, status=InverterStatus.RUNNING)
    set_latest(full, soc=95.0)
    set_latest(low, soc=10.0)
    task = make_task(tenants.sunfix, make_release(), [gw], min_soc=30)
    advance()
    assert skipped_because(task, gw) == (
        f"battery SOC 10 % of inverter {low.serial_number} is below 30 %"
    )
    set_latest(low, soc=30.0)
    advance()
    assert target_of(task, gw).state == S.OFFERED


def test_an_urgent_alarm_holds_the_device_back_until_it_recovered(inverter_task):
    task, gw, inverter = inverter_task()
    alarm = raise_urgent_alarm(inverter, "F21")
    advance()
    assert skipped_because(task, inverter) == (
        f"urgent alarm F21 occurring on inverter {inverter.serial_number}"
    )
    recover(alarm)
    advance()
    assert target_of(task, inverter).state == S.OFFERED


def test_an_urgent_alarm_of_an_inverter_holds_its_gateway_back(tenants, gateways):
    [gw] = gateways(1)
    inverter = InverterFactory(gateway=gw, status=InverterStatus.RUNNING)
    alarm = raise_urgent_alarm(inverter, "F07")
    task = make_task(tenants.sunfix, make_release(), [gw])
    advance()
    assert "urgent alarm F07" in skipped_because(task, gw)
    recover(alarm)
    advance()
    assert target_of(task, gw).state == S.OFFERED


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ({"work_mode_active": "emergency_charging"}, "is in emergency charging mode"),
        ({"work_mode_active": "forced_off_grid"}, "is in forced off-grid mode"),
        ({"grid_status": "lost"}, "runs off-grid"),
        ({"run_status": "off_grid"}, "runs off-grid"),
    ],
)
def test_emergency_and_off_grid_modes_hold_the_device_back(inverter_task, status, reason):
    task, gw, inverter = inverter_task()
    set_latest(inverter, soc=80.0, **status)
    advance()
    assert skipped_because(task, inverter) == f"inverter {inverter.serial_number} {reason}"
    set_latest(inverter, soc=80.0, work_mode_active="tou", grid_status="connected")
    advance()
    assert target_of(task, inverter).state == S.OFFERED


def test_preconditions_switched_off_are_not_checked(inverter_task):
    task, gw, inverter = inverter_task(
        require_online=False, require_no_urgent_alarm=False, require_grid_mode=False
    )
    Inverter.objects.filter(pk=inverter.pk).update(status=InverterStatus.OFFLINE)
    raise_urgent_alarm(inverter)
    set_latest(inverter, soc=None, work_mode_active="forced_off_grid")
    advance()
    assert target_of(task, inverter).state == S.OFFERED


# --- devices that go quiet, devices already up to date -----------------------------------------


def test_a_stalled_device_fails_with_no_progress(tenants, gateways, settings):
    settings.UPGRADE_STALL_S = 60
    devices = gateways(2)
    task = make_task(tenants.sunfix, make_release(), devices, error_threshold_pct=100)
    advance()
    quiet, busy = task.targets.order_by("id")
    report(quiet, S.DOWNLOADING, ago_s=61, received=4096)
    report(busy, S.INSTALLING, ago_s=30)
    advance()
    quiet.refresh_from_db()
    busy.refresh_from_db()
    assert quiet.state == S.FAILED and quiet.reason == "no progress for 60 s"
    assert quiet.finished_at is not None
    assert busy.state == S.INSTALLING


def test_an_offer_nobody_took_returns_to_waiting_and_is_offered_again(tenants, gateways, settings):
    settings.UPGRADE_OFFER_DEADLINE_S = 30
    [gw] = gateways(1)
    task = make_task(tenants.sunfix, make_release(), [gw])
    advance()
    target = target_of(task, gw)
    first_job = target.job
    assert target.state == S.OFFERED and target.attempt == 1
    advance(now=timezone.now() + dt.timedelta(seconds=20))
    assert target_of(task, gw).job == first_job, "not before the deadline"
    # Past the deadline the gateway is offline: the device waits, it did not fail.
    Gateway.objects.filter(pk=gw.pk).update(status=GatewayStatus.OFFLINE)
    advance(now=timezone.now() + dt.timedelta(seconds=31))
    target = target_of(task, gw)
    assert target.state == S.SKIPPED and target.job is None
    assert fresh(task).state == TaskState.RUNNING
    online(gw)
    advance()
    target = target_of(task, gw)
    assert target.state == S.OFFERED and target.job not in (None, first_job)


def test_a_device_already_on_the_release_succeeds_without_a_job(tenants, gateways):
    current, old = gateways(2)
    Gateway.objects.filter(pk=current.pk).update(firmware_version="2.0.0")
    task = make_task(tenants.sunfix, make_release(version="2.0.0"), [current, old])
    advance()
    done = target_of(task, current)
    assert done.state == S.SUCCEEDED and done.reason == "already runs 2.0.0"
    assert done.job is None and done.attempt == 0 and done.offered_at is None
    assert target_of(task, old).state == S.OFFERED


def test_an_inverter_already_on_the_release_succeeds_without_a_job(inverter_task):
    task, gw, inverter = inverter_task()
    Inverter.objects.filter(pk=inverter.pk).update(firmware_versions={"DSP": "01.30"})
    advance()
    target = target_of(task, inverter)
    assert target.state == S.SUCCEEDED and target.reason == "already runs 01.30"
    assert target.job is None
    assert fresh(task).state == TaskState.COMPLETED


def test_a_task_completes_when_every_device_is_finished(tenants, gateways):
    devices = gateways(3)
    task = make_task(tenants.sunfix, make_release(), devices, error_threshold_pct=100)
    advance()
    a, b, c = task.targets.order_by("id")
    report(a, S.SUCCEEDED, reported_version="2.0.0")
    report(b, S.FAILED, reason="rejected")
    advance()
    assert fresh(task).state == TaskState.RUNNING
    report(c, S.SUCCEEDED, reported_version="2.0.0")
    advance()
    task = fresh(task)
    assert task.state == TaskState.COMPLETED
    assert task.finished_at is not None


# --- end to end: simulated gateways, the delivery service, a Celery worker ----------------------


def sim_specs(serials: list[str]) -> list[GatewaySpec]:
    return [GatewaySpec(serial=sn, inverters=(), firmware="10.00") for sn in serials]


def portal_gateways(company, serials: list[str]) -> list[Gateway]:
    site = SiteFactory(company=company, time_zone="Europe/Rome")
    return [
        GatewayFactory(
            serial_number=sn,
            site=site,
            company=company,
            status=GatewayStatus.ONLINE,
            firmware_version="10.00",
        )
        for sn in serials
    ]


def settle(task, tick, timeout: float, *, every: float = 0.3, on_tick=None) -> None:
    """Tick until the task is completed (or fail after `timeout` s with its devices' states)."""
    deadline = time.monotonic() + timeout
    while fresh(task).state != TaskState.COMPLETED:
        assert time.monotonic() < deadline, f"not completed: {states(task)}"
        tick()
        if on_tick:
            on_tick()
        time.sleep(every)


@pytest.mark.django_db(transaction=True)
def test_a_rollout_upgrades_simulated_gateways_wave_by_wave(tenants, mqtt, settings):
    settings.FIRMWARE_CHUNK_BYTES = 4096
    serials = [f"GWROLL{i:04d}" for i in range(1, 6)]
    devices = portal_gateways(tenants.sunfix, serials)
    release = make_release(version="10.10", size=64 * 1024)
    task = make_task(tenants.sunfix, release, devices, waves=[20, 100], max_parallel=2)
    sampled: list[int] = []
    with (
        running_delivery(mqtt.broker),
        FleetThread(
            sim_specs(serials), mqtt_url=mqtt.url, clock=SimClock(speed=0), options=FAST
        ) as sim,
    ):
        advance()
        assert states(task) == {S.OFFERED: 1, S.WAITING: 4}, "wave 1 is one device of five"
        settle(task, advance, 60, on_tick=lambda: sampled.append(in_flight(task)))
        firmware = sim.call(lambda: {sn: sim.fleet.gateway(sn).firmware for sn in serials})
        installs = sim.call(
            lambda: {sn: sim.fleet.gateway(sn).stats["ota_succeeded"] for sn in serials}
        )
    assert states(task) == {S.SUCCEEDED: 5}
    assert max(sampled) <= 2
    assert firmware == dict.fromkeys(serials, "10.10")
    assert installs == dict.fromkeys(serials, 1)
    assert set(
        Gateway.objects.filter(serial_number__in=serials).values_list("firmware_version", flat=True)
    ) == {"10.10"}
    for target in task.targets.all():
        assert target.from_version == "10.00" and target.reported_version == "10.10"
        assert target.received == release.size


class RequestSpy:
    """Every chunk request and state report of every gateway, across broker restarts."""

    def __init__(self, broker) -> None:
        self.requests: list[tuple[str, str, object]] = []  # (serial, job, request)
        self.client = protocol.make_client(f"spy-{uuid.uuid4().hex[:6]}", broker, persistent=False)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(ota.cloud_request_filter(), qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        protocol.connect_client(self.client, broker, persistent=False)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c, _u, message) -> None:
        serial, _, job = ota.parse_job_topic(message.topic)
        self.requests.append((serial, job, ota.decode_request(message.payload)))

    def flashed(self, serial: str) -> set[str]:
        """Jobs of `serial` that reached the install (a report of installing or later)."""
        return {
            job
            for sn, job, req in list(self.requests)
            if sn == serial
            and isinstance(req, ota.StateReport)
            and req.state in (ota.INSTALLING, ota.REBOOTING, ota.SUCCEEDED)
        }

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.django_db(transaction=True)
def test_a_rollout_survives_a_killed_worker_and_a_restarted_broker(tenants, settings, tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    settings.MQTT_URL = broker.url
    settings.FIRMWARE_CHUNK_BYTES = 1024
    close_reply_waiter()
    serials = [f"GWKILL{i:04d}" for i in range(1, 11)]
    devices = portal_gateways(tenants.sunfix, serials)
    release = make_release(version="10.20", size=128 * 1024)
    task = make_task(
        tenants.sunfix,
        release,
        devices,
        waves=[10, 100],
        max_parallel=4,
        error_threshold_pct=100,
        wave_success_pct=0,
    )
    queue = f"rollout-{uuid.uuid4().hex[:8]}"
    worker_env = {
        "UPGRADE_STALL_S": "6",
        "UPGRADE_OFFER_DEADLINE_S": "5",
        "FIRMWARE_CHUNK_BYTES": "1024",
    }
    log_path = tmp_path / "worker.log"
    worker = start_worker(queue, broker.url, log_path, **worker_env)
    spy = RequestSpy(broker.broker)
    sampled: list[int] = []
    try:
        with (
            tasks_to(queue),
            running_delivery(broker.broker),
            FleetThread(
                sim_specs(serials), mqtt_url=broker.url, clock=SimClock(speed=0), options=FAST
            ) as sim,
        ):

            def tick() -> None:
                advance_upgrades.delay()
                sampled.append(in_flight(task))

            # Mid-rollout: the first wave done, devices of the second downloading.
            deadline = time.monotonic() + 60
            while not task.targets.filter(state=S.DOWNLOADING, wave=1).exists():
                assert time.monotonic() < deadline, states(task)
                tick()
                time.sleep(0.2)
            # One gateway dies for good with its download half done; the worker too.
            dead = (
                task.targets.filter(state=S.DOWNLOADING, wave=1)
                .values_list("gateway__serial_number", flat=True)
                .first()
            )
            sim.call(sim.fleet.gateway(dead).kill)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(5)
            broker.stop()
            time.sleep(1)
            broker.start()
            worker = start_worker(queue, broker.url, log_path, **worker_env)
            settle(task, tick, 120)
            installs = sim.call(
                lambda: {sn: sim.fleet.gateway(sn).stats["ota_succeeded"] for sn in serials}
            )
            firmware = sim.call(lambda: {sn: sim.fleet.gateway(sn).firmware for sn in serials})
    finally:
        stop_process(worker)
        spy.close()
        close_reply_waiter()
        broker.stop()
    assert max(sampled) <= 4
    for target in task.targets.select_related("gateway"):
        serial = target.gateway.serial_number
        assert target.state in (S.SUCCEEDED, S.FAILED), (serial, target.state)
        if serial == dead:
            assert target.state == S.FAILED and target.reason == "no progress for 6 s"
        elif target.state == S.FAILED:
            assert target.reason, serial
        else:
            assert firmware[serial] == "10.20"
        assert installs[serial] <= 1, f"{serial} was flashed {installs[serial]} times"
        assert len(spy.flashed(serial)) <= 1, f"{serial} installed twice"
    assert states(task).get(S.SUCCEEDED, 0) >= 8, states(task)


def test_later_waves_are_reached_when_earlier_devices_still_wait(tenants, mqtt, monkeypatch):
    """Candidates are read in batches by wave; device ids need not follow the waves."""
    monkeypatch.setattr("upgrades.rollout.BATCH", 1)
    site = SiteFactory(company=tenants.sunfix)
    # Created in reverse: the first wave holds the newest rows.
    made = [
        GatewayFactory(
            serial_number=f"GWORDER{n}",
            site=site,
            company=tenants.sunfix,
            status=GatewayStatus.ONLINE,
            firmware_version="1.0.0",
        )
        for n in (4, 3, 2, 1)
    ]
    first, second, third, fourth = sorted(made, key=lambda g: g.serial_number)
    Gateway.objects.filter(pk=second.pk).update(status=GatewayStatus.OFFLINE)
    task = make_task(tenants.sunfix, make_release(), made, waves=[50, 100])
    advance()
    assert target_of(task, first).state == S.OFFERED
    assert target_of(task, second).state == S.SKIPPED
    report(target_of(task, first), S.SUCCEEDED, reported_version="2.0.0")
    advance()
    assert fresh(task).current_wave == 1
    assert target_of(task, third).state == S.OFFERED
    assert target_of(task, fourth).state == S.OFFERED
    assert target_of(task, second).state == S.SKIPPED
