"""Home (guide §4): the signed-in user's sites at a glance — status, KPIs, today's alarms,
revenue in the user's currency, monthly trends, green efficiency and the yield ranking — for
exactly the sites the user sees, refreshed by htmx without reloading, and with a number of
queries that does not grow with the fleet."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts.models import Role
from fleet.views.site_base import site_local_today
from sites.models import Site
from tests.factories import (
    AlarmFactory,
    CompanyFactory,
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteEnergyDailyFactory,
    SiteEnergyMonthlyFactory,
    SiteFactory,
    UserFactory,
)
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

HOME = "/"
EVERY_SIGNED_IN_USER = Expect.tenant_wide(admin=200, om=200, owner=200)
# 1 EUR = 2 USD = 0.5 CHF: round numbers, so expected amounts are easy to check by hand.
RATES = {"EUR": 1.0, "USD": 2.0, "GBP": 0.8, "CHF": 0.5, "CAD": 1.5, "PLN": 4.0, "SEK": 10.0}
FACTORS = {"coal_kg_per_kwh": 0.4, "co2_kg_per_kwh": 1.0, "co2_kg_per_tree_year": 20.0}
GREEN_FIGURES = ("Standard coal saved", "CO₂ avoided", "Equivalent trees planted")


# --- Reading the page like a user ---------------------------------------------------------------


class _TextOf(HTMLParser):
    """The text inside the element with a given id, whitespace collapsed."""

    VOID = {"br", "hr", "img", "input", "meta", "link", "source", "wbr", "col", "area"}

    def __init__(self, element_id: str):
        super().__init__()
        self.element_id = element_id
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id:
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth and tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def text_of(html: str, element_id: str) -> str:
    parser = _TextOf(element_id)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def figure(html: str, label: str) -> str:
    """The value shown for a labelled figure (`<dt>label</dt><dd>value</dd>`)."""
    found = re.search(
        rf"{re.escape(label)}</dt>\s*<dd[^>]*>([^<]*)</dd>", html.replace("\n", " "), re.S
    )
    assert found, f"no figure labelled {label!r}"
    return found.group(1).strip()


def figures(html: str, *labels: str) -> dict[str, str]:
    """The values shown for these labelled figures, by label."""
    return {label: figure(html, label) for label in labels}


def status_counts(html: str) -> dict[str, str]:
    """The number of sites shown for each status, by the status the link filters the list by."""
    found = re.findall(
        r'href="/site/\?status=(\w+)"[^>]*>\s*<span class="home-figure">([^<]*)</span>', html
    )
    assert found, "no status links"
    return dict(found)


def alarm_counts(html: str) -> dict[str, str]:
    """The number of alarms shown for each level, by the level's label."""
    found = re.findall(
        r'<span class="home-figure">([^<]*)</span>\s*<span class="home-alarm-label">([^<]*)<',
        html,
    )
    assert found, "no alarm counts"
    return {label: count for count, label in found}


def page(client, url: str = HOME, **headers) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def htmx(target: str) -> dict:
    return {"HX-Request": "true", "HX-Target": target}


# --- A small fleet ------------------------------------------------------------------------------


def _site(company, name, *, currency="EUR", tariff="0.25", capacity=10, tz="Europe/Rome", **kw):
    return SiteFactory(
        company=company,
        name=name,
        currency=currency,
        tariff_per_kwh=tariff,
        capacity_kwp=capacity,
        time_zone=tz,
        **kw,
    )


def _inverter(site, *, status="running", power=None, total=None, gateway_status="online"):
    gateway = GatewayFactory(site=site, company=site.company, status=gateway_status)
    inverter = InverterFactory(gateway=gateway, status=status)
    InverterLatestFactory(inverter=inverter, pv_power=power, pv_energy_total=total)
    return inverter


def _months(site, *pairs):
    for month, kwh in pairs:
        SiteEnergyMonthlyFactory(site=site, month=month, pv_kwh=kwh)


def _month_before(month: dt.date) -> dt.date:
    return (month - dt.timedelta(days=1)).replace(day=1)


