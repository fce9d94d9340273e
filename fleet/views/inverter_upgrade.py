"""Inverter → Upgrade (guide §6.4.2.10): the inverter's firmware now, its upgrade history and
the Upgrade dialog (figure 6-63).

The history has two sources, newest first: the inverter's upgrade tasks (UpgradeTarget rows:
time, logger, board type, address, creator, version and how it went), and the versions read
from it through the remote-operations engine (register reads of the Firmware group, kept as
RemoteOperation rows: one row whenever a type's version differs from the one read before it).
The dialog offers the board types the model takes (`RegisterMap.firmware_types`), the releases
for the model and type, Reservation and Time; Confirm creates a one-device upgrade task.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django import forms
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.permissions import can, can_on_visible
from devices.registermap import RegisterMap, UnknownModelError
from fleet.views.inverter_base import InverterTabView
from fleet.views.upgrade_dialog import DeviceUpgradeDialog
from inverters.models import Inverter
from maintenance.models import OperationKind, OperationState, RemoteOperation
from maintenance.tables import local_time
from ui.forms import StyledFormMixin
from upgrades.models import DeviceKind, FirmwareType, UpgradeTarget
from upgrades.task_services import inverter_version

FIRMWARE_GROUP = "Firmware"
DEFAULT_UPGRADE_TYPES = ("dsp", "lcd", "slave_dsp", "arc")
# The reads the history looks at, newest first: far more than an inverter is read in years.
HISTORY_READS = 2000


def firmware_keys(inverter: Inverter) -> dict[str, str]:
    """Register key → firmware type (DSP, LCD…) of the inverter's model, as ingest names them."""
    try:
        rm = RegisterMap.for_model(inverter.model)
    except UnknownModelError:
        return {}
    if FIRMWARE_GROUP not in rm.groups():
        return {}
    return {
        p.key: p.key.removesuffix("_version").upper() for p in rm.points_in_group(FIRMWARE_GROUP)
    }


@dataclass
class VersionChange:
    """One row of the history: a version read from the inverter (`operation`) or one of its
    upgrade tasks (`target`)."""

    at: datetime.datetime
    logger: str
    type: str
    address: int
    version: str
    operation: RemoteOperation | None = None
    previous: str = ""
    creator: str = ""
    target: UpgradeTarget | None = None

    @property
    def when(self) -> str:
        """In the viewer's time zone, as the guide writes it: 2024-10-08 19:27:21+08:00."""
        return local_time(self.at)


def version_history(inverter: Inverter) -> list[VersionChange]:
    """Every change of a firmware type's version between successive reads, newest first
    (the first read of a type counts as a change from nothing)."""
    keys = firmware_keys(inverter)
    if not keys:
        return []
    reads = (
        RemoteOperation.objects.filter(
            inverter=inverter,
            kind=OperationKind.READ,
            state=OperationState.SUCCEEDED,
            result__values__has_any_keys=list(keys),
        )
        .select_related("gateway")
        .order_by("-finished_at", "-id")[:HISTORY_READS]
    )
    reads_changes: list[list[VersionChange]] = []
    last: dict[str, str] = {}
    for operation in reversed(list(reads)):
        values = operation.result.get("values") or {}
        found = []
        for key, kind in keys.items():
            entry = values.get(key)
            version = entry.get("value") if isinstance(entry, dict) else entry
            if version in (None, ""):
                continue
            version = str(version)
            if last.get(kind) != version:
                found.append(
                    VersionChange(
                        at=operation.finished_at or operation.created_at,
                        logger=operation.gateway.serial_number,
                        type=kind,
                        address=inverter.modbus_address,
                        version=version,
                        operation=operation,
                        previous=last.get(kind, ""),
                    )
                )
                last[kind] = version
        if found:
            reads_changes.append(found)
    # Newest read first; within a read, the register map's order.
    return [change for found in reversed(reads_changes) for change in found]


def task_history(inverter: Inverter) -> list[VersionChange]:
    """The inverter's upgrade tasks (not the deleted ones), newest first."""
    targets = (
        UpgradeTarget.objects.filter(inverter=inverter, task__deleted_at__isnull=True)
        .select_related("task__release", "gateway")
        .order_by("-task__created_at", "-id")[:HISTORY_READS]
    )
    return [
        VersionChange(
            at=target.finished_at
            or target.reported_at
            or target.offered_at
            or target.task.created_at,
            logger=target.gateway.serial_number,
            type=target.task.firmware_type.upper(),
            address=target.modbus_address or inverter.modbus_address,
            version=target.task.release.version,
            previous=target.from_version,
            creator=target.task.creator_label,
            target=target,
        )
        for target in targets
    ]


