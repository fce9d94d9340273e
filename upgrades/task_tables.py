"""The tables of the upgrade pages (guide §7.2): the task list (figure 7-6) with its upgrade
statistics, and a task's devices with their progress.

The list's statistics are counts of the task's devices by state, annotated as correlated
subqueries, so one page of tasks is one query whatever the number of devices.
"""

from __future__ import annotations

from typing import Any

import django_tables2 as tables
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.permissions import can_on_visible
from accounts.tables import local_time
from ui import units
from ui.tables import BaseTable, operations_column, status_pill
from upgrades.models import (
    FINISHED,
    IN_FLIGHT,
    DeviceKind,
    TargetState,
    TaskState,
    UpgradeTarget,
    UpgradeTask,
)

TASK_TONES = {
    TaskState.AWAITING_APPROVAL: "warning",
    TaskState.SCHEDULED: "info",
    TaskState.RUNNING: "primary",
    TaskState.PAUSED: "warning",
    TaskState.COMPLETED: "success",
    TaskState.CANCELLED: "secondary",
}
TARGET_TONES = {
    TargetState.WAITING: "light",
    TargetState.SKIPPED: "warning",
    TargetState.OFFERED: "info",
    TargetState.DOWNLOADING: "primary",
    TargetState.VERIFYING: "primary",
    TargetState.INSTALLING: "primary",
    TargetState.REBOOTING: "primary",
    TargetState.SUCCEEDED: "success",
    TargetState.FAILED: "danger",
    TargetState.CANCELLED: "secondary",
}
# The task states the engine is still working in: their pages refresh themselves.
LIVE_STATES = (TaskState.SCHEDULED, TaskState.RUNNING, TaskState.PAUSED)


def _count(condition: Q | None = None) -> Coalesce:
    targets = UpgradeTarget.objects.filter(task=OuterRef("pk"))
    if condition is not None:
        targets = targets.filter(condition)
    counted = targets.order_by().values("task").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def annotate_statistics(tasks: QuerySet) -> QuerySet:
    """`device_count`, `succeeded_count`, `failed_count`, `in_flight_count`, `finished_count`."""
    return tasks.annotate(
        device_count=_count(),
        succeeded_count=_count(Q(state=TargetState.SUCCEEDED)),
        failed_count=_count(Q(state=TargetState.FAILED)),
        in_flight_count=_count(Q(state__in=IN_FLIGHT)),
        finished_count=_count(Q(state__in=FINISHED)),
    )


def task_state_pill(task: UpgradeTask) -> str:
    pill = status_pill(task.get_state_display(), TASK_TONES.get(task.state, "secondary"))
    if task.state_reason and task.state in (TaskState.PAUSED, TaskState.CANCELLED):
        return format_html(
            '{}<div class="small text-secondary text-wrap mw-14rem">{}</div>',
            pill,
            task.state_reason,
        )
    return pill


def statistics_html(task: UpgradeTask) -> str:
    """ "7/10 succeeded · 1 failed" over a small bar of finished devices."""
    total = task.device_count
    if not total:
        return units.MISSING
    text = gettext("%(done)d/%(total)d succeeded") % {"done": task.succeeded_count, "total": total}
    if task.failed_count:
        text += " · " + gettext("%(n)d failed") % {"n": task.failed_count}
    if task.in_flight_count:
        text += " · " + gettext("%(n)d upgrading") % {"n": task.in_flight_count}
    return format_html(
        '<div class="small text-nowrap">{}</div><progress class="d-block w-100 task-progress" '
        'max="{}" value="{}" aria-label="{}"></progress>',
        text,
        total,
        task.succeeded_count,
        gettext("Devices succeeded"),
    )


def reservation_text(task: UpgradeTask) -> str:
    """In the viewer's time zone with its offset; "-" for now."""
    return local_time(task.reservation_at) if task.reservation_at else "-"


def available_actions(user: Any, task: UpgradeTask) -> list[tuple[str, str, str]]:
    """(action, label, icon) the user may take on the task now (the task came from
    visible_to(user))."""
    if not can_on_visible(user, "upgrade.manage", task):
        return []
    actions = []
    if task.state == TaskState.AWAITING_APPROVAL and can_on_visible(user, "upgrade.approve", task):
        actions.append(("approve", gettext("Approve"), "check2-circle"))
    if task.state == TaskState.RUNNING:
        actions.append(("pause", gettext("Pause"), "pause-circle"))
    if task.state == TaskState.PAUSED:
        actions.append(("resume", gettext("Resume"), "play-circle"))
    failed = getattr(task, "failed_count", None)
    if failed is None:
        failed = task.targets.filter(state=TargetState.FAILED).count()
    if failed and task.state not in (TaskState.CANCELLED, TaskState.AWAITING_APPROVAL):
        actions.append(("retry", gettext("Retry failed"), "arrow-repeat"))
    return actions