@pytest.fixture
def fleet(tenants, settings):
    """Helios (EUR user) sees Alpha (SunFix, EUR, online), Beta (Helios, CHF, abnormal) and
    Gamma (no devices: offline); the owner is granted Alpha only; Nordlicht has Nord."""
    settings.CURRENCY_RATES = RATES
    settings.GREEN_FACTORS = FACTORS
    for user in (tenants.helios_admin, tenants.helios_om, tenants.nordlicht_admin):
        user.currency = "EUR"
        user.save(update_fields=["currency"])
    tenants.owner.currency = "USD"
    tenants.owner.save(update_fields=["currency"])

    alpha = _site(tenants.sunfix, "Alpha Solar", currency="EUR", tariff="0.25", capacity=10)
    beta = _site(
        tenants.helios,
        "Beta Roof",
        currency="CHF",
        tariff="0.30",
        capacity="5.5",
        tz="Europe/Zurich",
    )
    gamma = _site(tenants.helios, "Gamma Field", capacity=4)
    nord = _site(tenants.nordlicht, "Nord Park", capacity=700, tz="Europe/Berlin")
    assign_perm("pv_sites.view_site", tenants.owner, alpha)

    alpha_inv = _inverter(alpha, status="running", power=3000, total=1000)
    beta_inv = _inverter(beta, status="fault", power=1500, total=2000, gateway_status="offline")
    nord_inv = _inverter(nord, status="running", power=90_000, total=777_777)

    today = site_local_today(alpha)
    this_month = today.replace(day=1)
    last_month = _month_before(this_month)
    last_year = this_month.replace(year=this_month.year - 1)
    SiteEnergyDailyFactory(site=alpha, day=today, pv_kwh=20)
    SiteEnergyDailyFactory(site=alpha, day=today - dt.timedelta(days=1), pv_kwh=99)
    SiteEnergyDailyFactory(site=beta, day=site_local_today(beta), pv_kwh=10)
    SiteEnergyDailyFactory(site=nord, day=site_local_today(nord), pv_kwh=5555)
    _months(alpha, (this_month, 300), (last_month, 200), (last_year, 500))
    _months(beta, (this_month, 100))
    _months(nord, (this_month, 88_888))

    now = timezone.now()
    AlarmFactory(
        inverter=alpha_inv, code="F01", level="urgent", occurred_at=now - dt.timedelta(days=3)
    )
    AlarmFactory(
        inverter=alpha_inv,
        code="W02",
        level="common",
        occurred_at=now,
        status="recovered",
        recovered_at=now,
    )
    AlarmFactory(
        inverter=alpha_inv,
        code="P03",
        level="prompt",
        occurred_at=now - dt.timedelta(days=3),
        status="recovered",
        recovered_at=now - dt.timedelta(days=2),
    )
    AlarmFactory(inverter=beta_inv, code="I04", level="important", occurred_at=now)
    AlarmFactory(inverter=nord_inv, code="F05", level="urgent", occurred_at=now)
    AlarmFactory(inverter=nord_inv, code="F06", level="urgent", occurred_at=now)
    return {
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "nord": nord,
        "this_month": this_month,
        "last_month": last_month,
    }


# --- Status and KPIs (§4.1, §4.2) ---------------------------------------------------------------


