"""Maintenance → Operations log: the table, and how an operation's JSON values read on a page
or in a download.

`before`, `after`, `request` and `result` are whatever the device layer stored: register values
(`{"values": {key: {"name", "value", "display", "unit"}}}`), scanned devices
(`{"devices": [...]}`), gateway settings (`{"settings": {...}}`) or anything else. Known shapes
read as "label: value unit"; any other JSON reads as compact JSON text, never an error.
"""

from __future__ import annotations

import json
from typing import Any

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from maintenance.models import RemoteOperation
from ui.tables import BaseTable

EMPTY_JSON = (None, "", {}, [])
# Table cells show the beginning of long values; the whole text is in the cell's title.
CELL_TEXT_LIMIT = 300


def local_time(value) -> str:
    """A timestamp in the user's time zone, as the guide writes it: 2025-03-05 01:10:22+08:00."""
    if value is None:
        return ""
    return timezone.localtime(value).isoformat(sep=" ", timespec="seconds")


def compact_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def value_items(data: Any) -> list[tuple[str, str, str]]:
    """(key, label, text) for every value in one of an operation's JSON fields."""
    if data is None or data == {} or data == [] or data == "":
        return []
    if not isinstance(data, dict):
        return [("", "", compact_json(data))]
    items = []
    for key, value in data.items():
        if key == "values" and isinstance(value, dict):
            items += [_register_item(str(name), entry) for name, entry in value.items()]
        elif key == "devices" and isinstance(value, list):
            items += [_device_item(index, device) for index, device in enumerate(value)]
        elif key == "settings" and isinstance(value, dict):
            items += [(f"settings.{name}", str(name), compact_json(v)) for name, v in value.items()]
        else:
            items.append((str(key), str(key), compact_json(value)))
    return items


def outcome_values(operation: Any) -> Any:
    """What an operation left behind: the values after a write, or what a read or a scan
    returned."""
    return operation.after or (operation.result if operation.is_finished else {})


def values_text(data: Any) -> str:
    """One line for a table cell or a CSV column."""
    return "; ".join(
        f"{label}: {text}" if label else text for _key, label, text in value_items(data)
    )


