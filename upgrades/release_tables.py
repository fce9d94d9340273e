"""The firmware catalogue's table (guide Figure 7-1): one row per model of a release."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import django_tables2 as tables
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts.tables import local_time
from ui import units
from ui.tables import BaseTable, operations_column, truncated_text
from upgrades.models import DeviceKind, ReleaseModel


class ReleaseTable(BaseTable):
    """Model No, Version (NEW on the newest per model), Describe, Upgrade statistics, Creator,
    Operation; Firmware type on the inverter tab. The view fills `running` (row id → devices
    in the user's scope on that version) for the rows it shows."""

    model = tables.Column(verbose_name=_("Model No"), attrs={"td": {"class": "text-nowrap"}})
    firmware_type = tables.Column(verbose_name=_("Firmware type"))
    version = tables.Column(verbose_name=_("Version"), attrs={"td": {"class": "text-nowrap"}})
    description = tables.Column(
        verbose_name=_("Describe"), accessor="release__description", orderable=False
    )
    statistics = tables.Column(
        verbose_name=_("Upgrade statistics"), accessor="pk", orderable=False, empty_values=()
    )
    creator = tables.Column(
        verbose_name=_("Creator"), accessor="release__creator_label", orderable=False
    )
    released = tables.Column(
        verbose_name=_("Released"),
        accessor="release__created_at",
        attrs={"td": {"class": "text-nowrap"}},
    )
    size = tables.Column(verbose_name=_("Size"), accessor="release__size", orderable=False)
    sha256 = tables.Column(verbose_name="SHA-256", accessor="release__sha256", orderable=False)
    operations = operations_column()

    class Meta(BaseTable.Meta):
        model = ReleaseModel
        fields = (
            "model",
            "firmware_type",
            "version",
            "description",
            "statistics",
            "creator",
            "released",
            "size",
            "operations",
        )
        sequence = (
            "model",
            "firmware_type",
            "version",
            "description",
            "statistics",
            "creator",
            "released",
            "size",
            "sha256",
            "operations",
        )
        default_columns = ("firmware_type", "version", "description", "statistics", "creator")
        required_columns = ("model", "operations")
        download_only = ("sha256",)
        order_by = ("model", "-released")
        preference_key = "ReleaseTable"
        default = units.MISSING

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running: dict[int, int] = {}
        self.kind = DeviceKind.GATEWAY
        self.can_download = False

    # --- page cells ---------------------------------------------------------------------------

    def render_version(self, record: ReleaseModel) -> str:
        if getattr(record, "is_newest", False):
            return format_html(
                '<span class="badge text-bg-danger me-1">{}</span>{}', _("NEW"), record.version
            )
        return record.version

    def value_version(self, record: ReleaseModel) -> str:
        return record.version

    def render_description(self, value: str) -> str:
        return truncated_text(value)

    def render_statistics(self, record: ReleaseModel) -> str:
        count = self.running.get(record.pk, 0)
        if not count:
            return units.MISSING
        if record.kind == DeviceKind.GATEWAY:
            query = urlencode({"model": record.model, "version": record.version})
            return format_html(
                '<a href="{}?{}" title="{}">{}</a>',
                reverse("gateways:list"),
                query,
                _("The gateways that run this version"),
                count,
            )
        query = urlencode(
            {"model": record.model, "firmware": f"{record.firmware_type.upper()}:{record.version}"}
        )
        return format_html(
            '<a href="{}?{}" title="{}">{}</a>',
            reverse("inverters:list"),
            query,
            _("The inverters that run this version"),
            count,
        )

    def value_statistics(self, record: ReleaseModel) -> int:
        return self.running.get(record.pk, 0)

    def render_released(self, value: Any) -> str:
        return local_time(value)

    def render_size(self, value: int) -> str:
        return filesizeformat(value)

    def value_size(self, value: int) -> int:
        return value

    def render_operations(self, record: ReleaseModel) -> str:
        if not self.can_download:
            return ""
        url = reverse("upgrades:release_download", args=[record.release_id])
        return format_html(
            '<a href="{}" class="btn btn-sm btn-link" download>'
            '<i class="bi bi-download me-1" aria-hidden="true"></i>{}</a>',
            url,
            _("Download"),
        )


class GatewayReleaseTable(ReleaseTable):
    """Gateway firmware has one type: no Firmware type column (nor in the chooser)."""

    class Meta(ReleaseTable.Meta):
        exclude = ("firmware_type",)
        default_columns = ("version", "description", "statistics", "creator")
        preference_key = "GatewayReleaseTable"


class InverterReleaseTable(ReleaseTable):
    class Meta(ReleaseTable.Meta):
        preference_key = "InverterReleaseTable"