def test_status_card_counts_sites_as_section_4_1_defines_them(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    # Alpha: a device answers → online; Beta: an inverter in fault → abnormal; Gamma: no
    # device that could answer → offline. Nord belongs to another tenant.
    assert status_counts(html) == {"online": "1", "offline": "1", "abnormal": "1"}
    assert "3 sites" in text_of(html, "home-live")


def test_each_status_links_to_the_site_list_filtered_by_it(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    list_url = reverse("sites:list")
    for status in ("online", "offline", "abnormal"):
        assert f'href="{list_url}?status={status}"' in html


def test_kpis_sum_the_visible_sites(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    assert figures(html, "Current power", "Capacity", "Daily yield", "Total yield") == {
        "Current power": "4.5 kW",  # 3000 W + 1500 W
        "Capacity": "19.5 kWp",  # 10 + 5.5 + 4
        "Daily yield": "30 kWh",  # each site's own today: 20 + 10
        "Total yield": "3,000 kWh",  # lifetime counters 1000 + 2000
    }


def test_daily_yield_is_each_sites_own_local_day(tenants, client_for):
    """A site on the other side of the date line counts its own today, not the user's."""
    far = _site(tenants.helios, "Line Islands", tz="Pacific/Kiritimati")  # UTC+14
    near = _site(tenants.helios, "Samoa", tz="Pacific/Pago_Pago")  # UTC−11
    for site, kwh in ((far, 7), (near, 3)):
        local_today = site_local_today(site)
        SiteEnergyDailyFactory(site=site, day=local_today, pv_kwh=kwh)
        SiteEnergyDailyFactory(site=site, day=local_today - dt.timedelta(days=1), pv_kwh=1000)
        SiteEnergyDailyFactory(site=site, day=local_today + dt.timedelta(days=1), pv_kwh=2000)
    html = page(client_for(tenants.helios_admin))
    assert figure(html, "Daily yield") == "10 kWh"


def test_kpis_of_a_site_without_data_are_dashes_not_zeros(tenants, client_for):
    _site(tenants.helios, "Quiet Site")
    html = page(client_for(tenants.helios_admin))
    for label in ("Current power", "Daily yield", "Total yield", "Today"):
        assert figure(html, label) == "–", label


# --- Alarms (§4.3) ------------------------------------------------------------------------------


def test_alarms_today_per_level(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    # Occurring now (urgent, 3 days old; important, new) or occurred today (common, recovered);
    # the prompt alarm recovered days ago and Nordlicht's are another tenant's.
    assert alarm_counts(html) == {"Urgent": "1", "Important": "1", "Common": "1", "Prompt": "0"}


def test_alarm_counts_are_plain_text_until_the_alarm_list_exists(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    alarms = html[html.index('class="home-alarms') :]
    alarms = alarms[: alarms.index("</ul>")]
    try:
        alarm_list = reverse("maintenance:alarms")
    except Exception:  # noqa: BLE001 - the alarm list (guide §8.1) may not exist yet
        assert "<a " not in alarms
        assert 'title="Urgent alarms occurring now or since midnight"' in alarms
    else:
        assert f'href="{alarm_list}?level=urgent"' in alarms


# --- Revenue (§4.4) -----------------------------------------------------------------------------


def test_revenue_converts_each_sites_currency_into_the_users(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    this_month, last_month = fleet["this_month"], fleet["last_month"]
    # Today: Alpha 20 kWh × 0.25 EUR = 5 EUR; Beta 10 kWh × 0.30 CHF = 3 CHF = 6 EUR.
    assert figure(html, "Today") == "€11.00"
    # This month: Alpha 300 × 0.25 = 75 EUR; Beta 100 × 0.30 = 30 CHF = 60 EUR.
    assert figure(html, "This month") == "€135.00"
    # This year: and Alpha's previous month, when it is in the same year (200 × 0.25 = 50).
    year = 135 + (50 if last_month.year == this_month.year else 0)
    assert figure(html, "This year") == f"€{year:.2f}"
    # Total: the lifetime counters at today's tariff: 1000 × 0.25 EUR + 2000 × 0.30 CHF.
    assert figure(html, "Total") == "€1,450.00"


def test_revenue_in_the_owners_currency_and_language(fleet, tenants, client_for):
    tenants.owner.language = "de"
    tenants.owner.save(update_fields=["language"])
    html = page(client_for(tenants.owner))
    # Alpha only: 5 EUR today = 10 USD, written the German way.
    live = text_of(html, "home-live")
    assert "10,00 $" in live
    assert "500,00 $" in live  # total: 1000 kWh × 0.25 EUR = 250 EUR
    assert "€" not in live


def test_revenue_without_a_rate_is_not_guessed(fleet, tenants, client_for, settings):
    settings.CURRENCY_RATES = {"EUR": 1.0}  # no rate for Beta's CHF
    html = page(client_for(tenants.helios_admin))
    assert figure(html, "Today") == "–"


# --- Green efficiency (§4.6) --------------------------------------------------------------------


def test_green_efficiency_from_total_yield_and_the_configured_factors(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    # 3,000 kWh × 0.4 kg coal, × 1.0 kg CO₂; 3,000 kg CO₂ / 20 kg per tree and year.
    assert figures(html, *GREEN_FIGURES) == {
        "Standard coal saved": "1.2 t",
        "CO₂ avoided": "3 t",
        "Equivalent trees planted": "150",
    }


def test_green_factors_are_configurable(fleet, tenants, client_for, settings):
    settings.GREEN_FACTORS = {"coal_kg_per_kwh": 0.1, "co2_kg_per_kwh": 0.25}
    html = page(client_for(tenants.owner))  # Alpha: 1,000 kWh
    assert figures(html, *GREEN_FIGURES) == {
        "Standard coal saved": "100 kg",
        "CO₂ avoided": "250 kg",
        "Equivalent trees planted": "–",  # no factor configured
    }


# --- Scope --------------------------------------------------------------------------------------


def test_owner_sees_only_the_granted_site(fleet, tenants, client_for):
    html = page(client_for(tenants.owner))
    assert status_counts(html) == {"online": "1", "offline": "0", "abnormal": "0"}
    assert figures(html, "Current power", "Capacity", "Daily yield") == {
        "Current power": "3 kW",
        "Capacity": "10 kWp",
        "Daily yield": "20 kWh",
    }
    assert alarm_counts(html)["Important"] == "0"
    ranking = text_of(html, "home-ranking")
    assert "Alpha Solar" in ranking
    assert "Beta Roof" not in ranking


def test_a_foreign_tenant_sees_none_of_helios_figures(fleet, tenants, client_for):
    html = page(client_for(tenants.nordlicht_admin))
    assert status_counts(html) == {"online": "1", "offline": "0", "abnormal": "0"}
    assert figures(html, "Current power", "Daily yield") == {
        "Current power": "90 kW",
        "Daily yield": "5,555 kWh",
    }
    assert alarm_counts(html)["Urgent"] == "2"
    for helios_site in ("Alpha Solar", "Beta Roof", "Gamma Field"):
        assert helios_site not in html
    chart = client_for(tenants.nordlicht_admin).get(reverse("home:yield_chart")).json()
    month_index = fleet["this_month"].month - 1
    assert chart["series"][0]["values"][month_index] == 88.888  # MWh: Nord's own month only


# --- Ranking (§4.7) -----------------------------------------------------------------------------


def test_ranking_by_total_and_by_today(fleet, tenants, client_for):
    client = client_for(tenants.helios_admin)
    total = text_of(page(client), "home-ranking")
    assert total.index("Beta Roof") < total.index("Alpha Solar")  # 2,000 kWh before 1,000 kWh
    assert "Gamma Field" not in total  # nothing reported
    today = text_of(page(client, f"{HOME}?ranking=today"), "home-ranking")
    assert today.index("Alpha Solar") < today.index("Beta Roof")  # 20 kWh before 10 kWh
    html = page(client)
    assert f'href="{reverse("sites:detail", args=[fleet["beta"].pk])}"' in html


def test_ranking_shows_the_top_ten(tenants, client_for):
    for n in range(12):
        site = _site(tenants.helios, f"Ranked {n:02d}")
        _inverter(site, total=100 + n)
    ranking = text_of(page(client_for(tenants.helios_admin)), "home-ranking")
    assert "Ranked 11" in ranking
    assert "Ranked 02" in ranking
    assert "Ranked 01" not in ranking


# --- Live refresh -------------------------------------------------------------------------------


def test_live_cards_poll_every_minute_and_come_back_alone(fleet, tenants, client_for):
    client = client_for(tenants.helios_admin)
    html = page(client)
    assert re.search(r'id="home-live"[^>]*hx-get="/"[^>]*hx-trigger="every 60s"', html)
    partial = page(client, **htmx("home-live"))
    assert "<html" not in partial
    assert partial.lstrip().startswith('<div id="home-live"')
    assert 'hx-trigger="every 60s"' in partial
    assert figure(partial, "Current power") == "4.5 kW"
    assert figure(partial, "Today") == "€11.00"
    assert "home-charts" not in partial


def test_period_change_swaps_only_the_charts(fleet, tenants, client_for):
    client = client_for(tenants.helios_admin)
    partial = page(client, f"{HOME}?period=12m", **htmx("home-charts"))
    assert partial.lstrip().startswith('<section id="home-charts"')
    assert f"{reverse('home:revenue_chart')}?period=12m" in partial
    assert '<option value="12m" selected>' in partial
    assert "home-live" not in partial


def test_ranking_toggle_swaps_only_the_ranking(fleet, tenants, client_for):
    partial = page(
        client_for(tenants.helios_admin), f"{HOME}?ranking=today", **htmx("home-ranking")
    )
    assert partial.lstrip().startswith('<section id="home-ranking"')
    assert 'aria-current="true"' in partial
    assert "Alpha Solar" in partial


def test_partial_responses_vary_on_htmx_headers(fleet, tenants, client_for):
    response = client_for(tenants.helios_admin).get(HOME)
    assert "HX-Target" in response["Vary"]


# --- Charts (§4.5) ------------------------------------------------------------------------------


def test_charts_are_drawn_from_json_endpoints(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    year = timezone.localdate().year
    assert re.search(
        rf'class="mc-chart[^"]*" data-chart-url="/home/revenue.json\?period={year}" '
        r'data-chart-kind="line" role="img" aria-label="[^"]+"',
        html,
    )
    assert f'data-chart-url="/home/yield.json?period={year}" data-chart-kind="bar"' in html


def test_yield_chart_json(fleet, tenants, client_for):
    year = fleet["this_month"].year
    response = client_for(tenants.helios_admin).get(
        reverse("home:yield_chart"), {"period": str(year)}
    )
    chart = response.json()
    assert set(chart) == {"x", "x_kind", "series"}
    assert chart["x_kind"] == "category"
    assert chart["x"][0] == "Jan" and len(chart["x"]) == 12 <= 2000
    [series] = chart["series"]
    assert series["unit"] == "kWh"
    assert len(series["values"]) == 12
    month = fleet["this_month"].month - 1
    assert series["values"][month] == 400  # Alpha 300 + Beta 100
    empty = [v for i, v in enumerate(series["values"]) if i not in (month, month - 1)]
    assert set(empty) == {None}  # months without rollups are missing, not 0


def test_revenue_chart_json_in_the_users_currency(fleet, tenants, client_for):
    chart = client_for(tenants.helios_admin).get(reverse("home:revenue_chart")).json()
    [series] = chart["series"]
    assert series["unit"] == "€"
    assert series["values"][fleet["this_month"].month - 1] == 135.0


def test_last_twelve_months_and_month_names_in_the_users_language(fleet, tenants, client_for):
    tenants.helios_admin.language = "de"
    tenants.helios_admin.save(update_fields=["language"])
    chart = (
        client_for(tenants.helios_admin).get(reverse("home:yield_chart"), {"period": "12m"}).json()
    )
    assert len(chart["x"]) == 12
    assert chart["x"][-1].endswith(f"'{fleet['this_month']:%y}")  # e.g. "Dez '26"
    assert any(label.startswith("Okt") for label in chart["x"])  # every 12 months have one
    values = chart["series"][0]["values"]
    assert values[-1] == 400  # this month
    assert values[-2] == 200  # last month (Alpha)
    assert values[0] is None  # a year ago is outside the last 12 months


def test_an_unknown_period_is_refused(fleet, tenants, client_for):
    client = client_for(tenants.helios_admin)
    assert client.get(reverse("home:yield_chart"), {"period": "1999"}).status_code == 400
    assert client.get(reverse("home:revenue_chart"), {"period": "x"}).status_code == 400
    # The page itself falls back to this year.
    assert f"period={timezone.localdate().year}" in page(client, f"{HOME}?period=nonsense")


def test_the_chart_numbers_are_also_a_table(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    table = text_of(html, "home-charts")
    assert "Show the figures as a table" in table
    assert "400 kWh" in table and "€135.00" in table


def test_year_selector_offers_the_years_with_data(fleet, tenants, client_for):
    html = page(client_for(tenants.helios_admin))
    year = fleet["this_month"].year
    assert f'<option value="{year}" selected>' in html
    assert f'<option value="{year - 1}">' in html
    assert '<option value="12m">Last 12 months</option>' in html


# --- Empty state --------------------------------------------------------------------------------


def test_a_new_company_is_invited_to_create_its_first_site(client_for):
    company = CompanyFactory(name="Fresh Installers")
    admin = UserFactory(company=company, role=Role.ADMIN)
    html = page(client_for(admin))
    assert "There are no sites yet" in html
    try:
        create = reverse("sites:create")
    except Exception:  # noqa: BLE001 - the create dialog may not be routed yet
        create = reverse("sites:list")
    assert f'href="{create}"' in html
    assert "home-live" not in html


def test_an_owner_without_sites_is_told_why(tenants, client_for):
    html = page(client_for(tenants.owner))
    assert "No site has been shared with you yet" in html
    assert "Create site" not in html


# --- Performance: queries do not grow with the fleet -------------------------------------------


def _grow(company, count, start=0):
    today = timezone.localdate()
    for n in range(start, start + count):
        site = _site(company, f"Scale {n:03d}")
        inverter = _inverter(site, power=1000 + n, total=5000 + n)
        SiteEnergyDailyFactory(site=site, day=site_local_today(site), pv_kwh=n)
        SiteEnergyMonthlyFactory(site=site, month=today.replace(day=1), pv_kwh=n)
        AlarmFactory(inverter=inverter, code=f"S{n}", level="common")


def _queries(client, url, **headers) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, headers=headers).status_code == 200
    return len(queries)


@pytest.mark.parametrize("actor", ["helios_admin", "owner"])
def test_query_count_does_not_depend_on_the_number_of_sites(tenants, client_for, actor):
    user = getattr(tenants, actor)
    client = client_for(user)

    def grant_all():
        if user.is_owner:
            for site in Site.objects.filter(company=tenants.sunfix):
                assign_perm("pv_sites.view_site", user, site)

    _grow(tenants.sunfix, 10)
    grant_all()
    client.get(HOME)  # warm caches (content types, sessions)
    urls = [
        (HOME, {}),
        (HOME, htmx("home-live")),
        (f"{HOME}?period=12m", htmx("home-charts")),
        (f"{HOME}?ranking=today", htmx("home-ranking")),
        (reverse("home:revenue_chart"), {}),
        (reverse("home:yield_chart"), {}),
    ]
    small = [_queries(client, url, **headers) for url, headers in urls]
    _grow(tenants.sunfix, 90, start=10)
    grant_all()
    large = [_queries(client, url, **headers) for url, headers in urls]
    assert small == large
    assert figure(page(client), "Daily yield") == "4,950 kWh"  # 0 + 1 + … + 99


# --- Permission matrix --------------------------------------------------------------------------


@pytest.mark.matrix("home")
def test_matrix_home(tenants, client_for):
    assert_matrix(tenants, client_for, HOME, EVERY_SIGNED_IN_USER)


@pytest.mark.matrix("home:revenue_chart")
def test_matrix_revenue_chart(tenants, client_for):
    assert_matrix(tenants, client_for, reverse("home:revenue_chart"), EVERY_SIGNED_IN_USER)


@pytest.mark.matrix("home:yield_chart")
def test_matrix_yield_chart(tenants, client_for):
    assert_matrix(tenants, client_for, reverse("home:yield_chart"), EVERY_SIGNED_IN_USER)


def test_chart_json_is_json(fleet, tenants, client_for):
    response = client_for(tenants.owner).get(reverse("home:revenue_chart"))
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["series"][0]["unit"] == "$"
