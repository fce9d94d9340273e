"""The gateway and inverter lists of a site (guide §6.2.2, figure 6-14) and their rows.

Both tables show every device of the site (a site has a handful of gateways and rarely more
than a few dozen inverters), in one query each: the inverter rows carry their newest values
(`InverterLatest`) and today's yield (`EnergyDaily` of the site's local day) along.
A device's name links to its own page (`gateways:detail`, `inverters:detail`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_tables2 as tables
from django.db.models import FloatField, OuterRef, QuerySet, Subquery
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.tables import local_time
from fleet.queries import GATEWAY_TONE, INVERTER_TONE
from gateways.models import Gateway, GatewayStatus
from inverters.models import EnergyDaily, Inverter, InverterStatus
from sites.models import Site
from ui import units
from ui.tables import BaseTable, MenuAction, operations_column, row_menu, status_pill


def site_gateways(site: Site, viewer: User) -> QuerySet:
    return Gateway.objects.visible_to(viewer).filter(site=site).order_by("serial_number")


def site_inverters(site: Site, viewer: User, today: dt.date) -> QuerySet:
    """The site's inverters with `latest` (may be missing) and `day_kwh` (None before the
    day's first sample)."""
    day_kwh = EnergyDaily.objects.filter(inverter=OuterRef("pk"), day=today).values("pv_kwh")[:1]
    return (
        Inverter.objects.visible_to(viewer)
        .filter(site=site)
        .select_related("gateway", "latest")
        .annotate(day_kwh=Subquery(day_kwh, output_field=FloatField()))
        .order_by("gateway__serial_number", "modbus_address", "serial_number")
    )


def latest_of(inverter: Inverter) -> Any:
    """The inverter's newest values, or None before its first upload."""
    try:
        return inverter.latest
    except Inverter.latest.RelatedObjectDoesNotExist:
        return None


#: The firmware parts the guide names first (and alone in the inverter list).
MAIN_FIRMWARE = ("DSP", "LCD")


def firmware_text(
    versions: dict | None, *, lowercase: bool = False, main_only: bool = False
) -> str:
    """A device's firmware as the guide prints it: "DSP: 01.02.00 LCD: 02.00", other parts
    (ARC, …) after them; "" without any. `main_only` gives DSP and LCD alone, "–" for a missing
    one, and `lowercase` the inverter list's "dsp: … lcd: …"."""
    upper = {str(name).upper(): version for name, version in (versions or {}).items()}
    main = [(name, upper.pop(name, None)) for name in MAIN_FIRMWARE]
    if main_only:
        parts = [(name, version or units.MISSING) for name, version in main]
    else:
        parts = [(name, version) for name, version in main if version] + sorted(upper.items())
    return " ".join(f"{name.lower() if lowercase else name}: {version}" for name, version in parts)


def _device_link(url_name: str, pk: int, label: str) -> str:
    """The device's label in bold, linking to its page."""
    return format_html(
        '<a href="{}" class="fw-semibold">{}</a>', reverse(url_name, args=[pk]), label
    )


class SiteDeviceTable(BaseTable):
    """What both lists share: the site, and the Operation column only for who may manage."""

    def __init__(self, data: Any, *, site: Site, can_manage: bool, **kwargs: Any) -> None:
        self.site = site
        columns = [name for name in self.page_columns() if can_manage or name != "operations"]
        super().__init__(data, columns=columns, **kwargs)

    class Meta(BaseTable.Meta):
        orderable = False
        default = units.MISSING
        attrs = {"class": "table table-hover align-middle mb-0 text-nowrap"}


class SiteGatewayTable(SiteDeviceTable):
    serial_number = tables.Column(verbose_name=_("Gateway SN"))
    name = tables.Column(verbose_name=_("Name"))
    model = tables.Column(verbose_name=_("Model"))
    status = tables.Column(verbose_name=_("Status"))
    firmware_version = tables.Column(verbose_name=_("Firmware version"))
    signal_strength = tables.Column(verbose_name=_("Signal"))
    last_seen_at = tables.Column(verbose_name=_("Last seen"))
    operations = operations_column()

    class Meta(SiteDeviceTable.Meta):
        model = Gateway
        fields = (
            "serial_number",
            "name",
            "model",
            "status",
            "firmware_version",
            "signal_strength",
            "last_seen_at",
            "operations",
        )
        required_columns = ("serial_number",)
        empty_text = _("No gateway is bound to this site yet.")

    def render_serial_number(self, record: Gateway) -> str:
        return _device_link("gateways:detail", record.pk, record.serial_number)

    def render_operations(self, record: Gateway) -> str:
        url = reverse("sites:gateway_unbind", args=[self.site.pk, record.pk])
        return row_menu(
            record.serial_number, [MenuAction(url, "link-45deg", _("Unbind"), danger=True)]
        )

    def render_model(self, record: Gateway) -> str:
        return record.get_model_display()

    def render_status(self, record: Gateway) -> str:
        status = GatewayStatus(record.status)
        return status_pill(status.label, GATEWAY_TONE[status])

    def render_signal_strength(self, value: int) -> str:
        return f"{units.number(value, 0)} dBm"

    def render_last_seen_at(self, value: dt.datetime) -> str:
        return local_time(value)


class SiteInverterTable(SiteDeviceTable):
    status = tables.Column(verbose_name=_("Status"))
    name = tables.Column(verbose_name=_("Name"), empty_values=())
    serial_number = tables.Column(verbose_name=_("Device SN"))
    model = tables.Column(verbose_name=_("Model"))
    gateway = tables.Column(verbose_name=_("Gateway SN"), accessor="gateway__serial_number")
    firmware = tables.Column(verbose_name=_("Firmware version"), accessor="firmware_versions")
    power = tables.Column(verbose_name=_("Power now"), accessor="pk", empty_values=())
    day_kwh = tables.Column(verbose_name=_("Yield today"), empty_values=())
    soc = tables.Column(verbose_name=_("Battery SOC"), accessor="pk", empty_values=())
    operations = operations_column()

    class Meta(SiteDeviceTable.Meta):
        model = Inverter
        fields = (
            "status",
            "name",
            "serial_number",
            "model",
            "gateway",
            "firmware",
            "power",
            "day_kwh",
            "soc",
            "operations",
        )
        required_columns = ("status",)
        empty_text = _("No inverter is on this site yet.")

    def render_status(self, record: Inverter) -> str:
        status = InverterStatus(record.status)
        return status_pill(status.label, INVERTER_TONE[status])

    def render_name(self, record: Inverter) -> str:
        return _device_link("inverters:detail", record.pk, record.name or record.serial_number)

    def render_operations(self, record: Inverter) -> str:
        url = reverse("sites:inverter_delete", args=[self.site.pk, record.pk])
        return row_menu(record.serial_number, [MenuAction(url, "trash", _("Delete"), danger=True)])

    def render_firmware(self, value: dict) -> str:
        return firmware_text(value) or units.MISSING

    def render_power(self, record: Inverter) -> str:
        latest = latest_of(record)
        return units.power_fine(latest.pv_power if latest else None)

    def render_day_kwh(self, value: float | None) -> str:
        return units.energy(value)

    def render_soc(self, record: Inverter) -> str:
        latest = latest_of(record)
        return units.percent(latest.batt_soc if latest else None)
