"""Home's live figures for staff come from a snapshot of every company (fleet/snapshot.py):
the snapshot must give exactly the figures Home would compute itself, for every company tree,
and Home must use it only while it is fresh, for the month it was taken in, and never for
owners (who see granted sites, not a company tree)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.core.cache import cache
from guardian.shortcuts import assign_perm

from fleet import home, snapshot
from fleet.home import RANK_TODAY, RANK_TOTAL, Scope
from fleet.views.site_base import site_local_today
from tests.factories import (
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteEnergyDailyFactory,
    SiteEnergyMonthlyFactory,
    SiteFactory,
)

pytestmark = pytest.mark.django_db


def _site(
    company,
    name,
    *,
    status="running",
    power=1000.0,
    total=500.0,
    day=None,
    month=None,
    currency="EUR",
    tz="Europe/Rome",
):
    site = SiteFactory(
        company=company,
        name=name,
        currency=currency,
        tariff_per_kwh="0.20",
        capacity_kwp=10,
        time_zone=tz,
    )
    gateway = GatewayFactory(site=site, company=company, status="online")
    inverter = InverterFactory(gateway=gateway, status=status)
    InverterLatestFactory(inverter=inverter, pv_power=power, pv_energy_total=total)
    today = site_local_today(site)
    if day is not None:
        SiteEnergyDailyFactory(site=site, day=today, pv_kwh=day)
    if month is not None:
        SiteEnergyMonthlyFactory(site=site, month=today.replace(day=1), pv_kwh=month)
    return site


@pytest.fixture
def fleet(tenants):
    cache.delete(snapshot.CACHE_KEY)
    sites = [
        _site(tenants.helios, "Helios Roof", day=12, month=300),
        _site(
            tenants.helios,
            "Helios Barn",
            status="fault",
            power=200.0,
            total=900.0,
            day=3,
            currency="CHF",
            tz="Europe/Zurich",
        ),
        _site(tenants.sunfix, "SunFix Farm", total=2500.0, day=40, month=700),
        _site(tenants.sunfix, "SunFix Shed", power=None, total=None),
        _site(tenants.nordlicht, "Nord Park", total=99_999.0, day=5555, month=88_888),
    ]
    SiteFactory(company=tenants.sunfix, name="Empty Plot")  # no devices: offline
    this_month = site_local_today(sites[0]).replace(day=1)
    for site, months_back, kwh in (
        (sites[0], 1, 250),
        (sites[1], 13, 80),
        (sites[2], 2, 400),
        (sites[4], 1, 12_345),
    ):
        month = this_month
        for _ in range(months_back):
            month = (month - dt.timedelta(days=1)).replace(day=1)
        SiteEnergyMonthlyFactory(site=site, month=month, pv_kwh=kwh)
    assign_perm("pv_sites.view_site", tenants.owner, sites[2])
    yield sites
    cache.delete(snapshot.CACHE_KEY)


STAFF = ("helios_admin", "helios_om", "sunfix_admin", "sunfix_om", "nordlicht_admin")


@pytest.mark.parametrize("who", STAFF)
def test_the_snapshot_gives_the_figures_home_computes(tenants, fleet, who):
    user = getattr(tenants, who)
    snapshot.refresh()
    scope = Scope.of(user)
    assert snapshot.usable_for(scope) is not None
    assert snapshot.fleet_now_for(scope) == home.fleet_now(scope)
    for by in (RANK_TOTAL, RANK_TODAY):
        assert snapshot.ranking_for(scope, by) == home.yield_ranking(scope, by)


@pytest.mark.parametrize("who", STAFF)
def test_the_snapshot_gives_the_earlier_months_home_computes(tenants, fleet, who):
    user = getattr(tenants, who)
    snapshot.refresh()
    from_snapshot, computed = snapshot.scope_for(user), Scope.of(user)
    assert from_snapshot.history is not None and computed.history is None
    assert home.year_options(from_snapshot) == home.year_options(computed)
    for key in ("12m", str(computed.today.year), str(computed.today.year - 1)):
        period = home.parse_period(key, computed.today)
        assert home.monthly_trend(from_snapshot, period) == home.monthly_trend(computed, period)


@pytest.mark.parametrize("who", (*STAFF, "owner"))
def test_one_statement_gives_what_the_single_figures_give(tenants, fleet, who):
    scope = Scope.of(getattr(tenants, who))
    now = home.fleet_now(scope)
    assert now.counts == home.site_counts(scope)
    assert now.live == home.live_figures(scope)
    assert now.today.kwh == home.today_sums(scope).kwh
    assert now.this_month.kwh == home.this_month_sums(scope).kwh


def test_a_distributor_sees_its_installers_sites_and_never_another_tenants(tenants, fleet):
    snapshot.refresh()
    helios = snapshot.fleet_now_for(Scope.of(tenants.helios_admin))
    assert helios.counts.total == 5  # Helios' two, SunFix's three; not Nordlicht's
    assert helios.counts.by_status == {"online": 3, "abnormal": 1, "offline": 1}
    ranked = [
        site.name for site in snapshot.ranking_for(Scope.of(tenants.helios_admin), RANK_TOTAL)
    ]
    assert ranked == ["SunFix Farm", "Helios Barn", "Helios Roof"]
    assert "Nord Park" not in ranked


def test_home_shows_the_snapshot_while_it_is_fresh(tenants, fleet, client, settings):
    snapshot.refresh()
    SiteFactory(company=tenants.helios, name="Added after the snapshot")
    client.force_login(tenants.helios_admin)
    assert _total(client) == 5
    settings.HOME_SNAPSHOT_MAX_AGE_S = 0  # too old now: Home computes its own figures
    assert _total(client) == 6


def test_a_snapshot_of_another_month_or_too_old_is_not_used(tenants, fleet, settings):
    taken = snapshot.refresh()
    scope = Scope.of(tenants.helios_admin)
    assert snapshot.usable_for(scope) is not None
    next_month = (scope.this_month + dt.timedelta(days=31)).replace(day=1)
    assert snapshot.usable_for(dataclasses.replace(scope, today=next_month)) is None
    settings.HOME_SNAPSHOT_MAX_AGE_S = 10
    too_late = taken.taken_at + dt.timedelta(seconds=11)
    assert snapshot.usable_for(dataclasses.replace(scope, now=too_late)) is None


def test_owners_never_read_the_company_snapshot(tenants, fleet):
    snapshot.refresh()
    scope = Scope.of(tenants.owner)
    assert snapshot.usable_for(scope) is None
    now = snapshot.fleet_now_for(scope)
    assert now.counts.total == 1  # only the granted site


def test_the_periodic_task_keeps_the_snapshot(tenants, fleet):
    from fleet.tasks import refresh_home_snapshot

    assert snapshot.usable_for(Scope.of(tenants.helios_admin)) is None
    result = refresh_home_snapshot()
    assert result["companies"] == 3
    assert snapshot.usable_for(Scope.of(tenants.helios_admin)) is not None


def _total(client) -> int:
    response = client.get("/", headers={"HX-Request": "true", "HX-Target": "home-live"})
    counts = response.context["statuses"]
    return sum(row["count"] for row in counts)
