"""The gateway list's table and dashboard (guide §6.3, §6.3.1) and a gateway's device list
(§6.3.2.1, figure 6-34).

The list's rows carry their derived status (`gateway_filters.with_list_status`) and their
inverter count as correlated subqueries, evaluated for the rows of one page; the dashboard is
two aggregate queries over every gateway the user sees, whatever the fleet's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import django_tables2 as tables
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.tables import local_time
from fleet.device_tables import firmware_text
from fleet.gateway_filters import (
    MODEL_CHOICES,
    MODEL_LABELS,
    GatewayListStatus,
    with_list_status,
)
from fleet.queries import INVERTER_TONE
from gateways.models import Gateway
from inverters.models import Inverter, InverterStatus
from ui import units
from ui.tables import BaseTable, MenuAction, operations_column, row_menu, status_pill

#: How many firmware versions the dashboard names; the rest are counted as "Other".
DASHBOARD_VERSIONS = 6


def annotate_gateway_rows(gateways: QuerySet) -> QuerySet:
    """The list's annotations: `list_status` and `inverter_count`."""
    count = (
        Inverter.objects.filter(gateway=OuterRef("pk"))
        .order_by()
        .values("gateway")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return with_list_status(gateways).annotate(
        inverter_count=Coalesce(Subquery(count, output_field=IntegerField()), 0)
    )


def list_status_pill(value: str) -> str:
    return status_pill(GatewayListStatus.labels[value], GatewayListStatus.tones[value])


class GatewayTable(BaseTable):
    """The guide's gateway list; Distribute and Rename behind each row's "…" for staff."""

    list_status = tables.Column(verbose_name=_("Status"))
    serial_number = tables.Column(
        verbose_name=_("Gateway SN"), attrs={"td": {"class": "text-nowrap"}}
    )
    name = tables.Column(verbose_name=_("Name"), empty_values=())
    model = tables.Column(verbose_name=_("Model"))
    firmware_version = tables.Column(verbose_name=_("Version"))
    site = tables.Column(verbose_name=_("Site"), order_by=("site__name",))
    company = tables.Column(verbose_name=_("Company"), order_by=("company__name",))
    inverter_count = tables.Column(
        verbose_name=_("Devices"), attrs={"th": {"class": "text-end"}, "td": {"class": "text-end"}}
    )
    signal_strength = tables.Column(verbose_name=_("Signal"))
    upload_interval_s = tables.Column(verbose_name=_("Upload interval"))
    last_seen_at = tables.Column(
        verbose_name=_("Last seen"), attrs={"td": {"class": "text-nowrap"}}
    )
    created_at = tables.Column(verbose_name=_("Created"), attrs={"td": {"class": "text-nowrap"}})
    operations = operations_column()

    class Meta(BaseTable.Meta):
        model = Gateway
        fields = (
            "list_status",
            "serial_number",
            "name",
            "model",
            "firmware_version",
            "site",
            "company",
            "inverter_count",
            "signal_strength",
            "upload_interval_s",
            "last_seen_at",
            "created_at",
            "operations",
        )
        default_columns = (
            "list_status",
            "name",
            "model",
            "firmware_version",
            "site",
            "inverter_count",
            "last_seen_at",
        )
        required_columns = ("serial_number", "operations")
        order_by = ("serial_number",)
        preference_key = "GatewayTable"
        default = units.MISSING

    def __init__(self, *args: Any, can_manage: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.can_manage = can_manage

    # --- page cells ---------------------------------------------------------------------------

    def render_list_status(self, value: str) -> str:
        return list_status_pill(value)

    def render_serial_number(self, record: Gateway) -> str:
        url = reverse("gateways:detail", args=[record.pk])
        return format_html('<a href="{}" class="fw-semibold">{}</a>', url, record.serial_number)

    def render_name(self, record: Gateway) -> str:
        return record.name or units.MISSING

    def render_model(self, record: Gateway) -> str:
        return MODEL_LABELS.get(record.model, record.model)

    def value_model(self, record: Gateway) -> str:
        return MODEL_LABELS.get(record.model, record.model)

    def render_site(self, record: Gateway) -> str:
        url = reverse("sites:detail", args=[record.site_id])
        return format_html('<a href="{}">{}</a>', url, record.site.name)

    def render_company(self, record: Gateway) -> str:
        return record.company.name

    def render_signal_strength(self, value: int) -> str:
        return f"{units.number(value, 0)} dBm"

    def render_upload_interval_s(self, value: int) -> str:
        return interval_text(value)

    def render_last_seen_at(self, value: Any) -> str:
        return local_time(value)

    def render_created_at(self, value: Any) -> str:
        return local_time(value)

    def render_operations(self, record: Gateway) -> str:
        if not self.can_manage:
            return ""
        return row_menu(
            record.serial_number,
            [
                MenuAction(
                    reverse("gateways:distribute", args=[record.pk]),
                    "diagram-3",
                    _("Distribute"),
                ),
                MenuAction(reverse("gateways:rename", args=[record.pk]), "pencil", _("Rename")),
            ],
        )

    # --- downloads ----------------------------------------------------------------------------

    def value_list_status(self, value: str) -> str:
        return str(GatewayListStatus.labels[value])

    def value_serial_number(self, record: Gateway) -> str:
        return record.serial_number

    def value_name(self, record: Gateway) -> str:
        return record.name

    def value_site(self, record: Gateway) -> str:
        return record.site.name if record.site_id else ""

    def value_company(self, record: Gateway) -> str:
        return record.company.name

    def value_last_seen_at(self, value: Any) -> str:
        return local_time(value)

    def value_created_at(self, value: Any) -> str:
        return local_time(value)


def interval_text(seconds: int | None) -> str:
    """An upload interval as people say it: "30 s", "5 min", "1 h"."""
    if seconds is None:
        return units.MISSING
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# --- the dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """One count of the dashboard, with the list filtered by it."""

    key: str
    label: str
    count: int
    tone: str = "secondary"
    url: str = ""


def gateway_dashboard(viewer: User, list_url: str) -> dict[str, Any]:
    """Status, model and firmware-version counts of every gateway `viewer` sees (guide §6.3,
    figure 6-29); each count links to the list filtered by it."""
    gateways = Gateway.objects.visible_to(viewer)
    # One row per (status, model): grouping lets PostgreSQL hash the devices' states once
    # rather than probing them per gateway for every count.
    groups = (
        with_list_status(gateways)
        .order_by()
        .values("list_status", "model")
        .annotate(n=Count("pk"))
        .values_list("list_status", "model", "n")
    )
    totals = {"total": 0}
    totals.update({f"status_{key}": 0 for key, _label in GatewayListStatus.choices})
    totals.update({f"model_{i}": 0 for i in range(len(MODEL_CHOICES))})
    model_index = {model: i for i, (model, _label) in enumerate(MODEL_CHOICES)}
    for status, model, n in groups:
        totals["total"] += n
        totals[f"status_{status}"] += n
        if model in model_index:
            totals[f"model_{model_index[model]}"] += n
    versions = list(
        gateways.order_by()
        .values("firmware_version")
        .annotate(n=Count("pk"))
        .order_by("-n", "firmware_version")
    )
    shown = versions[:DASHBOARD_VERSIONS]
    other = sum(v["n"] for v in versions[DASHBOARD_VERSIONS:])
    version_counts = [
        Tally(
            v["firmware_version"],
            v["firmware_version"] or str(_("Unknown")),
            v["n"],
            url=f"{list_url}?{urlencode({'version': v['firmware_version']})}"
            if v["firmware_version"]
            else "",
        )
        for v in shown
    ]
    if other:
        version_counts.append(Tally("other", str(_("Other")), other))
    return {
        "total": totals["total"],
        "statuses": [
            Tally(
                key,
                str(label),
                totals[f"status_{key}"],
                GatewayListStatus.tones[key],
                f"{list_url}?status={key}",
            )
            for key, label in GatewayListStatus.choices
        ],
        "models": [
            Tally(
                model, label, totals[f"model_{i}"], url=f"{list_url}?{urlencode({'model': model})}"
            )
            for i, (model, label) in enumerate(MODEL_CHOICES)
        ],
        "versions": version_counts,
    }


# --- a gateway's device list -------------------------------------------------------------------


def gateway_devices(gateway: Gateway, viewer: User) -> QuerySet:
    return (
        Inverter.objects.visible_to(viewer)
        .filter(gateway=gateway)
        .order_by("modbus_address", "serial_number")
    )


class GatewayDeviceTable(BaseTable):
    """The devices on a gateway's bus (figure 6-34); Delete for who may manage devices."""

    modbus_address = tables.Column(verbose_name=_("Communication address"))
    model = tables.Column(verbose_name=_("Model"))
    status = tables.Column(verbose_name=_("Status"))
    serial_number = tables.Column(verbose_name=_("Serial No."))
    name = tables.Column(verbose_name=_("Name"), empty_values=())
    firmware_versions = tables.Column(verbose_name=_("Firmware"), empty_values=())
    created_at = tables.Column(verbose_name=_("Created time"))
    operations = operations_column()

    class Meta(BaseTable.Meta):
        model = Inverter
        fields = (
            "modbus_address",
            "model",
            "status",
            "serial_number",
            "name",
            "firmware_versions",
            "created_at",
            "operations",
        )
        orderable = False
        default = units.MISSING
        attrs = {"class": "table table-hover align-middle mb-0 text-nowrap"}
        empty_text = _("No device has been found on this gateway's bus yet.")

    def __init__(self, data: Any, *, gateway: Gateway, can_manage: bool, **kwargs: Any) -> None:
        self.gateway = gateway
        columns = [name for name in self.page_columns() if can_manage or name != "operations"]
        super().__init__(data, columns=columns, **kwargs)

    def render_status(self, record: Inverter) -> str:
        status = InverterStatus(record.status)
        return status_pill(status.label, INVERTER_TONE[status])

    def render_serial_number(self, record: Inverter) -> str:
        url = _inverter_url(record.pk)
        if url:
            return format_html('<a href="{}" class="fw-semibold">{}</a>', url, record.serial_number)
        return record.serial_number

    def render_name(self, record: Inverter) -> str:
        return record.name or units.MISSING

    def render_firmware_versions(self, value: dict | None) -> str:
        return firmware_text(value) or units.MISSING

    def render_created_at(self, value: Any) -> str:
        return local_time(value)

    def render_operations(self, record: Inverter) -> str:
        url = reverse("gateways:device_delete", args=[self.gateway.pk, record.pk])
        label = _("Delete")
        return format_html(
            '<a href="{}" class="btn btn-sm btn-outline-danger" hx-get="{}" '
            'hx-target="#action-dialog" data-bs-toggle="modal" data-bs-target="#action-modal" '
            'aria-label="{} {}"><i class="bi bi-trash me-1" aria-hidden="true"></i>{}</a>',
            url,
            url,
            label,
            record.serial_number,
            label,
        )


def _inverter_url(pk: int) -> str:
    return reverse("inverters:detail", args=[pk])


__all__ = [
    "GatewayDeviceTable",
    "GatewayTable",
    "annotate_gateway_rows",
    "gateway_dashboard",
    "gateway_devices",
]