def action_buttons(request: Any, task: UpgradeTask, *, small: bool = True) -> str:
    """Approve / Pause / Resume / Retry failed as POST buttons (work without JavaScript)."""
    size = " btn-sm" if small else ""
    parts = []
    for action, label, icon in available_actions(request.user, task):
        url = reverse("upgrades:task_action", args=[task.pk, action])
        parts.append(
            format_html(
                '<form method="post" action="{}" class="d-inline">'
                '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
                '<input type="hidden" name="next" value="{}">'
                '<button type="submit" class="btn btn-outline-primary{} text-nowrap">'
                '<i class="bi bi-{} me-1" aria-hidden="true"></i>{}</button></form>',
                url,
                get_token(request),
                request.get_full_path(),
                size,
                icon,
                label,
            )
        )
    return mark_safe(" ".join(parts))  # noqa: S308 - each part is format_html


class UpgradeTaskTable(BaseTable):
    """The guide's task list: Number, Creator, Firmware type, Model No/Firmware, Upgrade
    statistics, Reservation, State, Operation."""

    id = tables.Column(verbose_name=_("Number"))
    creator_label = tables.Column(verbose_name=_("Creator"))
    firmware_type = tables.Column(verbose_name=_("Firmware type"))
    model = tables.Column(
        verbose_name=_("Model No/Firmware"), order_by=("model", "release__version")
    )
    statistics = tables.Column(
        verbose_name=_("Upgrade statistics"), accessor="pk", order_by=("-device_count",)
    )
    reservation_at = tables.Column(verbose_name=_("Reservation"), empty_values=())
    state = tables.Column(verbose_name=_("State"))
    created_at = tables.Column(verbose_name=_("Created"))
    operations = operations_column()

    class Meta(BaseTable.Meta):
        model = UpgradeTask
        fields = (
            "id",
            "creator_label",
            "firmware_type",
            "model",
            "statistics",
            "reservation_at",
            "state",
            "created_at",
            "operations",
        )
        default_columns = (
            "creator_label",
            "firmware_type",
            "model",
            "statistics",
            "reservation_at",
            "state",
        )
        required_columns = ("id", "operations")
        order_by = ("-id",)
        preference_key = "UpgradeTaskTable"
        default = units.MISSING

    def render_id(self, record: UpgradeTask) -> str:
        url = reverse("upgrades:task_detail", args=[record.pk])
        return format_html('<a href="{}" class="fw-semibold">{}</a>', url, record.pk)

    def value_id(self, record: UpgradeTask) -> int:
        return record.pk

    def render_creator_label(self, record: UpgradeTask) -> str:
        return record.creator_label or units.MISSING

    def render_model(self, record: UpgradeTask) -> str:
        return format_html(
            '{} <span class="font-monospace">{}</span>', record.model, record.release.version
        )

    def value_model(self, record: UpgradeTask) -> str:
        return f"{record.model} {record.release.version}"

    def render_statistics(self, record: UpgradeTask) -> str:
        return statistics_html(record)

    def value_statistics(self, record: UpgradeTask) -> str:
        return f"{record.succeeded_count}/{record.device_count}"

    def render_reservation_at(self, record: UpgradeTask) -> str:
        return reservation_text(record)

    def value_reservation_at(self, record: UpgradeTask) -> str:
        return reservation_text(record)

    def render_state(self, record: UpgradeTask) -> str:
        return task_state_pill(record)

    def value_state(self, record: UpgradeTask) -> str:
        return str(record.get_state_display())

    def render_created_at(self, value: Any) -> str:
        return local_time(value)

    def value_created_at(self, value: Any) -> str:
        return local_time(value)

    def render_operations(self, record: UpgradeTask) -> str:
        request = self.request
        check = format_html(
            '<a class="btn btn-sm btn-light border" href="{}">{}</a>',
            reverse("upgrades:task_detail", args=[record.pk]),
            gettext("Check"),
        )
        delete_url = reverse("upgrades:task_delete", args=[record.pk])
        delete = format_html(
            '<a class="btn btn-sm btn-outline-danger" href="{}" hx-get="{}" '
            'hx-target="#action-dialog" hx-swap="innerHTML" data-bs-toggle="modal" '
            'data-bs-target="#action-modal">{}</a>',
            delete_url,
            delete_url,
            gettext("Delete"),
        )
        return format_html(
            '<div class="d-flex flex-wrap justify-content-end gap-1">{} {} {}</div>',
            action_buttons(request, record),
            delete,
            check,
        )


