"""The numbers behind a site's Energy and Chart tabs (guide §6.2.3, §6.2.4).

Energy bars come from the rollups that ingest keeps (docs/charts.md):

| period | whole site                      | one inverter                          |
|--------|---------------------------------|---------------------------------------|
| day    | samples of its inverters, hourly | its samples, hourly                   |
| month  | `SiteEnergyDaily`, a bar a day   | `EnergyDaily`, a bar a day             |
| year   | `SiteEnergyMonthly`, a bar a month | `EnergyDaily` summed by month (≤ 366 rows) |
| total  | `SiteEnergyMonthly` summed by year | `EnergyDaily` summed by year           |

An hour's energy is the rise of the inverter's counters in that hour, counted from the last
reading before it (the previous day's last reading for the first hour, as the daily rollup
counts), so the hours of a day add up to that day's bar in the month view.

Measurement points (the Chart tab) are the plain numeric telemetry points of the inverter's
register map; a sample stores the key ones in typed columns and the rest in `vals`, in the
order of its `TelemetryLayout`. Every query filters on indexed columns only: a site or an
inverter and a day range, or an inverter and a time range (so the sample partitions prune).

Scope: callers pass a site fetched through `Site.objects.visible_to(user)` (404 otherwise) and
inverter ids from `Inverter.objects.visible_to(user).filter(site=site)`. Every query here
filters on that site or those inverters, so it is scoped by construction; running the rollups
through `visible_to` again would only repeat, for an owner, the grant lookup (a scan of the
site table through django-guardian's text object ids) on every query of the page.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Sum
from django.db.models.functions import ExtractYear, TruncMonth
from django.db.models.query import QuerySet
from django.utils import formats
from django.utils.translation import gettext_lazy as _

from devices.decoding import TYPED_POINTS, codec_for_model
from devices.registermap import UnknownModelError
from ingest.storage import ENERGY_COUNTERS
from inverters.telemetry import (
    SAMPLE_TABLE,
    EnergyDaily,
    SiteEnergyDaily,
    SiteEnergyMonthly,
    TelemetryLayout,
    day_bounds,
)

# ---------------------------------------------------------------------------------------------
# Energy bars


class Period:
    DAY = "day"
    MONTH = "month"
    YEAR = "year"
    TOTAL = "total"
    CHOICES = (
        (DAY, _("Day")),
        (MONTH, _("Month")),
        (YEAR, _("Year")),
        (TOTAL, _("Total")),
    )


@dataclass(frozen=True)
class EnergySeries:
    key: str  # the rollups' column prefix: pv → pv_kwh
    label: str
    shown: bool  # drawn unless the reader switches it on in the legend


#: In the order of the chart's legend and the download's columns.
SERIES: tuple[EnergySeries, ...] = (
    EnergySeries("pv", _("PV yield"), True),
    EnergySeries("load", _("Consumption"), True),
    EnergySeries("export", _("Grid export"), True),
    EnergySeries("import", _("Grid import"), True),
    EnergySeries("charge", _("Battery charge"), False),
    EnergySeries("discharge", _("Battery discharge"), False),
)
KWH_FIELDS = tuple(f"{s.key}_kwh" for s in SERIES)
assert {s.key for s in SERIES} == {name for name, _ in ENERGY_COUNTERS}


@dataclass
class EnergyBars:
    """One bar (per series) for each hour, day, month or year of a period."""

    period: str
    labels: list[str]  # under each bar
    starts: list  # what each bar covers, for downloads: datetime, date, "YYYY-MM" or year
    values: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return any(v is not None for values in self.values.values() for v in values)

    def totals(self) -> dict[str, float | None]:
        """The period's sum per series (None when no bar has a value)."""
        out: dict[str, float | None] = {}
        for key, values in self.values.items():
            present = [v for v in values if v is not None]
            out[key] = sum(present) if present else None
        return out

    def download_rows(self) -> Iterator[list]:
        """The header, then a row per bar: what the chart shows, in kWh."""
        first = {
            Period.DAY: _("Time"),
            Period.MONTH: _("Date"),
            Period.YEAR: _("Month"),
            Period.TOTAL: _("Year"),
        }[self.period]
        yield [str(first)] + [f"{series.label} (kWh)" for series in SERIES]
        for index, start in enumerate(self.starts):
            cells = [self.values[s.key][index] for s in SERIES]
            yield [start] + [None if v is None else round(v, 3) for v in cells]


def period_bounds(period: str, anchor: dt.date) -> tuple[dt.date, dt.date]:
    """The first and the last day of the day, month or year that contains `anchor`."""
    if period == Period.DAY:
        return anchor, anchor
    if period == Period.MONTH:
        first = anchor.replace(day=1)
        return first, _add_months(first, 1) - dt.timedelta(days=1)
    if period == Period.YEAR:
        return anchor.replace(month=1, day=1), anchor.replace(month=12, day=31)
    raise ValueError(f"no bounds for period {period!r}")


