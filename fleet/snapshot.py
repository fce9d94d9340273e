"""Home's live figures for every company at once, refreshed in the background.

Home sums figures over all the sites a user sees. For a distributor with 10,000 sites that is
a scan of every site and its newest values on each visit and each minute's refresh — tens of
milliseconds of database time per page, for figures that change once per upload interval.
So a periodic task (`fleet.tasks.refresh_home_snapshot`, every `HOME_SNAPSHOT_INTERVAL_S`)
computes them for the whole platform in two statements, grouped by the site's company, and
keeps the result in the cache. A staff user's Home adds up the entries of their company and
the companies below it: a few rows, whatever the fleet size.

The snapshot is used only while it is fresh (`HOME_SNAPSHOT_MAX_AGE_S`) and for the month it
was computed for; otherwise — and always for owners, who see granted sites rather than a
company tree — Home computes its figures itself (`fleet.home.fleet_now`). docs/home.md says
how old the figures can be.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from fleet.home import (
    PAST_MONTHS_TTL,
    RANK_TODAY,
    RANK_TOTAL,
    RANKING_SIZE,
    FleetNow,
    RankedSite,
    Scope,
    _today_rows,
    fleet_now,
    now_rows,
    yield_ranking,
)
from fleet.revenue import revenue_of
from inverters.models import InverterLatest, SiteEnergyDaily, SiteEnergyMonthly
from sites.models import Site

CACHE_KEY = "fleet-home:snapshot"


@dataclass
class Snapshot:
    """What `compute` found, per company id."""

    taken_at: dt.datetime
    month: dt.date
    paths: dict[int, str]  # company id → its path in the company tree
    rows: dict[int, list[tuple]]  # company id → `now_rows` rows (status, currency, …)
    rankings: dict[str, dict[int, list[tuple]]]  # RANK_* → company id → (kwh, name, site id)
    # Months before `month`: company id → (month, currency, kWh, revenue); recomputed only every
    # PAST_MONTHS_TTL, since only late uploads change them.
    history: dict[int, list[tuple]] = field(default_factory=dict)
    history_taken_at: dt.datetime | None = None

    def companies_under(self, path: str) -> list[int]:
        return [pk for pk, own in self.paths.items() if own.startswith(path)]


def _platform_scope(now: dt.datetime) -> Scope:
    """A scope of every site, for the rows' day and the candidate days of `now`."""
    today = now.astimezone(dt.UTC).date()
    return Scope(None, Site.objects.all(), now, today, "EUR")


def _history(month: dt.date) -> dict[int, list[tuple]]:
    rows = (
        SiteEnergyMonthly.objects.filter(site__isnull=False, month__lt=month)
        .order_by()
        .values("site__company_id", "month", "site__currency")
        .annotate(kwh=Sum("pv_kwh"), revenue=Sum(revenue_of("pv_kwh")))
        .values_list("site__company_id", "month", "site__currency", "kwh", "revenue")
    )
    result: dict[int, list[tuple]] = {}
    for company_id, *row in rows:
        result.setdefault(company_id, []).append(tuple(row))
    return result


def compute(now: dt.datetime | None = None, previous: Snapshot | None = None) -> Snapshot:
    """The figures of every company's own sites, and each company's ten best sites."""
    now = now or timezone.now()
    scope = _platform_scope(now)
    month = scope.this_month
    days = SiteEnergyDaily.objects.filter(site__isnull=False, day__in=scope.candidate_days())
    rows = now_rows(
        Site.objects.all(),
        InverterLatest.objects.filter(site__isnull=False),
        days,
        SiteEnergyMonthly.objects.filter(site__isnull=False, month=month),
        now,
        by_company=True,
    )
    per_company: dict[int, list[tuple]] = {}
    for company_id, *rest in rows:
        per_company.setdefault(company_id, []).append(tuple(rest))
    paths = dict(Site.objects.order_by().values_list("company_id", "company__path").distinct())
    rankings = {
        RANK_TOTAL: _best_per_company(_total_per_site()),
        RANK_TODAY: _best_per_company(_today_per_site(scope)),
    }
    snapshot = Snapshot(now, month, paths, per_company, rankings)
    fresh_history = (
        previous is not None
        and previous.month == month
        and previous.history_taken_at is not None
        and (now - previous.history_taken_at).total_seconds() < PAST_MONTHS_TTL
    )
    if fresh_history:
        snapshot.history, snapshot.history_taken_at = previous.history, previous.history_taken_at
    else:
        snapshot.history, snapshot.history_taken_at = _history(month), now
    return snapshot


