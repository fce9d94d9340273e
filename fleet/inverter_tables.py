"""The inverter list's table (guide §6.4, figure 6-44): its columns, cells and downloads.

A row reads its inverter, site, gateway and newest values (`InverterLatest`) from one joined
query of the page's ids (fleet/views/inverter_list.py), so a page costs the same whatever the
fleet's size and no cell queries again.
"""

from __future__ import annotations

import django_tables2 as tables
from django.db.models import F, QuerySet
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts import permissions
from accounts.tables import local_time
from fleet.device_tables import firmware_text, latest_of
from fleet.queries import INVERTER_TONE
from inverters.models import Inverter, InverterStatus
from ui import units
from ui.tables import BaseTable, MenuAction, figure_column, operations_column, row_menu, status_pill

#: The firmware the list shows, as the guide prints it ("dsp: 01.90.06 lcd: 01.56").


class InverterTable(BaseTable):
    status = tables.Column(verbose_name=_("Device status"))
    name = tables.Column(
        verbose_name=_("Name"), empty_values=(), attrs={"td": {"class": "text-nowrap"}}
    )
    serial_number = tables.Column(
        verbose_name=_("Device SN"), attrs={"td": {"class": "text-nowrap"}}
    )
    site = tables.Column(
        verbose_name=_("Site name"),
        order_by=("site__name",),
        attrs={"td": {"class": "text-nowrap"}},
    )
    gateway = tables.Column(verbose_name=_("Gateway SN"), order_by=("gateway__serial_number",))
    model = tables.Column(verbose_name=_("Equipment model"), attrs={"td": {"class": "text-nowrap"}})
    firmware = tables.Column(
        verbose_name=_("Firmware"),
        accessor="firmware_versions",
        orderable=False,
        attrs={"td": {"class": "text-nowrap"}},
    )
    power = figure_column(_("Power generation"), accessor="pk", empty_values=())
    modbus_address = tables.Column(verbose_name=_("Communication address"))
    rated_power_kw = figure_column(_("Rated power"))
    company = tables.Column(verbose_name=_("Company"), order_by=("company__name",))
    last_seen_at = tables.Column(
        verbose_name=_("Last seen"), attrs={"td": {"class": "text-nowrap"}}
    )
    created_at = tables.Column(verbose_name=_("Created"), attrs={"td": {"class": "text-nowrap"}})
    operations = operations_column()

    class Meta(BaseTable.Meta):
        model = Inverter
        fields = (
            "status",
            "name",
            "serial_number",
            "site",
            "gateway",
            "model",
            "firmware",
            "power",
            "modbus_address",
            "rated_power_kw",
            "company",
            "last_seen_at",
            "created_at",
            "operations",
        )
        default_columns = ("status", "site", "gateway", "model", "firmware", "power")
        required_columns = ("name", "serial_number", "operations")
        order_by = ("serial_number",)
        preference_key = "InverterTable"
        default = units.MISSING

    # --- Sorting: inverters without a value last, whichever the direction -----------------------

    def order_power(self, queryset: QuerySet, is_descending: bool) -> tuple[QuerySet, bool]:
        field = F("latest__pv_power")
        order = field.desc(nulls_last=True) if is_descending else field.asc(nulls_last=True)
        return queryset.order_by(order), True

    # --- Cells on the page ----------------------------------------------------------------------

    def render_status(self, record: Inverter) -> str:
        status = InverterStatus(record.status)
        return status_pill(status.label, INVERTER_TONE[status])

    def render_name(self, record: Inverter) -> str:
        return format_html(
            '<a href="{}" class="fw-semibold text-decoration-none">{}</a>',
            reverse("inverters:detail", args=[record.pk]),
            record.name or record.serial_number,
        )

    def render_serial_number(self, record: Inverter) -> str:
        return format_html(
            '<a href="{}" class="text-decoration-none">{}</a>',
            reverse("inverters:detail", args=[record.pk]),
            record.serial_number,
        )

    def render_site(self, record: Inverter) -> str:
        if record.site is None:
            return units.MISSING
        return format_html(
            '<a href="{}">{}</a>', reverse("sites:detail", args=[record.site_id]), record.site.name
        )

    def render_gateway(self, record: Inverter) -> str:
        if record.gateway is None:
            return units.MISSING
        url = reverse("gateways:detail", args=[record.gateway_id])
        return format_html('<a href="{}">{}</a>', url, record.gateway.serial_number)

    def render_firmware(self, value: dict) -> str:
        return format_html(
            '<span class="font-monospace small">{}</span>',
            firmware_text(value, lowercase=True, main_only=True),
        )

    def render_power(self, record: Inverter) -> str:
        latest = latest_of(record)
        return units.power_kw(latest.pv_power if latest else None, 3)

    def render_rated_power_kw(self, value) -> str:
        return f"{units.number(value, 2)} kW"

    def render_company(self, value) -> str:
        return value.name

    def render_last_seen_at(self, value) -> str:
        return local_time(value)

    def render_created_at(self, value) -> str:
        return local_time(value)

    def render_operations(self, record: Inverter) -> str:
        """The row's "…" menu for those who manage devices; owners see none."""
        if not permissions.can_on_visible(self.request.user, "device.manage", record):
            return format_html('<span class="text-secondary" aria-hidden="true">{}</span>', "–")
        return row_menu(
            record.name or record.serial_number,
            [
                MenuAction(reverse("inverters:rename", args=[record.pk]), "pencil", _("Rename")),
                MenuAction(
                    reverse("inverters:delete", args=[record.pk]),
                    "trash",
                    _("Delete"),
                    danger=True,
                    separated=True,
                ),
            ],
        )

    # --- Cells of a download --------------------------------------------------------------------

    def value_status(self, record: Inverter) -> str:
        return str(InverterStatus(record.status).label)

    def value_name(self, record: Inverter) -> str:
        return record.name

    def value_serial_number(self, record: Inverter) -> str:
        return record.serial_number

    def value_site(self, record: Inverter) -> str:
        return record.site.name if record.site is not None else ""

    def value_gateway(self, record: Inverter) -> str:
        return record.gateway.serial_number if record.gateway is not None else ""

    def value_firmware(self, value: dict) -> str:
        return firmware_text(value)

    def value_company(self, value) -> str:
        return value.name

    def value_last_seen_at(self, value) -> str:
        return local_time(value)

    def value_created_at(self, value) -> str:
        return local_time(value)
