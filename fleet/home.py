"""The figures of Home (guide §4) for the sites one user sees, as docs/home.md explains them.

Every figure is an aggregate query over a rollup, scoped by the rollup's own
`visible_to(user)` — the denormalised company for staff (one range of the (company, day) or
(company, month) index), the granted sites for owners (`site__in=Site.objects.visible_to`, a
subquery) — so the number of queries does not grow with the fleet:

- status counts and capacity: one query over the sites (their `status` column, §4.1)
  (the §4.1 rule);
- current power, total yield and total revenue: `InverterLatest` (one row per inverter; the
  total yield is the sum of the inverters' lifetime PV energy counters);
- daily yield and today's revenue: `SiteEnergyDaily` of each site's own local day;
- this month: `SiteEnergyMonthly` of the user's current month; earlier months (this year's
  revenue, the charts) come from the same table and are cached for a few minutes, since they
  hardly change;
- today's alarms: `Alarm`, occurring now or occurred since the site's local midnight.

Revenue sums are grouped by site currency and converted in Python (fleet.revenue).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from babel.dates import format_date, format_skeleton
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Count,
    DateField,
    DateTimeField,
    ExpressionWrapper,
    F,
    Func,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Cast
from django.utils import timezone, translation

from alarms.models import Alarm, AlarmLevel, AlarmStatus
from fleet.queries import SiteStatus
from fleet.revenue import revenue_of, total_in
from inverters.models import InverterLatest, SiteEnergyDaily, SiteEnergyMonthly
from sites.models import Site

RANKING_SIZE = 10
LAST_12_MONTHS = "12m"
# A local midnight is at most a day (25 hours on the night clocks go back) behind now.
LOCAL_DAY_REACH = dt.timedelta(hours=26)
# Local time runs from UTC−12 to UTC+14.
EARLIEST_OFFSET = dt.timedelta(hours=-12)
LATEST_OFFSET = dt.timedelta(hours=14)
#: How long earlier months' sums and the first month with data are kept (docs/home.md).
PAST_MONTHS_TTL = 10 * 60
FIRST_MONTH_TTL = 60 * 60


# --- The user's scope -------------------------------------------------------------------------


@dataclass
class Scope:
    """The sites a user sees, the moment the figures are for, the user's day and currency."""

    user: object
    sites: QuerySet
    now: dt.datetime
    today: dt.date
    currency: str
    #: Yield and revenue of the months before this one, (month, currency, kWh, revenue) rows,
    #: when a company snapshot supplies them (fleet/snapshot.py); None: read them here.
    history: list[tuple] | None = None

    @classmethod
    def of(cls, user, now: dt.datetime | None = None) -> Scope:
        now = now or timezone.now()
        today = timezone.localtime(now).date()
        return cls(user, Site.objects.visible_to(user), now, today, user.currency)

    @property
    def this_month(self) -> dt.date:
        return self.today.replace(day=1)

    def rows(self, model) -> QuerySet:
        """Rows of a per-site table for this user's sites (the model's own scoping)."""
        return model.objects.visible_to(self.user).filter(site__isnull=False).order_by()

    def candidate_days(self) -> list[dt.date]:
        """The dates it can be somewhere on Earth now: every site's local today is one."""
        utc = self.now.astimezone(dt.UTC)
        first, last = (utc + EARLIEST_OFFSET).date(), (utc + LATEST_OFFSET).date()
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def cache_key(self, *parts) -> str:
        return ":".join(["fleet-home", str(self.user.pk), *map(str, parts)])


def local_date(instant, zone: str = "site__time_zone") -> Cast:
    """The date of `instant` (a datetime or an expression) in the time zone in column `zone`,
    as ingest files energy into days (`AT TIME ZONE`)."""
    if isinstance(instant, dt.datetime):
        instant = Value(instant, output_field=DateTimeField())
    local = Func(F(zone), instant, function="timezone", output_field=DateTimeField())
    return Cast(local, DateField())