def _total_per_site() -> tuple[QuerySet, str]:
    per_site = (
        InverterLatest.objects.filter(site__isnull=False, pv_energy_total__isnull=False)
        .order_by()
        .values("site_id", "site__name", "site__company_id")
        .annotate(kwh=Sum("pv_energy_total"))
    )
    return per_site, "kwh"


def _today_per_site(scope: Scope) -> tuple[QuerySet, str]:
    every_site = SiteEnergyDaily.objects.filter(site__isnull=False).order_by()
    return _today_rows(scope, every_site), "pv_kwh"


def _best_per_company(per_site: tuple[QuerySet, str]) -> dict[int, list[tuple]]:
    """The `RANKING_SIZE` best sites of each company, in Home's order (yield high to low,
    sites without a yield last, then name and id): (kWh, name, site id)."""
    rows, kwh = per_site
    ranked = rows.annotate(
        rank=Window(
            RowNumber(),
            partition_by=[F("site__company_id")],
            order_by=[F(kwh).desc(nulls_last=True), F("site__name"), F("site_id")],
        )
    ).filter(rank__lte=RANKING_SIZE)
    result: dict[int, list[tuple]] = {}
    for company_id, value, name, site_id in ranked.values_list(
        "site__company_id", kwh, "site__name", "site_id"
    ):
        result.setdefault(company_id, []).append((value, name, site_id))
    return result


# --- Reading it -------------------------------------------------------------------------------


def refresh(now: dt.datetime | None = None) -> Snapshot:
    """Compute the snapshot and keep it (the periodic task)."""
    previous = cache.get(CACHE_KEY)
    snapshot = compute(now, previous if isinstance(previous, Snapshot) else None)
    cache.set(CACHE_KEY, snapshot, settings.HOME_SNAPSHOT_MAX_AGE_S * 2)
    return snapshot


def usable_for(scope: Scope) -> Snapshot | None:
    """The kept snapshot when it may stand for `scope`'s own query: a staff user's company
    tree, not older than HOME_SNAPSHOT_MAX_AGE_S, computed for the user's current month."""
    user = scope.user
    if user is None or user.is_owner or user.is_superuser or user.company_id is None:
        return None
    snapshot = cache.get(CACHE_KEY)
    if not isinstance(snapshot, Snapshot):
        return None
    age = (scope.now - snapshot.taken_at).total_seconds()
    if not -5 <= age <= settings.HOME_SNAPSHOT_MAX_AGE_S or snapshot.month != scope.this_month:
        return None
    return snapshot


def scope_for(user, now: dt.datetime | None = None) -> Scope:
    """Home's scope of `user`, carrying the earlier months' figures of their company tree when
    the snapshot is usable (else `past_months` reads and caches them itself)."""
    scope = Scope.of(user, now)
    snapshot = usable_for(scope)
    if snapshot is None:
        return scope
    merged: dict[tuple, list] = {}
    for pk in snapshot.companies_under(user.company.path):
        for month, currency, kwh, revenue in snapshot.history.get(pk, []):
            sums = merged.setdefault((month, currency), [None, None])
            sums[0] = kwh if sums[0] is None else sums[0] + (kwh or 0)
            sums[1] = revenue if sums[1] is None else sums[1] + (revenue or 0)
    history = [
        (month, currency, kwh, revenue) for (month, currency), (kwh, revenue) in merged.items()
    ]
    return replace(scope, history=history)


def fleet_now_for(scope: Scope) -> FleetNow:
    """Home's live figures for `scope`: from the snapshot when it is usable, else computed."""
    snapshot = usable_for(scope)
    if snapshot is None:
        return fleet_now(scope)
    companies = snapshot.companies_under(scope.user.company.path)
    rows = [row for pk in companies for row in snapshot.rows.get(pk, [])]
    return FleetNow.from_rows(rows, scope.currency)


def ranking_for(scope: Scope, by: str) -> list[RankedSite]:
    """Home's yield ranking for `scope`: from the snapshot when it is usable, else computed.

    The ten best sites of a company tree are among the ten best of each of its companies."""
    snapshot = usable_for(scope)
    if snapshot is None or by not in snapshot.rankings:
        return yield_ranking(scope, by)
    per_company = snapshot.rankings[by]
    candidates = [
        entry
        for pk in snapshot.companies_under(scope.user.company.path)
        for entry in per_company.get(pk, [])
    ]
    candidates.sort(key=lambda e: (e[0] is None, -(e[0] or 0), e[1], e[2]))
    return [RankedSite(pk, name, kwh) for kwh, name, pk in candidates[:RANKING_SIZE]]


__all__ = [
    "CACHE_KEY",
    "Snapshot",
    "compute",
    "fleet_now_for",
    "ranking_for",
    "refresh",
    "scope_for",
]
