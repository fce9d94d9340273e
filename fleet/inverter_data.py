"""What an inverter's read-only tabs show (guide §6.4.2.1–§6.4.2.5), from the register map:

- the Details tab's inversion information: the newest values, in sections (`latest_sections`);
- the Chart tab's simplified choices: the guide's measurement-point categories
  (`POINT_CATEGORIES`);
- the Data tab: every decoded point of the stored samples in a time range (`data_points`,
  `sample_rows`), for the page and for streamed downloads.

Every value is shown with its unit from the register map; enums by their option's label.
Samples are read for one inverter and a time range only, so the day partitions prune.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from devices.decoding import TYPED_POINTS, codec_for_model
from devices.registermap import PointSpec, RegisterMap, UnknownModelError
from fleet.energy import measurement_points
from inverters.models import Inverter
from inverters.telemetry import Sample, TelemetryLayout
from ui import units

# ---------------------------------------------------------------------------------------------
# Where an inverter's days and hours are


def inverter_zone(inverter: Inverter, user: Any) -> str:
    """The time zone of the inverter's days: its site's, else the viewer's, else UTC."""
    for name in (getattr(inverter.site, "time_zone", ""), getattr(user, "time_zone", "")):
        try:
            if name:
                ZoneInfo(name)
                return name
        except (KeyError, ValueError):
            continue
    return "UTC"


def local_today(zone: str) -> dt.date:
    return timezone.now().astimezone(ZoneInfo(zone)).date()


def temperature_unit(inverter: Inverter) -> str:
    return getattr(inverter.site, "temperature_unit", "") or "C"


# ---------------------------------------------------------------------------------------------
# Values with their units


def decimals(point: PointSpec) -> int:
    """The decimals a point's scale gives (0.1 → 1, 0.01 → 2, 1 → 0)."""
    if point.scale >= 1:
        return 0
    return min(3, max(0, round(-math.log10(point.scale))))


def point_text(rm: RegisterMap, point: PointSpec, value: Any, temperature: str = "C") -> str:
    """A stored or presented value as the pages show it: number and unit, or the option."""
    if value is None:
        return units.MISSING
    if point.enum is not None:
        option = _option(rm, point, value)
        return str(option.label) if option else str(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or units.MISSING
    if isinstance(value, str):
        return value
    if point.unit == "°C":
        return units.temperature(value, temperature)
    text = units.number(value, decimals(point))
    return f"{text} {point.unit}" if point.unit else text


def point_label(point: PointSpec, temperature: str = "C") -> str:
    """A column's header: the register's name and unit, as the guide prints them
    ("Batt_SOC(%)")."""
    unit = "°F" if point.unit == "°C" and temperature == "F" else point.unit
    return f"{point.name}({unit})" if unit else point.name


# ---------------------------------------------------------------------------------------------
# Details: the inversion information


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    groups: tuple[str, ...]


#: The Details tab's sections, in order, by register-map group; every point in °C goes to
#: Temperatures, whatever its group. Groups not named here (fault words) are not listed:
#: the tab shows the active fault codes instead.
SECTIONS = (
    Section("status", _("Status"), ("Status",)),
    Section("pv", _("PV (DC)"), ("PV Info",)),
    Section("battery", _("Battery"), ("Battery Info",)),
    Section("ac", _("Inverter output (AC)"), ("Inverter Info",)),
    Section("grid", _("Grid"), ("Grid Info", "ABF Info")),
    Section("load", _("Load and backup (EPS)"), ("Load Info", "EPS Info")),
    Section("temperature", _("Temperatures"), ()),
    Section("energy", _("Energy"), ("Energy",)),
    Section("device", _("Device information"), ("Common Info", "Firmware")),
)


def register_map(model: str) -> RegisterMap | None:
    try:
        return codec_for_model(model).rm
    except UnknownModelError:
        return None


def latest_sections(inverter: Inverter, latest: Any, temperature: str = "C") -> list[dict]:
    """[{"section", "items": [(name, text, description)]}] of the newest values, in the
    register map's order within each section; empty sections are left out."""
    rm = register_map(inverter.model)
    if rm is None or latest is None:
        return []
    values = latest.display_values(inverter.model)
    by_group = {group: s for s in SECTIONS for group in s.groups}
    rows: dict[str, list] = {s.key: [] for s in SECTIONS}
    for key in rm.telemetry_keys():
        if key not in values:
            continue
        point = rm.point(key)
        section = (
            "temperature" if point.unit == "°C" else getattr(by_group.get(point.group), "key", "")
        )
        if not section or point.type == "bits":
            continue
        rows[section].append(
            (point.name, point_text(rm, point, values[key], temperature), point.description)
        )
    return [{"section": s, "items": rows[s.key]} for s in SECTIONS if rows[s.key]]


# ---------------------------------------------------------------------------------------------
# Chart: the measurement points of §6.4.2.2

#: The Chart tab's simplified style: one category at a time, each the register keys it draws
#: (those the model lacks are left out; at most the chart's eight).
POINT_CATEGORIES: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("generation", _("Generation"), ("pv_power", "pv1_power", "pv2_power", "pv3_power")),
    (
        "temperature",
        _("Temperature"),
        ("temp_inverter", "temp_heatsink", "temp_internal", "temp_boost", "batt_temp"),
    ),
    (
        "power",
        _("Power"),
        ("pv_power", "batt_power", "abf_grid_power", "load_power", "inv_active_power"),
    ),
    (
        "ac",
        _("AC"),
        (
            "inv_voltage_l1",
            "inv_voltage_l2",
            "inv_voltage_l3",
            "inv_voltage",
            "inv_current_l1",
            "inv_current_l2",
            "inv_current_l3",
            "inv_current",
            "inv_frequency",
        ),
    ),
    (
        "dc",
        _("DC"),
        (
            "pv1_voltage",
            "pv1_current",
            "pv2_voltage",
            "pv2_current",
            "pv3_voltage",
            "pv3_current",
            "batt_voltage",
            "batt_current",
        ),
    ),
)
CATEGORY_KEYS = {key: keys for key, _label, keys in POINT_CATEGORIES}