def shift(period: str, anchor: dt.date, steps: int) -> dt.date:
    """The anchor of the period `steps` before (negative) or after this one."""
    if period == Period.DAY:
        return anchor + dt.timedelta(days=steps)
    if period == Period.MONTH:
        return _add_months(anchor.replace(day=1), steps)
    if period == Period.YEAR:
        return anchor.replace(year=anchor.year + steps, month=1, day=1)
    return anchor


def _add_months(first: dt.date, months: int) -> dt.date:
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def energy_bars(
    site,
    *,
    period: str,
    anchor: dt.date | None = None,
    inverter_id: int | None = None,
    site_inverter_ids: Sequence[int] = (),
    tz: str | None = None,
) -> EnergyBars:
    """The bars of a period for the whole site or one of its inverters.

    The day view reads samples of `inverter_id`, or of `site_inverter_ids` for the site, in
    the hours of `tz` (default: the site's zone). One inverter's bars need no site: pass
    `site=None`, its `inverter_id` and the zone of its days.
    """
    if period == Period.DAY:
        ids = [inverter_id] if inverter_id is not None else list(site_inverter_ids)
        return _day_bars(ids, anchor, tz or site.time_zone)
    if period == Period.MONTH:
        return _month_bars(site, anchor, inverter_id)
    if period == Period.YEAR:
        return _year_bars(site, anchor, inverter_id)
    if period == Period.TOTAL:
        return _total_bars(site, inverter_id)
    raise ValueError(f"unknown period {period!r}")


def _empty_values(n: int) -> dict[str, list[float | None]]:
    return {s.key: [None] * n for s in SERIES}


def _fill(bars: EnergyBars, index: int, row: Sequence) -> None:
    for series, value in zip(SERIES, row, strict=True):
        bars.values[series.key][index] = value


def _inverter_days(inverter_id: int) -> QuerySet:
    # Explicit (or no) order: the models' default order would join the site or the inverter.
    return EnergyDaily.objects.filter(inverter_id=inverter_id).order_by()


def _month_bars(site, anchor: dt.date, inverter_id: int | None) -> EnergyBars:
    first, last = period_bounds(Period.MONTH, anchor)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    bars = EnergyBars(Period.MONTH, [str(d.day) for d in days], days, _empty_values(len(days)))
    if inverter_id is None:
        rows = SiteEnergyDaily.objects.filter(site=site).order_by()
    else:
        rows = _inverter_days(inverter_id)
    for day, *values in rows.filter(day__gte=first, day__lte=last).values_list("day", *KWH_FIELDS):
        _fill(bars, (day - first).days, values)
    return bars


def _year_bars(site, anchor: dt.date, inverter_id: int | None) -> EnergyBars:
    first, last = period_bounds(Period.YEAR, anchor)
    months = [first.replace(month=m) for m in range(1, 13)]
    bars = EnergyBars(
        Period.YEAR,
        [formats.date_format(m, "M") for m in months],
        [f"{m:%Y-%m}" for m in months],
        _empty_values(12),
    )
    if inverter_id is None:
        rows = (
            SiteEnergyMonthly.objects.filter(site=site, month__gte=first, month__lte=last)
            .order_by()
            .values_list("month", *KWH_FIELDS)
        )
    else:
        rows = (
            _inverter_days(inverter_id)
            .filter(day__gte=first, day__lte=last)
            .annotate(bar=TruncMonth("day"))
            .order_by()
            .values("bar")
            .annotate(**{name: Sum(name) for name in KWH_FIELDS})
            .values_list("bar", *KWH_FIELDS)
        )
    for month, *values in rows:
        _fill(bars, month.month - 1, values)
    return bars


def _total_bars(site, inverter_id: int | None) -> EnergyBars:
    if inverter_id is None:
        rows = SiteEnergyMonthly.objects.filter(site=site)
        column = "month"
    else:
        rows = _inverter_days(inverter_id)
        column = "day"
    sums = dict(
        (year, values)
        for year, *values in rows.annotate(bar=ExtractYear(column))
        .order_by()
        .values("bar")
        .annotate(**{name: Sum(name) for name in KWH_FIELDS})
        .values_list("bar", *KWH_FIELDS)
    )
    years = list(range(min(sums), max(sums) + 1)) if sums else []
    bars = EnergyBars(Period.TOTAL, [str(y) for y in years], years, _empty_values(len(years)))
    for index, year in enumerate(years):
        if year in sums:
            _fill(bars, index, sums[year])
    return bars