def _today_rows(scope: Scope, rows: QuerySet | None = None) -> QuerySet:
    """Each site's `SiteEnergyDaily` row of its local today (the site's daily yield), among
    `rows` (default: the scope's).

    `day + 0` keeps PostgreSQL from probing the (site, day) index once per site: it reads
    the candidate days' rows by the scope's index and joins them to the sites' local dates.
    """
    unindexed_day = ExpressionWrapper(F("day") + Value(0), output_field=DateField())
    rows = scope.rows(SiteEnergyDaily) if rows is None else rows
    return (
        rows.filter(day__in=scope.candidate_days())
        .alias(row_day=unindexed_day, local_today=local_date(scope.now))
        .filter(row_day=F("local_today"))
    )


def _per_currency(rows, *names: str) -> dict[str, dict[str, float | None]]:
    """{"kwh": {"EUR": 12.0, …}, …} from rows of (currency, value per name)."""
    result: dict[str, dict[str, float | None]] = {name: {} for name in names}
    for row in rows:
        for name in names:
            result[name][row["site__currency"]] = row[name]
    return result


def _sum(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _cached(key: str, timeout: int, compute):
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, timeout)
    return value


# --- Status and KPIs (§4.1, §4.2) -------------------------------------------------------------


@dataclass
class SiteCounts:
    """Sites per §4.1 status, their total and their capacity."""

    by_status: dict[str, int]
    total: int
    capacity_kwp: Decimal | None


@dataclass
class LiveFigures:
    """From the newest values of each inverter."""

    power_w: float | None = None
    total_kwh: float | None = None
    total_revenue: float | None = None


@dataclass
class EnergySums:
    """Yield (kWh) and revenue (money of each site currency) of a day or a month."""

    kwh: float | None = None
    revenue: dict[str, float | None] = field(default_factory=dict)


def site_counts(scope: Scope) -> SiteCounts:
    """Online, offline and abnormal sites, and the capacity of them all, in one query."""
    rows = (
        scope.sites.order_by()
        .values("status")
        .annotate(n=Count("pk"), capacity=Sum("capacity_kwp"))
    )
    by_status = {status.value: 0 for status in SiteStatus}
    capacities = []
    for row in rows:
        by_status[row["status"]] = row["n"]
        capacities.append(row["capacity"])
    return SiteCounts(by_status, sum(by_status.values()), _sum(capacities))


def live_figures(scope: Scope) -> LiveFigures:
    """Current power, total yield (lifetime counters) and total revenue, in one query."""
    rows = (
        scope.rows(InverterLatest)
        .values("site__currency")
        .annotate(
            power=Sum("pv_power"),
            kwh=Sum("pv_energy_total"),
            revenue=Sum(revenue_of("pv_energy_total")),
        )
    )
    sums = _per_currency(rows, "power", "kwh", "revenue")
    return LiveFigures(
        power_w=_sum(sums["power"].values()),
        total_kwh=_sum(sums["kwh"].values()),
        total_revenue=total_in(sums["revenue"], scope.currency),
    )


def today_sums(scope: Scope) -> EnergySums:
    """Daily yield and today's revenue, each site on its own local day."""
    rows = (
        _today_rows(scope)
        .values("site__currency")
        .annotate(kwh=Sum("pv_kwh"), revenue=Sum(revenue_of("pv_kwh")))
    )
    sums = _per_currency(rows, "kwh", "revenue")
    return EnergySums(_sum(sums["kwh"].values()), sums["revenue"])


def this_month_sums(scope: Scope) -> EnergySums:
    """Yield and revenue of the user's current month (each site's rollup of that month)."""
    rows = (
        scope.rows(SiteEnergyMonthly)
        .filter(month=scope.this_month)
        .values("site__currency")
        .annotate(kwh=Sum("pv_kwh"), revenue=Sum(revenue_of("pv_kwh")))
    )
    sums = _per_currency(rows, "kwh", "revenue")
    return EnergySums(_sum(sums["kwh"].values()), sums["revenue"])


