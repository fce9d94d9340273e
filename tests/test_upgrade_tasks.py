"""Firmware upgrade tasks (guide §7.2): creating a task with its staged rollout and what is
refused; approval, pause, resume, retry and delete; the task list, "Add upgrade" with a
selection that survives paging and filtering, a task's page; who may do what."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import AuditEvent
from gateways.models import GatewayStatus
from tests.factories import GatewayFactory, SiteFactory
from tests.permission_matrix import Expect, assert_matrix
from tests.upgrade_task_helpers import (  # noqa: F401
    HTMX_DIALOG,
    HTMX_PICKER,
    TH,
    WIFI,
    add_form,
    gateway_task,
    upgrade_fleet,
    url,
)
from upgrades import task_services
from upgrades.models import (
    DeviceKind,
    FirmwareType,
    TargetState,
    TaskState,
    UpgradePolicy,
    UpgradeTarget,
    UpgradeTask,
)

pytestmark = pytest.mark.django_db


def states(task) -> dict[str, str]:
    return dict(task.targets.values_list("gateway__serial_number", "state"))


# --- create_task ---------------------------------------------------------------------------------


def test_a_staged_task_assigns_its_waves_by_serial_number(upfleet):
    task = gateway_task(
        upfleet.t.sunfix_om,
        upfleet,
        waves=[10, 50, 100],
        max_parallel=3,
        window_start=dt.time(1, 0),
        window_end=dt.time(5, 0),
        min_soc=30,
    )
    assert task.state == TaskState.RUNNING and task.company == upfleet.t.sunfix
    assert task.waves == [10, 50, 100] and task.max_parallel == 3 and task.min_soc == 30
    waves = list(task.targets.order_by("gateway__serial_number").values_list("wave", flat=True))
    # 12 devices: ceil(1.2) = 2 in wave 1, up to ceil(6) = 6 in wave 2, the rest in wave 3.
    assert waves == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    target = task.targets.get(gateway=upfleet.gateways[0])
    assert target.state == TargetState.WAITING and target.from_version == "9.02"
    event = AuditEvent.objects.get(action="upgrade.created")
    assert event.after["devices"] == 12 and event.after["version"] == "10.00"


def test_waves_that_would_be_empty_are_dropped(upfleet):
    task = gateway_task(
        upfleet.t.sunfix_om, upfleet, devices=upfleet.gateways[:3], waves=[1, 10, 100]
    )
    assert task.waves == [1, 100]
    assert sorted(task.targets.values_list("wave", flat=True)) == [0, 1, 1]


def test_an_inverter_task_targets_the_board_through_its_gateway(upfleet):
    task = task_services.create_task(
        upfleet.t.sunfix_om,
        kind=DeviceKind.INVERTER,
        release=upfleet.dsp,
        model=TH,
        firmware_type=FirmwareType.DSP,
        devices=[upfleet.inverter.pk],
    )
    target = task.targets.get()
    assert target.inverter == upfleet.inverter and target.gateway == upfleet.gateways[0]
    assert target.modbus_address == 3 and target.from_version == "01.90.06"


def test_a_reservation_schedules_the_task(upfleet):
    when = timezone.now() + dt.timedelta(hours=2)
    task = gateway_task(upfleet.t.sunfix_om, upfleet, reservation_at=when)
    assert task.state == TaskState.SCHEDULED and task.reservation_at == when


def test_an_offline_device_upgraded_now_waits_for_its_turn(upfleet):
    offline = upfleet.gateways[11]
    assert offline.status == GatewayStatus.OFFLINE
    task = gateway_task(upfleet.t.sunfix_om, upfleet, devices=[offline])
    assert task.state == TaskState.RUNNING
    assert task.targets.get().state == TargetState.WAITING


def refused(call, message: str) -> None:
    before = UpgradeTask.objects.count(), UpgradeTarget.objects.count()
    with pytest.raises(ValidationError) as error:
        call()
    assert message in " ".join(error.value.messages)
    assert (UpgradeTask.objects.count(), UpgradeTarget.objects.count()) == before
    assert not AuditEvent.objects.filter(action="upgrade.created").exists()


def test_a_device_outside_the_users_scope_refuses_the_whole_task(upfleet):
    foreign = GatewayFactory(
        site=SiteFactory(company=upfleet.t.nordlicht), model=WIFI, firmware_version="9.02"
    )
    refused(
        lambda: gateway_task(upfleet.t.sunfix_om, upfleet, devices=[upfleet.gateways[0], foreign]),
        "not yours to upgrade",
    )


def test_a_reservation_in_the_past_is_refused(upfleet):
    past = timezone.now() - dt.timedelta(minutes=1)
    refused(
        lambda: gateway_task(upfleet.t.sunfix_om, upfleet, reservation_at=past),
        "The reserved time must be in the future.",
    )


def test_a_device_of_another_model_is_refused(upfleet):
    refused(
        lambda: gateway_task(
            upfleet.t.sunfix_om, upfleet, devices=[upfleet.gateways[0], upfleet.g4]
        ),
        "not of model CPS WiFi Kit: GWUP4G0001",
    )


def test_a_release_of_another_model_is_refused(upfleet):
    refused(
        lambda: task_services.create_task(
            upfleet.t.sunfix_om,
            kind=DeviceKind.GATEWAY,
            release=upfleet.g4_release,
            model=WIFI,
            devices=upfleet.gateways[:1],
        ),
        "Firmware 8.00 is not released for CPS WiFi Kit",
    )


def test_a_release_of_another_firmware_type_is_refused(upfleet):
    refused(
        lambda: task_services.create_task(
            upfleet.t.sunfix_om,
            kind=DeviceKind.INVERTER,
            release=upfleet.lcd,
            model=TH,
            firmware_type=FirmwareType.DSP,
            devices=[upfleet.inverter],
        ),
        "Firmware 02.10 is not released for ECH10K-TH-EU DSP",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": []}, "Please select at least one device."),
        ({"waves": [10, 5, 100]}, "each larger than the last"),
        ({"waves": [10, 50]}, "The last wave must be 100 %."),
        ({"error_threshold_pct": 101}, "Enter a percentage from 0 to 100."),
        ({"max_parallel": 0}, "At least one device must be able to upgrade at once."),
        ({"window_start": dt.time(1, 0)}, "both a start and a different end"),
    ],
)
def test_bad_options_are_refused(upfleet, options, message):
    refused(lambda: gateway_task(upfleet.t.sunfix_om, upfleet, **options), message)


def test_owners_cannot_create_tasks(upfleet):
    with pytest.raises(PermissionDenied):
        gateway_task(upfleet.t.owner, upfleet)
    assert not UpgradeTask.objects.exists()


# --- approval, pause, resume, retry, cancel ------------------------------------------------------


def test_four_eyes_the_creator_cannot_approve_another_admin_can(upfleet):
    t = upfleet.t
    task_services.set_policy(t.sunfix_admin, t.sunfix, True)
    assert AuditEvent.objects.filter(action="upgrade.policy_changed").count() == 1
    task = gateway_task(t.sunfix_admin, upfleet)
    assert task.state == TaskState.AWAITING_APPROVAL
    with pytest.raises(PermissionDenied):
        task_services.approve_task(t.sunfix_admin, task)
    with pytest.raises(PermissionDenied):
        task_services.approve_task(t.sunfix_om, task)
    task_services.approve_task(t.helios_admin, task)
    task.refresh_from_db()
    assert task.state == TaskState.RUNNING and task.approved_by == t.helios_admin
    assert AuditEvent.objects.filter(action="upgrade.approved").count() == 1
    with pytest.raises(ValidationError, match="running now"):
        task_services.approve_task(t.helios_admin, task)


def test_an_approved_reservation_is_scheduled(upfleet):
    t = upfleet.t
    task_services.set_policy(t.sunfix_admin, t.sunfix, True)
    when = timezone.now() + dt.timedelta(days=1)
    task = gateway_task(t.sunfix_om, upfleet, reservation_at=when)
    task_services.approve_task(t.sunfix_admin, task)
    assert task.state == TaskState.SCHEDULED


def test_only_an_administrator_of_the_company_sets_the_policy(upfleet):
    t = upfleet.t
    with pytest.raises(PermissionDenied):
        task_services.set_policy(t.sunfix_om, t.sunfix, True)
    with pytest.raises(PermissionDenied):
        task_services.set_policy(t.helios_admin, t.sunfix, True)
    assert not UpgradePolicy.objects.exists()


def test_pause_resume_and_retry_the_failed(upfleet):
    t = upfleet.t
    task = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:4])
    task_services.pause_task(t.sunfix_om, task)
    assert task.state == TaskState.PAUSED and "Paused by SunFix O&M" in task.state_reason
    task_services.resume_task(t.helios_om, task)
    assert task.state == TaskState.RUNNING and task.state_reason == ""
    first, second = task.targets.order_by("gateway__serial_number")[:2]
    UpgradeTarget.objects.filter(pk=first.pk).update(
        state=TargetState.FAILED, reason="checksum mismatch", job="job-1", attempt=1
    )
    UpgradeTarget.objects.filter(pk=second.pk).update(state=TargetState.SUCCEEDED)
    UpgradeTask.objects.filter(pk=task.pk).update(state=TaskState.COMPLETED)
    assert task_services.retry_failed(t.sunfix_om, task) == 1
    first.refresh_from_db()
    assert (first.state, first.job, first.reason, first.attempt) == (
        TargetState.WAITING,
        None,
        "",
        1,
    )
    assert task.state == TaskState.RUNNING
    actions = list(
        AuditEvent.objects.filter(action__startswith="upgrade.").values_list("action", flat=True)
    )
    assert sorted(actions) == sorted(
        ["upgrade.created", "upgrade.paused", "upgrade.resumed", "upgrade.retried"]
    )
    with pytest.raises(ValidationError, match="No device of this task has failed"):
        task_services.retry_failed(t.sunfix_om, task)


def test_delete_cancels_what_has_not_started_and_lets_the_rest_finish(upfleet):
    t = upfleet.t
    task = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:5])
    targets = list(task.targets.order_by("gateway__serial_number"))
    UpgradeTarget.objects.filter(pk=targets[0].pk).update(state=TargetState.DOWNLOADING, job="j1")
    UpgradeTarget.objects.filter(pk=targets[1].pk).update(state=TargetState.SUCCEEDED)
    UpgradeTarget.objects.filter(pk=targets[2].pk).update(
        state=TargetState.SKIPPED, reason="offline"
    )
    assert task_services.cancel_task(t.sunfix_om, task, delete=True) == (3, 1)
    assert task.state == TaskState.CANCELLED and task.deleted_at is not None
    assert task.targets.get(pk=targets[0].pk).state == TargetState.DOWNLOADING
    assert task.targets.filter(state=TargetState.CANCELLED).count() == 3
    event = AuditEvent.objects.get(action="upgrade.cancelled")
    assert event.after["cancelled"] == 3 and event.after["still_upgrading"] == 1
    with pytest.raises(ValidationError, match="already been deleted"):
        task_services.cancel_task(t.sunfix_om, task, delete=True)


def test_foreign_staff_cannot_touch_a_task(upfleet):
    task = gateway_task(upfleet.t.sunfix_om, upfleet)
    for call in (task_services.pause_task, task_services.resume_task, task_services.retry_failed):
        with pytest.raises(PermissionDenied):
            call(upfleet.t.nordlicht_admin, task)
    with pytest.raises(PermissionDenied):
        task_services.cancel_task(upfleet.t.nordlicht_om, task)


# --- the list ------------------------------------------------------------------------------------


def test_the_list_shows_statistics_state_reservation_and_hides_deleted_tasks(upfleet, client_for):
    t = upfleet.t
    task = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:10], waves=[10, 100])
    UpgradeTarget.objects.filter(task=task, wave=0).update(state=TargetState.SUCCEEDED)
    ids = list(task.targets.filter(wave__gt=0).values_list("pk", flat=True)[:1])
    UpgradeTarget.objects.filter(pk__in=ids).update(state=TargetState.FAILED)
    when = timezone.now() + dt.timedelta(days=1)
    later = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:1], reservation_at=when)
    gone = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:1])
    task_services.cancel_task(t.sunfix_om, gone, delete=True)
    t.helios_admin.time_zone = "Asia/Shanghai"
    t.helios_admin.save()
    html = client_for(t.helios_admin).get(url("tasks"), {"kind": "gateway"}).content.decode()
    assert "1/10 succeeded · 1 failed" in html
    assert (
        timezone.localtime(when, dt.timezone(dt.timedelta(hours=8))).strftime(
            "%Y-%m-%d %H:%M:%S+08:00"
        )
        in html
    )
    assert "Running" in html and "Scheduled" in html
    assert url("task_detail", later.pk) in html and url("task_detail", gone.pk) not in html
    assert url("task_delete", task.pk) in html and "Add upgrade" in html
    # The Inverter tab has none of them; a filter by version narrows.
    inverter = client_for(t.helios_admin).get(url("tasks"), {"kind": "inverter"})
    assert url("task_detail", task.pk) not in inverter.content.decode()
    assert "No upgrade tasks yet" in inverter.content.decode()
    none = client_for(t.helios_admin).get(url("tasks"), {"kind": "gateway", "version": "11"})
    assert "No upgrade task matches these filters." in none.content.decode()


def test_the_list_offers_approve_only_to_another_admin(upfleet, client_for):
    t = upfleet.t
    task_services.set_policy(t.sunfix_admin, t.sunfix, True)
    task = gateway_task(t.sunfix_admin, upfleet)
    approve = url("task_action", task.pk, "approve")
    assert approve not in client_for(t.sunfix_admin).get(url("tasks")).content.decode()
    assert approve not in client_for(t.sunfix_om).get(url("tasks")).content.decode()
    page = client_for(t.helios_admin).get(url("tasks")).content.decode()
    assert approve in page and "Awaiting approval" in page
    response = client_for(t.helios_admin).post(approve, {"next": url("tasks")}, follow=True)
    assert "approved: it is running" in response.content.decode()
    assert (
        client_for(t.sunfix_admin).post(url("task_action", task.pk, "approve")).status_code == 403
    )


def test_the_policy_dialog_switches_four_eyes(upfleet, client_for):
    t = upfleet.t
    client = client_for(t.sunfix_admin)
    assert "Four-eyes approval is off" in client.get(url("tasks")).content.decode()
    response = client.post(url("policy"), {"require_approval": "yes"}, follow=True)
    assert "now wait for a second administrator" in response.content.decode()
    assert UpgradePolicy.objects.get(company=t.sunfix).require_approval
    assert "Four-eyes approval is on" in client.get(url("tasks")).content.decode()
    assert "Four-eyes" not in client_for(t.sunfix_om).get(url("tasks")).content.decode()


# --- Add upgrade ---------------------------------------------------------------------------------


def test_add_upgrade_keeps_the_selection_across_pages_and_filters(upfleet, client_for):
    t = upfleet.t
    client = client_for(t.sunfix_om)
    gws = upfleet.gateways
    page = client.get(url("task_add"), {"kind": "gateway", "model": WIFI})
    html = page.content.decode()
    assert "CPS WiFi Kit--10.00" in html and "Total 12" in html and "Selected devices: 0" in html
    first_page = ",".join(str(g.pk) for g in gws[:10])
    # Tick two devices on page 1, go to page 2.
    step = client.get(
        url("task_add"),
        {
            "kind": "gateway",
            "model": WIFI,
            "selected": "",
            "page_ids": first_page,
            "pick": [gws[0].pk, gws[1].pk],
            "picker": "page-2",
        },
        headers=HTMX_PICKER,
    )
    html = step.content.decode()
    assert "Selected devices: 2" in html and "GWUP0011" in html and "GWUP0000" not in html
    assert f'name="selected" value="{gws[0].pk},{gws[1].pk}"' in html
    # On page 2 tick one more, then filter to offline devices: the selection stays.
    step = client.get(
        url("task_add"),
        {
            "kind": "gateway",
            "model": WIFI,
            "selected": f"{gws[0].pk},{gws[1].pk}",
            "page_ids": f"{gws[10].pk},{gws[11].pk}",
            "pick": [gws[11].pk],
            "d-online": "offline",
            "picker": "search",
        },
        headers=HTMX_PICKER,
    )
    html = step.content.decode()
    assert "Selected devices: 3" in html and "Total 2" in html
    # Confirm without ticking anything on the page shown: three devices, in two waves.
    response = client.post(
        url("task_add"),
        add_form(
            upfleet,
            selected=f"{gws[0].pk},{gws[1].pk},{gws[11].pk}",
            page_ids=f"{gws[10].pk},{gws[11].pk}",
            pick=str(gws[11].pk),
            waves="50, 100",
        ),
    )
    task = UpgradeTask.objects.get()
    assert response.status_code == 302 and response["Location"] == url("task_detail", task.pk)
    assert sorted(states(task)) == ["GWUP0000", "GWUP0001", "GWUP0011"]
    assert task.waves == [50, 100] and task.max_parallel == 5


def test_add_upgrade_select_all_and_clear(upfleet, client_for):
    client = client_for(upfleet.t.sunfix_om)
    params = {"kind": "gateway", "model": WIFI, "d-site": upfleet.site.pk}
    html = client.get(url("task_add"), {**params, "picker": "select_all"}, headers=HTMX_PICKER)
    assert "Selected devices: 6" in html.content.decode()
    html = client.get(
        url("task_add"), {**params, "picker": "clear", "selected": "1,2"}, headers=HTMX_PICKER
    )
    assert "Selected devices: 0" in html.content.decode()


def test_add_upgrade_shows_what_is_wrong_and_creates_nothing(upfleet, client_for):
    client = client_for(upfleet.t.sunfix_om)
    response = client.post(url("task_add"), add_form(upfleet, selected=""))
    assert "Please select at least one device." in response.content.decode()
    past = (timezone.localtime() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        url("task_add"),
        add_form(upfleet, selected=str(upfleet.gateways[0].pk), reservation="yes", time=past),
    )
    assert "The reserved time must be in the future." in response.content.decode()
    response = client.post(
        url("task_add"),
        add_form(upfleet, selected=str(upfleet.gateways[0].pk), waves="10, 5"),
    )
    assert "each larger than the last" in response.content.decode()
    assert not UpgradeTask.objects.exists()


def test_add_upgrade_reservation_in_the_users_time_zone(upfleet, client_for):
    t = upfleet.t
    t.sunfix_om.time_zone = "Asia/Shanghai"
    t.sunfix_om.save()
    when = (timezone.now() + dt.timedelta(days=2)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    client_for(t.sunfix_om).post(
        url("task_add"),
        add_form(
            upfleet,
            selected=str(upfleet.gateways[0].pk),
            reservation="yes",
            time=when.strftime("%Y-%m-%dT%H:%M"),
        ),
    )
    task = UpgradeTask.objects.get()
    assert task.state == TaskState.SCHEDULED
    assert task.reservation_at == when.replace(second=0, microsecond=0)


def test_add_upgrade_of_inverters_offers_the_boards_released_for_the_model(upfleet, client_for):
    client = client_for(upfleet.t.sunfix_om)
    html = client.get(
        url("task_add"), {"kind": "inverter", "model": TH, "firmware_type": "lcd"}
    ).content.decode()
    assert "ECH10K-TH-EU--02.10" in html and "ECH10K-TH-EU--01.95" not in html
    assert '<option value="dsp"' in html and '<option value="arc"' not in html
    assert "INVUP00001" in html
    response = client.post(
        url("task_add"),
        {
            **add_form(upfleet, kind="inverter", model=TH, release=str(upfleet.lcd.pk)),
            "firmware_type": "lcd",
            "selected": str(upfleet.inverter.pk),
        },
    )
    assert response.status_code == 302
    task = UpgradeTask.objects.get()
    assert task.firmware_type == "lcd" and task.targets.get().from_version == "01.56"


# --- a task's page -------------------------------------------------------------------------------


def test_the_task_page_shows_each_device_and_why(upfleet, client_for):
    t = upfleet.t
    task = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:4], waves=[50, 100])
    a, b, c, d = task.targets.order_by("gateway__serial_number")
    UpgradeTarget.objects.filter(pk=a.pk).update(
        state=TargetState.DOWNLOADING, received=upfleet.wifi.size // 4
    )
    UpgradeTarget.objects.filter(pk=b.pk).update(
        state=TargetState.FAILED, reason="signature check failed"
    )
    UpgradeTarget.objects.filter(pk=c.pk).update(
        state=TargetState.SKIPPED, reason="The device is offline."
    )
    UpgradeTarget.objects.filter(pk=d.pk).update(
        state=TargetState.SUCCEEDED, reported_version="10.00", finished_at=timezone.now()
    )
    client = client_for(t.helios_om)
    html = client.get(url("task_detail", task.pk)).content.decode()
    for text in (
        "Downloading 25 %",
        "signature check failed",
        "The device is offline.",
        "Succeeded",
        "10.00",
        "9.02",
        "GWUP0003",
        "Casa Sole",
        'hx-trigger="every 3s"',
        url("task_action", task.pk, "pause"),
        url("task_action", task.pk, "retry"),
    ):
        assert text in html, text
    failed = client.get(url("task_detail", task.pk), {"state": "failed"}).content.decode()
    assert "signature check failed" in failed and "GWUP0003" not in failed
    UpgradeTask.objects.filter(pk=task.pk).update(state=TaskState.COMPLETED)
    assert "every 3s" not in client.get(url("task_detail", task.pk)).content.decode()


def test_pause_and_delete_through_the_pages(upfleet, client_for):
    t = upfleet.t
    task = gateway_task(t.sunfix_om, upfleet, devices=upfleet.gateways[:3])
    UpgradeTarget.objects.filter(task=task, gateway=upfleet.gateways[0]).update(
        state=TargetState.INSTALLING
    )
    client = client_for(t.sunfix_om)
    response = client.post(url("task_action", task.pk, "pause"), follow=True)
    assert "paused" in response.content.decode()
    assert UpgradeTask.objects.get(pk=task.pk).state == TaskState.PAUSED
    dialog = client.get(url("task_delete", task.pk), headers=HTMX_DIALOG).content.decode()
    assert f"Delete upgrade task {task.pk}" in dialog and "1 device is being upgraded" in dialog
    response = client.post(url("task_delete", task.pk), follow=True)
    assert "Cancelled 2 devices; 1 was already being upgraded and will finish." in (
        response.content.decode()
    )
    assert client.get(url("task_detail", task.pk)).status_code == 404


# --- who may do what -----------------------------------------------------------------------------


@pytest.mark.matrix("upgrades:tasks")
def test_matrix_tasks(tenants, client_for):
    assert_matrix(tenants, client_for, url("tasks"), Expect.tenant_wide(200, 200, 403))


@pytest.mark.matrix("upgrades:task_add")
def test_matrix_task_add(tenants, client_for):
    assert_matrix(tenants, client_for, url("task_add"), Expect.tenant_wide(200, 200, 403))
    # A POST without devices: the form's errors for staff.
    assert_matrix(
        tenants,
        client_for,
        url("task_add"),
        Expect.tenant_wide(200, 200, 403),
        method="post",
        data={"kind": "gateway"},
    )


@pytest.mark.matrix("upgrades:policy")
def test_matrix_policy(tenants, client_for):
    assert_matrix(tenants, client_for, url("policy"), Expect.tenant_wide(200, 403, 403))
    assert_matrix(
        tenants,
        client_for,
        url("policy"),
        Expect.tenant_wide(302, 403, 403),
        method="post",
        data={"require_approval": "no"},
    )


@pytest.mark.matrix("upgrades:task_detail")
def test_matrix_task_detail(upfleet, client_for):
    task = gateway_task(upfleet.t.sunfix_om, upfleet)
    # Tasks belong to SunFix, below Helios; owners see none.
    assert_matrix(upfleet.t, client_for, url("task_detail", task.pk), Expect(owner=404))


@pytest.mark.matrix("upgrades:task_delete")
def test_matrix_task_delete(upfleet, client_for):
    task = gateway_task(upfleet.t.sunfix_om, upfleet)
    assert_matrix(upfleet.t, client_for, url("task_delete", task.pk), Expect(owner=404))

    def fresh(actor: str) -> str:
        return url("task_delete", gateway_task(upfleet.t.sunfix_om, upfleet).pk)

    assert_matrix(upfleet.t, client_for, fresh, Expect(admin=302, om=302, owner=404), method="post")


@pytest.mark.matrix("upgrades:task_action")
def test_matrix_task_action(upfleet, client_for):
    t = upfleet.t
    task = gateway_task(t.sunfix_om, upfleet)
    # POST only.
    assert_matrix(
        t, client_for, url("task_action", task.pk, "pause"), Expect(admin=405, om=405, owner=404)
    )

    def running(actor: str) -> str:
        return url("task_action", gateway_task(t.sunfix_om, upfleet).pk, "pause")

    assert_matrix(t, client_for, running, Expect(admin=302, om=302, owner=404), method="post")
    task_services.set_policy(t.sunfix_admin, t.sunfix, True)

    def waiting(actor: str) -> str:
        return url("task_action", gateway_task(t.sunfix_om, upfleet).pk, "approve")

    # Approve: administrators only (O&M 403), and never the creator (here SunFix's O&M).
    assert_matrix(t, client_for, waiting, Expect(admin=302, om=403, owner=404), method="post")