# --- One task's devices -------------------------------------------------------------------------


def target_status_html(target: UpgradeTarget, size: int | None) -> str:
    """The device's state: "Downloading 42 %", or the reason it failed or was skipped."""
    label = target.get_state_display()
    if target.state == TargetState.DOWNLOADING and size:
        label = gettext("Downloading %(pct)d %%") % {
            "pct": min(100, int(100 * target.received / size))
        }
    pill = status_pill(label, TARGET_TONES.get(target.state, "secondary"))
    if target.reason:
        return format_html(
            '{}<div class="small text-secondary text-wrap mw-14rem">{}</div>', pill, target.reason
        )
    return pill


class UpgradeTargetTable(BaseTable):
    """A task's devices: SN, site, wave, status (with progress or reason), versions, time."""

    device = tables.Column(
        verbose_name=_("Device SN"),
        accessor="pk",
        order_by=("gateway__serial_number", "inverter__serial_number"),
    )
    site = tables.Column(verbose_name=_("Site"), accessor="gateway__site__name")
    wave = tables.Column(verbose_name=_("Wave"))
    state = tables.Column(verbose_name=_("Status"))
    from_version = tables.Column(verbose_name=_("Version before"))
    reported_version = tables.Column(verbose_name=_("Version after"))
    attempt = tables.Column(verbose_name=_("Attempts"))
    reported_at = tables.Column(verbose_name=_("Updated"), empty_values=())

    class Meta(BaseTable.Meta):
        model = UpgradeTarget
        fields = (
            "device",
            "site",
            "wave",
            "state",
            "from_version",
            "reported_version",
            "attempt",
            "reported_at",
        )
        default_columns = (
            "site",
            "wave",
            "state",
            "from_version",
            "reported_version",
            "reported_at",
        )
        required_columns = ("device",)
        order_by = ("wave", "device")
        preference_key = "UpgradeTargetTable"
        default = units.MISSING

    def __init__(self, *args: Any, release_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release_size = release_size

    def _device(self, record: UpgradeTarget) -> Any:
        return record.inverter if record.inverter_id else record.gateway

    def render_device(self, record: UpgradeTarget) -> str:
        device = self._device(record)
        name = "inverters:detail" if record.inverter_id else "gateways:detail"
        return format_html(
            '<a href="{}" class="font-monospace">{}</a>',
            reverse(name, args=[device.pk]),
            device.serial_number,
        )

    def value_device(self, record: UpgradeTarget) -> str:
        return self._device(record).serial_number

    def render_wave(self, value: int) -> int:
        return value + 1

    def value_wave(self, value: int) -> int:
        return value + 1

    def render_state(self, record: UpgradeTarget) -> str:
        return target_status_html(record, self.release_size)

    def value_state(self, record: UpgradeTarget) -> str:
        label = str(record.get_state_display())
        return f"{label}: {record.reason}" if record.reason else label

    def render_reported_at(self, record: UpgradeTarget) -> str:
        return local_time(record.finished_at or record.reported_at or record.offered_at) or "-"

    def value_reported_at(self, record: UpgradeTarget) -> str:
        return local_time(record.finished_at or record.reported_at or record.offered_at)


def wave_progress(task: UpgradeTask) -> list[dict[str, Any]]:
    """Per wave: its share, devices, succeeded, failed, in flight; and whether it is open."""
    rows = (
        task.targets.order_by()
        .values("wave")
        .annotate(
            total=Count("pk"),
            succeeded=Count("pk", filter=Q(state=TargetState.SUCCEEDED)),
            failed=Count("pk", filter=Q(state=TargetState.FAILED)),
            in_flight=Count("pk", filter=Q(state__in=IN_FLIGHT)),
            skipped=Count("pk", filter=Q(state=TargetState.SKIPPED)),
        )
    )
    by_wave = {row["wave"]: row for row in rows}
    waves = []
    for number, share in enumerate(task.waves or [100]):
        row = by_wave.get(
            number, {"total": 0, "succeeded": 0, "failed": 0, "in_flight": 0, "skipped": 0}
        )
        total = row["total"] or 1
        waves.append(
            {
                "number": number + 1,
                "share": share,
                **row,
                "open": number <= task.current_wave,
                "ok_pct": round(100 * row["succeeded"] / total),
                "bad_pct": round(100 * row["failed"] / total),
            }
        )
    return waves


def kind_label(kind: str) -> str:
    return str(DeviceKind(kind).label)


__all__ = [
    "LIVE_STATES",
    "UpgradeTargetTable",
    "UpgradeTaskTable",
    "action_buttons",
    "annotate_statistics",
    "available_actions",
    "kind_label",
    "task_state_pill",
    "wave_progress",
]