def past_months(scope: Scope, first: dt.date, last: dt.date) -> dict[dt.date, EnergySums]:
    """Yield and revenue per month from `first` to `last`, before the current month.

    Earlier months hardly change (only late uploads touch them), so their sums are cached
    for a few minutes per user; the current month is always read live (`this_month_sums`).
    """
    last = min(last, scope.this_month - dt.timedelta(days=1))
    if last < first:
        return {}

    def compute() -> list[tuple[dt.date, str, float | None, float | None]]:
        rows = (
            scope.rows(SiteEnergyMonthly)
            .filter(month__gte=first, month__lte=last)
            .values("month", "site__currency")
            .annotate(kwh=Sum("pv_kwh"), revenue=Sum(revenue_of("pv_kwh")))
        )
        return [(r["month"], r["site__currency"], r["kwh"], r["revenue"]) for r in rows]

    if scope.history is not None:
        rows = [row for row in scope.history if first <= row[0] <= last]
    else:
        rows = _cached(scope.cache_key("months", first, last), PAST_MONTHS_TTL, compute)
    months: dict[dt.date, EnergySums] = {}
    for month, currency, kwh, revenue in rows:
        sums = months.setdefault(month, EnergySums())
        sums.kwh = _sum([sums.kwh, kwh])
        sums.revenue[currency] = revenue
    return months


@dataclass
class FleetNow:
    """Everything the live cards need except alarms and earlier months, from one query."""

    counts: SiteCounts
    live: LiveFigures
    today: EnergySums
    this_month: EnergySums

    @classmethod
    def from_rows(cls, rows, currency: str) -> FleetNow:
        """Sum rows of `now_rows` (any number per status and currency) for a reader of
        `currency`."""
        by_status = {status.value: 0 for status in SiteStatus}
        capacity: list = []
        power: list = []
        total_kwh: list = []
        total_revenue: dict[str, float | None] = {}
        today, this_month = EnergySums(), EnergySums()
        for row in rows:
            status, site_currency, n, kwp, watts, kwh, revenue = row[:7]
            day_kwh, day_revenue, month_kwh, month_revenue = row[7:]
            by_status[status] += n
            capacity.append(kwp)
            power.append(watts)
            total_kwh.append(kwh)
            _add(total_revenue, site_currency, revenue)
            today.kwh = _sum([today.kwh, day_kwh])
            _add(today.revenue, site_currency, day_revenue)
            this_month.kwh = _sum([this_month.kwh, month_kwh])
            _add(this_month.revenue, site_currency, month_revenue)
        counts = SiteCounts(by_status, sum(by_status.values()), _sum(capacity))
        live = LiveFigures(
            power_w=_sum(power),
            total_kwh=_sum(total_kwh),
            total_revenue=total_in(total_revenue, currency),
        )
        return cls(counts, live, today, this_month)


def _add(sums: dict[str, float | None], currency: str, amount) -> None:
    sums[currency] = _sum([sums.get(currency), amount])


def _sql(queryset: QuerySet) -> tuple[str, tuple]:
    return queryset.query.sql_with_params()


def now_rows(
    sites: QuerySet,
    latest: QuerySet,
    days: QuerySet,
    month: QuerySet,
    now: dt.datetime,
    *,
    by_company: bool = False,
) -> list[tuple]:
    """(status, currency, sites, capacity, power, total kWh, total revenue, today's kWh and
    revenue, this month's kWh and revenue) per status and site currency — first the site's
    company id with `by_company` — in one statement.

    `sites`, `latest` (`InverterLatest`), `days` (`SiteEnergyDaily` of the candidate days) and
    `month` (`SiteEnergyMonthly` of one month) are scoped querysets; each rollup is grouped to
    one row per site and joined to the sites once, so a tenant's sites are scanned once rather
    than once per figure.
    """
    sites = sites.order_by().values(
        "id", "company_id", "currency", "tariff_per_kwh", "capacity_kwp", "time_zone", "status"
    )
    latest = (
        latest.order_by()
        .values("site_id")
        .annotate(power=Sum("pv_power"), kwh=Sum("pv_energy_total"))
        .values("site_id", "power", "kwh")
    )
    parts = [
        _sql(sites),
        _sql(latest),
        _sql(days.order_by().values("site_id", "day", "pv_kwh")),
        _sql(month.order_by().values("site_id", "pv_kwh")),
    ]
    keys = "s.company_id, s.status, s.currency" if by_company else "s.status, s.currency"
    # `d.day + 0`: read the candidate days' rows by the scope's index and match each site's
    # local date afterwards, rather than probing the (site, day) index once per site.
    statement = f"""
        SELECT {keys}, COUNT(*), SUM(s.capacity_kwp),
               SUM(l.power), SUM(l.kwh), SUM(l.kwh * s.tariff_per_kwh),
               SUM(d.pv_kwh), SUM(d.pv_kwh * s.tariff_per_kwh),
               SUM(m.pv_kwh), SUM(m.pv_kwh * s.tariff_per_kwh)
          FROM ({parts[0][0]}) s
          LEFT JOIN ({parts[1][0]}) l ON l.site_id = s.id
          LEFT JOIN ({parts[2][0]}) d ON d.site_id = s.id
                          AND d.day + 0 = (timezone(s.time_zone, %s::timestamptz))::date
          LEFT JOIN ({parts[3][0]}) m ON m.site_id = s.id
         GROUP BY {keys}
    """
    params = [*parts[0][1], *parts[1][1], *parts[2][1], now, *parts[3][1]]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def fleet_now(scope: Scope) -> FleetNow:
    """Status counts and capacity, current power, total yield and revenue, today's and this
    month's yield and revenue of the user's sites, in one statement (`now_rows`).

    The same figures as `site_counts`, `live_figures`, `today_sums` and `this_month_sums`
    (tests/test_home.py checks that they agree).
    """
    rows = now_rows(
        scope.sites,
        scope.rows(InverterLatest),
        scope.rows(SiteEnergyDaily).filter(day__in=scope.candidate_days()),
        scope.rows(SiteEnergyMonthly).filter(month=scope.this_month),
        scope.now,
    )
    return FleetNow.from_rows(rows, scope.currency)