def upgrade_types(inverter: Inverter) -> list[str]:
    """The board types of the inverter's model that take an image (figure 6-63's tabs)."""
    try:
        rm = RegisterMap.for_model(inverter.model)
    except UnknownModelError:
        rm = None
    if rm is not None and hasattr(rm, "firmware_types"):
        names = [str(name).lower() for name in rm.firmware_types]
    else:
        names = list(DEFAULT_UPGRADE_TYPES)
    return [name for name in names if name in FirmwareType.values and name != FirmwareType.GATEWAY]


def firmware_now(inverter: Inverter, types: list[str], history: list[VersionChange]) -> list:
    """(type, version, where it comes from, when, read?) per firmware type: the inverter's uploads
    first, else the newest read of it."""
    read = {}
    for change in history:  # newest first
        read.setdefault(change.type, change)
    rows = []
    for kind in types:
        if inverter.firmware_versions.get(kind):
            rows.append(
                (
                    kind,
                    inverter.firmware_versions[kind],
                    _("Reported by the inverter"),
                    local_time(inverter.last_seen_at),
                    False,
                )
            )
        elif kind in read:
            rows.append(
                (kind, read[kind].version, _("Read from the inverter"), read[kind].when, True)
            )
    return rows


class HistoryFilterForm(StyledFormMixin, forms.Form):
    """The guide's Device type, Start date and End date."""

    type = forms.ChoiceField(label=_("Device type"), required=False)
    start = forms.DateField(
        label=_("Start date"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    end = forms.DateField(
        label=_("End date"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, *args: Any, types: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = [("", _("All types"))] + [(t, t) for t in types]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", _("The end date is before the start date."))
        return data

    def keep(self, change: VersionChange) -> bool:
        data = self.cleaned_data
        day = timezone.localtime(change.at).date()
        return (
            (not data.get("type") or change.type == data["type"])
            and (not data.get("start") or day >= data["start"])
            and (not data.get("end") or day <= data["end"])
        )


class UpgradeTabView(InverterTabView):
    tab = "upgrade"
    template_name = "fleet/inverters/upgrade.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        inverter = self.object
        keys = firmware_keys(inverter)
        reads = version_history(inverter)
        tasks = task_history(inverter)
        types = list(
            dict.fromkeys(
                list(keys.values())
                + list(inverter.firmware_versions)
                + [change.type for change in tasks]
            )
        )
        form = HistoryFilterForm(self.request.GET or None, types=types)
        filtered = bool(self.request.GET)
        now = firmware_now(inverter, types, reads)
        history = sorted(tasks + reads, key=lambda change: change.at, reverse=True)
        if form.is_bound:
            history = [c for c in history if form.is_valid() and form.keep(c)]
        user = self.request.user
        return super().get_context_data(
            firmware_now=now,
            history=history,
            filter_form=form,
            filtered=filtered,
            can_open_operations=can(user, "maintenance.view"),
            can_upgrade=bool(upgrade_types(inverter))
            and can_on_visible(user, "upgrade.manage", inverter),
            can_open_tasks=can(user, "upgrade.manage"),
            **kwargs,
        )


class InverterUpgradeView(DeviceUpgradeDialog):
    """Upgrade (figure 6-63): a tab per board type the model takes, Firmware (the releases for
    the model and type), Reservation and Time; Confirm creates a one-device upgrade task."""

    model = Inverter
    kind = DeviceKind.INVERTER
    template_name = "fleet/inverters/upgrade_task.html"

    def firmware_type(self) -> str:
        types = upgrade_types(self.object)
        params = self.request.POST if self.request.method == "POST" else self.request.GET
        chosen = params.get("type", "")
        return chosen if chosen in types else (types[0] if types else "")

    def dialog_context(self) -> dict[str, Any]:
        chosen = self.firmware_type()
        base = reverse("inverters:upgrade_task", args=[self.object.pk])
        return {
            "inverter": self.object,
            "chosen_type": chosen,
            "chosen_label": FirmwareType(chosen).label if chosen else "",
            "current_version": inverter_version(self.object, chosen) if chosen else "",
            "type_tabs": [
                (name, FirmwareType(name).label, f"{base}?type={name}", name == chosen)
                for name in upgrade_types(self.object)
            ],
            "next_url": reverse("inverters:upgrade", args=[self.object.pk]),
        }


urlpatterns = [
    path("<int:pk>/upgrade/", UpgradeTabView.as_view(), name="upgrade"),
    path("<int:pk>/upgrade/new/", InverterUpgradeView.as_view(), name="upgrade_task"),
]