def compare_values(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """(label, before, after) per value, in the order they first appear."""
    rows: dict[str, list[str]] = {}
    for column, data in enumerate((before, after)):
        for key, label, text in value_items(data):
            row = rows.setdefault(key, [label, "", ""])
            row[column + 1] = text
    return [tuple(row) for row in rows.values()]


def _register_item(name: str, entry: Any) -> tuple[str, str, str]:
    key = f"values.{name}"
    if not isinstance(entry, dict):
        return key, name, compact_json(entry)
    label = str(entry.get("name") or name)
    display = entry.get("display")
    if display not in (None, ""):
        text = compact_json(display)
    elif "value" in entry:
        text = compact_json(entry["value"])
    else:
        return key, label, compact_json(entry)
    unit = entry.get("unit")
    if isinstance(unit, str) and unit and not text.endswith(unit):
        text = f"{text} {unit}"
    return key, label, text


def _device_item(index: int, device: Any) -> tuple[str, str, str]:
    key = f"devices.{index}"
    if not isinstance(device, dict):
        return key, str(index + 1), compact_json(device)
    address = device.get("address")
    label = (
        gettext("Address %(address)s") % {"address": address}
        if address not in (None, "")
        else str(index + 1)
    )
    known = [
        str(device[name]) for name in ("model", "serial") if device.get(name) not in (None, "")
    ]
    rest = {k: v for k, v in device.items() if k not in ("address", "model", "serial")}
    if rest or not known:
        known.append(compact_json(rest or device))
    return key, label, " · ".join(known)


def _truncated(text: str) -> str:
    if not text:
        return "—"
    short = text if len(text) <= CELL_TEXT_LIMIT else f"{text[:CELL_TEXT_LIMIT]}…"
    return format_html(
        '<span class="d-inline-block text-truncate align-bottom mw-16rem" title="{}">{}</span>',
        text,
        short,
    )


class OperationTable(BaseTable):
    """The operations log. Every column is on the page until the user chooses (the guide's
    "Optional"); a download also has the command ID and the times sent and finished."""

    created_at = tables.Column(
        verbose_name=_("Time"), attrs={"td": {"class": "text-nowrap font-monospace small"}}
    )
    kind = tables.Column(verbose_name=_("Type"), attrs={"td": {"class": "text-nowrap"}})
    device_serial = tables.Column(verbose_name=_("Device SN"))
    site = tables.Column(
        verbose_name=_("Site"), order_by=("site__name",), attrs={"td": {"class": "text-nowrap"}}
    )
    gateway = tables.Column(verbose_name=_("Gateway"), order_by=("gateway__serial_number",))
    user_email = tables.Column(verbose_name=_("User"), empty_values=())
    summary = tables.Column(
        verbose_name=pgettext_lazy("remote operation", "Operation"), orderable=False
    )
    before = tables.Column(verbose_name=_("Before"), orderable=False, empty_values=EMPTY_JSON)
    after = tables.Column(verbose_name=_("After"), orderable=False, empty_values=())
    state = tables.TemplateColumn(
        template_code=(
            '{% include "maintenance/operations/_state_badge.html" with operation=record %}'
        ),
        verbose_name=_("State"),
        attrs={"td": {"class": "text-nowrap"}},
    )
    error = tables.Column(verbose_name=_("Error"), orderable=False)
    command_id = tables.Column(verbose_name=_("Command ID"))
    sent_at = tables.Column(verbose_name=_("Sent"))
    finished_at = tables.Column(verbose_name=_("Finished"))

    class Meta(BaseTable.Meta):
        model = RemoteOperation
        # The state comes early so it is visible without scrolling the wide table.
        fields = (
            "created_at",
            "state",
            "kind",
            "device_serial",
            "summary",
            "before",
            "after",
            "error",
            "site",
            "gateway",
            "user_email",
            "command_id",
            "sent_at",
            "finished_at",
        )
        sequence = fields
        required_columns = ("created_at", "state")
        default_columns = (
            "kind",
            "device_serial",
            "summary",
            "before",
            "after",
            "error",
            "site",
            "gateway",
            "user_email",
        )
        download_only = ("command_id", "sent_at", "finished_at")
        empty_text = _("No operations match.")
        default = "—"

    def hide(self, names: tuple[str, ...]) -> None:
        """Leave these columns out of the page and the downloads (e.g. Device SN, Site and
        Gateway on one inverter's log, where every row has the same)."""
        for name in names:
            self.columns.hide(name)
        self.visible_columns = [column.name for column in self.columns.iterall() if column.visible]

    def render_created_at(self, record: RemoteOperation, value) -> str:
        return format_html(
            '<a href="{}" class="text-decoration-none">{}</a>',
            reverse("maintenance:operation", args=[record.pk]),
            local_time(value),
        )

    def render_gateway(self, value) -> str:
        return value.serial_number

    def render_user_email(self, record: RemoteOperation, value: str) -> str:
        return value or (record.user.email if record.user else "—")

    def render_summary(self, value: str) -> str:
        return _truncated(value)

    def render_before(self, value) -> str:
        return _truncated(values_text(value))

    def render_after(self, record) -> str:
        return _truncated(values_text(outcome_values(record))) or "—"

    def render_error(self, value: str) -> str:
        return format_html('<span class="text-danger">{}</span>', _truncated(value))

    # A download has the whole text of every cell, without the page's markup.

    def value_created_at(self, value) -> str:
        return local_time(value)

    def value_sent_at(self, value) -> str:
        return local_time(value)

    def value_finished_at(self, value) -> str:
        return local_time(value)

    def value_gateway(self, value) -> str:
        return value.serial_number

    def value_user_email(self, record: RemoteOperation, value: str) -> str:
        return value or (record.user.email if record.user else "")

    def value_summary(self, value: str) -> str:
        return value

    def value_before(self, value) -> str:
        return values_text(value)

    def value_after(self, record: RemoteOperation) -> str:
        return values_text(outcome_values(record))

    def value_state(self, value: str) -> str:
        return value  # the state's label (a choice field's value is its display text)

    def value_error(self, value: str) -> str:
        return value