# --- Revenue (§4.4) ---------------------------------------------------------------------------


@dataclass
class Revenue:
    """In the user's currency; None where nothing was recorded ("–")."""

    currency: str
    today: float | None = None
    month: float | None = None
    year: float | None = None
    total: float | None = None


def revenue(scope: Scope, today: EnergySums, month: EnergySums, live: LiveFigures) -> Revenue:
    """Today's, this month's, this year's and the total revenue in the user's currency."""
    year_start = scope.this_month.replace(month=1)
    earlier = past_months(scope, year_start, scope.this_month)
    year = [(c, a) for sums in earlier.values() for c, a in sums.revenue.items()]
    year += list(month.revenue.items())
    return Revenue(
        scope.currency,
        today=total_in(today.revenue, scope.currency),
        month=total_in(month.revenue, scope.currency),
        year=total_in(year, scope.currency),
        total=live.total_revenue,
    )


# --- Alarms (§4.3) ----------------------------------------------------------------------------


def alarm_counts(scope: Scope) -> dict[str, int]:
    """Today's alarms per level: occurring now, or occurred since the site's local midnight."""
    occurred_today = Q(occurred_at__gte=scope.now - LOCAL_DAY_REACH, occurred_day=F("local_today"))
    rows = (
        scope.rows(Alarm)
        .alias(
            occurred_day=local_date(F("occurred_at")),
            local_today=local_date(scope.now),
        )
        .filter(Q(status=AlarmStatus.OCCURRING) | occurred_today)
        .values("level")
        .annotate(n=Count("pk"))
        .values_list("level", "n")
    )
    counts = dict.fromkeys(AlarmLevel.values, 0)
    counts.update(rows)
    return counts


# --- Yield ranking (§4.7) ---------------------------------------------------------------------


@dataclass(frozen=True)
class RankedSite:
    site_id: int
    name: str
    kwh: float | None


RANK_TODAY = "today"
RANK_TOTAL = "total"
RANKINGS = (RANK_TOTAL, RANK_TODAY)


def yield_ranking(scope: Scope, by: str = RANK_TOTAL) -> list[RankedSite]:
    """The ten sites with the highest total (lifetime counters) or today's yield."""
    if by == RANK_TODAY:
        rows = _today_rows(scope).values_list("site_id", "site__name", "pv_kwh")
        rows = rows.order_by(F("pv_kwh").desc(nulls_last=True), "site__name", "site_id")
    else:
        rows = (
            scope.rows(InverterLatest)
            .filter(pv_energy_total__isnull=False)
            .values("site_id", "site__name")
            .annotate(kwh=Sum("pv_energy_total"))
            .order_by(F("kwh").desc(nulls_last=True), "site__name", "site_id")
            .values_list("site_id", "site__name", "kwh")
        )
    return [RankedSite(pk, name, kwh) for pk, name, kwh in rows[:RANKING_SIZE]]