def _day_bars(inverter_ids: Sequence[int], day: dt.date, tz: str) -> EnergyBars:
    start, end = day_bounds(day, tz)
    # In UTC: Python subtracts and adds aware times of one zone on the wall clock.
    utc_start = start.astimezone(dt.UTC)
    hours = int((end.astimezone(dt.UTC) - utc_start).total_seconds() // 3600)  # 23–25
    starts = [(utc_start + dt.timedelta(hours=h)).astimezone(start.tzinfo) for h in range(hours)]
    bars = EnergyBars(
        Period.DAY,
        [f"{s:%H:%M}" for s in starts],
        [s.isoformat(sep=" ", timespec="minutes") for s in starts],
        _empty_values(hours),
    )
    if not inverter_ids:
        return bars
    with connection.cursor() as cursor:
        cursor.execute(
            _hourly_sql(),
            {"ids": list(inverter_ids), "start": start, "end": end, "day": day},
        )
        for hour, *values in cursor.fetchall():
            if 0 <= hour < hours:
                _fill(bars, hour, values)
    return bars


@functools.cache
def _hourly_sql() -> str:
    """Per inverter and hour of the local day: the counters' rise since the last reading
    before the hour (the day's base for the first), summed over the inverters."""
    counters = {name: column for name, column in ENERGY_COUNTERS}
    names = [s.key for s in SERIES]
    extremes = ", ".join(
        f"max({counters[n]}) AS {n}_hi, min({counters[n]}) AS {n}_lo" for n in names
    )
    rises = ", ".join(
        f"b.{n}_hi - COALESCE(max(b.{n}_hi) OVER before, e.{n}_base, "
        f"min(b.{n}_lo) OVER (PARTITION BY b.inverter_id)) AS {n}"
        for n in names
    )
    sums = ", ".join(f"sum(GREATEST({n}, 0))" for n in names)
    return f"""
    WITH b AS (
        SELECT inverter_id, floor(extract(epoch FROM ts - %(start)s) / 3600)::int AS h,
               {extremes}
        FROM {SAMPLE_TABLE}
        WHERE inverter_id = ANY(%(ids)s) AND ts >= %(start)s AND ts < %(end)s
        GROUP BY inverter_id, h
    ), d AS (
        SELECT b.h, {rises}
        FROM b LEFT JOIN inverters_energydaily e
            ON e.inverter_id = b.inverter_id AND e.day = %(day)s
        WINDOW before AS (PARTITION BY b.inverter_id ORDER BY b.h
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
    )
    SELECT h, {sums} FROM d GROUP BY h ORDER BY h
    """


# ---------------------------------------------------------------------------------------------
# Measurement points (the Chart tab)


@dataclass(frozen=True)
class MeasurementPoint:
    key: str
    name: str  # as the register map names it (PV_Power)
    group: str
    unit: str  # as stored
    column: str | None  # the typed sample column, or None: the value is in `vals`


@functools.cache
def measurement_points(model: str) -> tuple[MeasurementPoint, ...]:
    """The numbers a sample of this model carries, in the register map's order: plain
    numeric telemetry points (no enums, bit words or texts, nor the hourly device
    information). Empty for a model without a register map."""
    try:
        codec = codec_for_model(model)
    except UnknownModelError:
        return ()
    columns = {key: column for column, key, _ in TYPED_POINTS}
    points = []
    for key in codec.keys:
        p = codec.rm.point(key)
        if key in codec.info_keys or p.enum or p.format or p.type in ("bits", "string"):
            continue
        points.append(MeasurementPoint(key, p.name, p.group, p.unit, columns.get(key)))
    return tuple(points)


def points_by_key(model: str) -> dict[str, MeasurementPoint]:
    return {p.key: p for p in measurement_points(model)}


def point_rows(
    inverter_id: int,
    model: str,
    points: Sequence[MeasurementPoint],
    start,
    end,
    bucket_s: int | None = None,
) -> list[tuple]:
    """Rows (epoch seconds, value of each point) of an inverter's samples in [start, end),
    oldest first; with `bucket_s`, one row per bucket of that many seconds (its start, the
    mean of each point)."""
    select, params = [], []
    layouts = None
    for p in points:
        if p.column is not None:
            select.append(p.column)  # a name from TYPED_POINTS, never from the request
            continue
        if layouts is None:
            layouts = list(
                TelemetryLayout.objects.filter(model__iexact=model).values_list("id", "keys")
            )
        cases = [(lid, keys.index(p.key) + 1) for lid, keys in layouts if p.key in keys]
        if not cases:
            select.append("NULL::real")
            continue
        select.append("CASE layout_id " + "WHEN %s THEN vals[%s] " * len(cases) + "END")
        params += [n for case in cases for n in case]
    if bucket_s:
        sql = (
            f"SELECT (floor(extract(epoch FROM ts) / %s) * %s)::float8 AS t, "
            f"{', '.join(f'avg({column})::float8' for column in select)} FROM {SAMPLE_TABLE} "
            "WHERE inverter_id = %s AND ts >= %s AND ts < %s GROUP BY t ORDER BY t"
        )
        params = [int(bucket_s), int(bucket_s), *params]
    else:
        sql = (
            f"SELECT extract(epoch FROM ts)::float8, {', '.join(select)} FROM {SAMPLE_TABLE} "
            "WHERE inverter_id = %s AND ts >= %s AND ts < %s ORDER BY ts"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, inverter_id, start, end])
        return cursor.fetchall()


def local_range(first: dt.date, last: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """From the start of `first` to the end of `last`, local days of the zone `tz`."""
    return day_bounds(first, tz)[0], day_bounds(last, tz)[1]