def category_points(model: str, category: str, limit: int) -> list[str]:
    """The keys a category draws for `model` (in the category's order, at most `limit`)."""
    known = {p.key for p in measurement_points(model)}
    return [key for key in CATEGORY_KEYS.get(category, ()) if key in known][:limit]


# ---------------------------------------------------------------------------------------------
# Data: every decoded point of the samples


@functools.cache
def data_points(model: str) -> tuple[PointSpec, ...]:
    """The points a sample of `model` stores, in the register map's order: every telemetry
    point but the hourly device information and the fault words (their codes are a column of
    their own)."""
    try:
        codec = codec_for_model(model)
    except UnknownModelError:
        return ()
    points = (codec.rm.point(key) for key in codec.keys if key not in codec.info_keys)
    return tuple(p for p in points if p.type != "bits")


TYPED_COLUMN = {key: column for column, key, _sql in TYPED_POINTS}
SAMPLE_FIELDS = ("ts", "layout_id", "vals", "fault_codes", *TYPED_COLUMN.values())


def samples(inverter: Inverter, start: dt.datetime, end: dt.datetime) -> QuerySet:
    """The inverter's stored samples in [start, end), newest first, as value tuples
    (`SAMPLE_FIELDS`). The inverter comes from `visible_to(user)`: the rows are its own."""
    return (
        Sample.objects.filter(inverter_id=inverter.pk, ts__gte=start, ts__lt=end)
        .order_by("-ts")
        .values_list(*SAMPLE_FIELDS)
    )


class SampleReader:
    """Turns sample tuples into one value per data point (typed column or `vals` slot)."""

    def __init__(self, model: str, points: Sequence[PointSpec]) -> None:
        self.points = list(points)
        self.fields = {name: i for i, name in enumerate(SAMPLE_FIELDS)}
        self.layouts = {
            pk: {key: i for i, key in enumerate(keys)}
            for pk, keys in TelemetryLayout.objects.filter(model__iexact=model).values_list(
                "id", "keys"
            )
        }

    def values(self, row: tuple) -> list[Any]:
        slots = self.layouts.get(row[1], {})
        vals = row[2] or ()
        out = []
        for point in self.points:
            column = TYPED_COLUMN.get(point.key)
            if column is not None:
                out.append(row[self.fields[column]])
                continue
            slot = slots.get(point.key)
            out.append(vals[slot] if slot is not None and slot < len(vals) else None)
        return out


def sample_rows(
    reader: SampleReader, rows: Iterator[tuple], rm: RegisterMap, temperature: str = "C"
) -> Iterator[dict]:
    """One page's rows: the local time, each point's text, the active fault codes."""
    for row in rows:
        yield {
            "time": timezone.localtime(row[0]).isoformat(sep=" ", timespec="seconds"),
            "cells": [
                point_text(rm, point, _shown(point, rm, value), temperature)
                for point, value in zip(reader.points, reader.values(row), strict=True)
            ],
            "faults": ", ".join(row[3] or ()),
        }


def download_rows(
    reader: SampleReader, rows: Iterator[tuple], rm: RegisterMap, temperature: str = "C"
) -> Iterator[list]:
    """The header, then a row per sample: numbers rounded to the point's decimals, options
    by label, times in the reader's time zone with their offset."""
    yield [
        str(_("Time")),
        *(point_label(p, temperature) for p in reader.points),
        str(_("Fault codes")),
    ]
    for row in rows:
        cells: list[Any] = [timezone.localtime(row[0])]
        for point, value in zip(reader.points, reader.values(row), strict=True):
            cells.append(_download_value(rm, point, value, temperature))
        cells.append(" ".join(row[3] or ()))
        yield cells


def _shown(point: PointSpec, rm: RegisterMap, value: Any) -> Any:
    """A stored number as the register map presents it (option values stay raw)."""
    if value is None or point.enum is not None:
        return value
    if point.format is not None:
        return codec_for_model(rm.model_name).present_raw({point.key: value})[point.key]
    return value


def _download_value(rm: RegisterMap, point: PointSpec, value: Any, temperature: str) -> Any:
    if value is None:
        return None
    if point.enum is not None:
        option = _option(rm, point, value)
        return str(option.label) if option else value
    if point.format is not None:
        return _shown(point, rm, value)
    if point.unit == "°C" and temperature == "F":
        value = value * 9 / 5 + 32
    places = decimals(point)
    return round(float(value), places) if places else round(float(value))


def _option(rm: RegisterMap, point: PointSpec, value: Any) -> Any:
    """The enum option of a stored number (a float) or a presented option key."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return rm.option(point.key, value)