# --- Monthly trends (§4.5) --------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The months a chart shows: a calendar year ("2025") or the last 12 months ("12m")."""

    key: str
    months: tuple[dt.date, ...]

    @property
    def is_year(self) -> bool:
        return self.key != LAST_12_MONTHS


def parse_period(value: str | None, today: dt.date) -> Period | None:
    """The period named `value` (a year up to this one, or "12m"); None when it names none."""
    value = (value or "").strip()
    if value == LAST_12_MONTHS:
        first = _add_months(today.replace(day=1), -11)
        return Period(LAST_12_MONTHS, tuple(_add_months(first, n) for n in range(12)))
    if value.isdigit() and len(value) == 4 and 2000 <= int(value) <= today.year:
        return default_period(dt.date(int(value), 1, 1))
    return None


def default_period(today: dt.date) -> Period:
    """This calendar year."""
    return Period(str(today.year), tuple(dt.date(today.year, m, 1) for m in range(1, 13)))


def _add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def month_label(month: dt.date, with_year: bool, short: bool = False) -> str:
    """A month in the active language: "Mar"; `with_year` "Mar 2025", or `short` "Mar '25"
    (a chart's axis)."""
    locale = (translation.get_language() or "en").replace("-", "_")
    if not with_year:
        return format_date(month, "LLL", locale=locale)
    if short:
        return format_date(month, "LLL ''yy", locale=locale)
    return format_skeleton("yMMM", month, locale=locale)


@dataclass
class MonthFigures:
    month: dt.date
    label: str
    short_label: str
    kwh: float | None = None
    revenue: float | None = None


@dataclass
class Trend:
    period: Period
    months: list[MonthFigures] = field(default_factory=list)

    @property
    def total_kwh(self) -> float | None:
        return _sum(m.kwh for m in self.months)

    @property
    def total_revenue(self) -> float | None:
        return _sum(m.revenue for m in self.months)


def monthly_trend(scope: Scope, period: Period, current: EnergySums | None = None) -> Trend:
    """Yield and revenue of each month of `period`: earlier months from `past_months`, the
    current month live (`current` when the caller has it already)."""
    months = past_months(scope, period.months[0], period.months[-1])
    if scope.this_month in period.months:
        months[scope.this_month] = current or this_month_sums(scope)
    with_year = not period.is_year
    figures = []
    for month in period.months:
        sums = months.get(month)
        figures.append(
            MonthFigures(
                month,
                month_label(month, with_year),
                month_label(month, with_year, short=True),
                sums.kwh if sums else None,
                total_in(sums.revenue, scope.currency) if sums else None,
            )
        )
    return Trend(period, figures)


def year_options(scope: Scope) -> list[int]:
    """The years with monthly rollups, newest first (at least this year); cached."""

    def compute() -> dt.date | str:
        first = scope.rows(SiteEnergyMonthly).aggregate(first=Min("month"))["first"]
        return first or ""

    if scope.history is not None:
        first = min((row[0] for row in scope.history), default=None)
    else:
        first = _cached(scope.cache_key("first-month"), FIRST_MONTH_TTL, compute)
    start = min(first.year, scope.today.year) if first else scope.today.year
    return list(range(scope.today.year, max(start, 2000) - 1, -1))


__all__ = [
    "LAST_12_MONTHS",
    "RANKINGS",
    "RANKING_SIZE",
    "RANK_TODAY",
    "RANK_TOTAL",
    "EnergySums",
    "FleetNow",
    "LiveFigures",
    "MonthFigures",
    "Period",
    "RankedSite",
    "Revenue",
    "Scope",
    "SiteCounts",
    "Trend",
    "alarm_counts",
    "default_period",
    "fleet_now",
    "now_rows",
    "live_figures",
    "local_date",
    "past_months",
    "revenue",
    "month_label",
    "monthly_trend",
    "parse_period",
    "site_counts",
    "this_month_sums",
    "today_sums",
    "year_options",
]
