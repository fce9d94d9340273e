"""Inverter → Upgrade (guide §6.4.2.10): the inverter's firmware now and its version history.

The portal keeps no upgrade tasks yet; what it knows of an inverter's firmware is the versions
its uploads report (`Inverter.firmware_versions`, by type: DSP, LCD, ARC…) and the versions
read from it through the remote-operations engine (register reads of the Firmware group, kept
as RemoteOperation rows). The history is built from those reads: one row whenever a type's
version differs from the one read before it, like the guide's figure 6-62 (time, logger,
type, address, version). Creating an upgrade task comes with firmware releases; the tab says so.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django import forms
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.permissions import can
from devices.registermap import RegisterMap, UnknownModelError
from fleet.views.inverter_base import InverterTabView
from inverters.models import Inverter
from maintenance.models import OperationKind, OperationState, RemoteOperation
from maintenance.tables import local_time
from ui.forms import StyledFormMixin

FIRMWARE_GROUP = "Firmware"
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
    at: datetime.datetime
    logger: str
    type: str
    address: int
    version: str
    operation: RemoteOperation
    previous: str = ""

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
        types = list(dict.fromkeys(list(keys.values()) + list(inverter.firmware_versions)))
        history = version_history(inverter)
        form = HistoryFilterForm(self.request.GET or None, types=types)
        filtered = bool(self.request.GET)
        now = firmware_now(inverter, types, history)
        history = (
            [c for c in history if form.is_valid() and form.keep(c)] if form.is_bound else history
        )
        return super().get_context_data(
            firmware_now=now,
            history=history,
            filter_form=form,
            filtered=filtered,
            can_open_operations=can(self.request.user, "maintenance.view"),
            **kwargs,
        )


urlpatterns = [
    path("<int:pk>/upgrade/", UpgradeTabView.as_view(), name="upgrade"),
]
