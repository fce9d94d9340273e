"""A site's Energy tab (guide §6.2.4): the whole site or one inverter, bars per hour, day,
month or year from the rollups (the samples for one day), and the same numbers as CSV and
XLSX downloads."""

from __future__ import annotations

import csv
import datetime as dt
import io
from urllib.parse import urlencode

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from devices.decoding import codec_for_model
from fleet.energy import SERIES
from inverters.telemetry import Sample, ensure_partitions, layout_id_for
from tests.factories import (
    EnergyDailyFactory,
    SiteEnergyDailyFactory,
    SiteEnergyMonthlyFactory,
    SiteFactory,
)
from tests.fleet_helpers import (
    ROME,
    add_inverter,
    granted_site,  # noqa: F401 - the fixture `site`
)
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db


def data(client, site, **query):
    url = f"{reverse('sites:energy_data', args=[site.pk])}?{urlencode(query)}"
    return client.get(url)


def download(client, site, fmt, **query):
    url = f"{reverse('sites:energy', args=[site.pk])}?{urlencode({**query, 'export': fmt})}"
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response, b"".join(response.streaming_content)


def series_of(body):
    return {s["label"]: s["values"] for s in body["series"]}


def test_month_bars_of_the_site_come_from_its_days(client_for, tenants, site):
    SiteEnergyDailyFactory(site=site, day=dt.date(2026, 1, 31), pv_kwh=99)  # not this month
    SiteEnergyDailyFactory(site=site, day=dt.date(2026, 2, 1), pv_kwh=12.5, load_kwh=7.25)
    SiteEnergyDailyFactory(site=site, day=dt.date(2026, 2, 28), pv_kwh=3, export_kwh=1.5)
    SiteEnergyDailyFactory(day=dt.date(2026, 2, 2), pv_kwh=50)  # another site
    response = data(client_for(tenants.owner), site, period="month", month="2026-02")
    assert response.status_code == 200
    body = response.json()
    assert body["x_kind"] == "category"
    assert body["x"] == [str(d) for d in range(1, 29)]
    assert [(s["label"], s["unit"], s.get("show", True)) for s in body["series"]] == [
        ("PV yield", "kWh", True),
        ("Consumption", "kWh", True),
        ("Grid export", "kWh", True),
        ("Grid import", "kWh", True),
        ("Battery charge", "kWh", False),
        ("Battery discharge", "kWh", False),
    ]
    values = series_of(body)
    assert values["PV yield"][0] == 12.5 and values["PV yield"][27] == 3
    assert values["PV yield"][1:27] == [None] * 26  # days without data: no bar
    assert values["Consumption"][0] == 7.25 and values["Grid export"][27] == 1.5


def test_month_bars_of_an_inverter_come_from_its_days(client_for, tenants, site):
    a = add_inverter(site, "INV-A")
    b = add_inverter(site, "INV-B")
    EnergyDailyFactory(inverter=a, day=dt.date(2026, 2, 3), pv_kwh=4.5)
    EnergyDailyFactory(inverter=b, day=dt.date(2026, 2, 3), pv_kwh=40)
    body = data(
        client_for(tenants.helios_om), site, device=a.pk, period="month", month="2026-02"
    ).json()
    assert series_of(body)["PV yield"][2] == 4.5
    assert sum(v for v in series_of(body)["PV yield"] if v) == 4.5


def test_year_and_total_bars_for_the_site_and_an_inverter(client_for, tenants, site):
    a = add_inverter(site, "INV-A")
    SiteEnergyMonthlyFactory(site=site, month=dt.date(2025, 1, 1), pv_kwh=100, import_kwh=5)
    SiteEnergyMonthlyFactory(site=site, month=dt.date(2025, 12, 1), pv_kwh=50)
    SiteEnergyMonthlyFactory(site=site, month=dt.date(2023, 6, 1), pv_kwh=7)
    for day, kwh in (
        (dt.date(2025, 3, 1), 1.25),
        (dt.date(2025, 3, 31), 2),
        (dt.date(2025, 4, 1), 4),
    ):
        EnergyDailyFactory(inverter=a, day=day, pv_kwh=kwh, charge_kwh=1)
    EnergyDailyFactory(inverter=a, day=dt.date(2024, 12, 31), pv_kwh=8)
    client = client_for(tenants.owner)
    year = data(client, site, period="year", year="2025").json()
    assert year["x"] == [
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
        "Dec",
    ]
    assert series_of(year)["PV yield"] == [100] + [None] * 10 + [50]
    assert series_of(year)["Grid import"][0] == 5
    inverter_year = series_of(data(client, site, device=a.pk, period="year", year="2025").json())
    assert inverter_year["PV yield"][2:4] == [3.25, 4]
    assert inverter_year["Battery charge"][2:4] == [2, 1]
    total = data(client, site, period="total").json()
    assert total["x"] == ["2023", "2024", "2025"]
    assert series_of(total)["PV yield"] == [7, None, 150]
    inverter_total = data(client, site, device=a.pk, period="total").json()
    assert inverter_total["x"] == ["2024", "2025"]
    assert series_of(inverter_total)["PV yield"] == [8, 7.25]
    empty = data(client, add_site_without_data(tenants, site), period="total").json()
    assert empty["x"] == []


def add_site_without_data(tenants, site):
    other = SiteFactory(company=tenants.sunfix)
    assign_perm("pv_sites.view_site", tenants.owner, other)
    return other


def store_counters(inverter, day: dt.date, first_kwh: float, step_kwh: float, every_min=5):
    """A local day of samples whose PV counter rises by `step_kwh` per sample."""
    start = dt.datetime.combine(day, dt.time(), ROME)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ROME)
    ensure_partitions({start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()})
    layout = layout_id_for(codec_for_model(inverter.model))
    samples, ts, kwh = [], start.astimezone(dt.UTC), first_kwh
    while ts < end:
        samples.append(
            Sample(
                inverter_id=inverter.pk,
                ts=ts,
                layout_id=layout,
                pv_energy_total=kwh,
                load_energy_total=kwh / 2,
            )
        )
        ts += dt.timedelta(minutes=every_min)
        kwh += step_kwh
    Sample.objects.bulk_create(samples)
    return samples


def test_day_bars_are_hourly_counter_rises_that_add_up_to_the_day(client_for, tenants, site):
    a = add_inverter(site, "INV-A")
    b = add_inverter(site, "INV-B")
    day = dt.date(2026, 3, 10)
    store_counters(a, day, 100.0, 0.25)  # 12 samples an hour: 3 kWh an hour
    store_counters(b, day, 10.0, 0.5)
    # The day before ended at 99.5 for A: its first hour counts from there, as the rollup does.
    EnergyDailyFactory(inverter=a, day=day, pv_base=99.5, load_base=49.75)
    client = client_for(tenants.owner)
    one = data(client, site, device=a.pk, period="day", day=day.isoformat()).json()
    assert one["x"][:3] == ["00:00", "01:00", "02:00"] and len(one["x"]) == 24
    pv = series_of(one)["PV yield"]
    assert pv[0] == 0.5 + 11 * 0.25  # from 99.5 to the hour's last reading
    assert pv[1:] == [3.0] * 23
    assert sum(pv) == 100.0 + 287 * 0.25 - 99.5
    assert series_of(one)["Consumption"][1] == 1.5
    whole = series_of(data(client, site, period="day", day=day.isoformat()).json())
    assert whole["PV yield"][5] == 3.0 + 6.0  # both inverters
    # A day when the clocks go forward has 23 hours; no samples: no bars.
    spring = data(client, site, period="day", day="2026-03-29").json()
    assert len(spring["x"]) == 23 and spring["x"][2] == "03:00"
    assert set(series_of(spring)["PV yield"]) == {None}


def test_downloads_hold_exactly_the_bars(client_for, tenants, site):
    SiteEnergyDailyFactory(site=site, day=dt.date(2026, 2, 1), pv_kwh=12.5, import_kwh=0.75)
    SiteEnergyDailyFactory(site=site, day=dt.date(2026, 2, 14), pv_kwh=3.25, load_kwh=2)
    client = client_for(tenants.owner)
    query = {"device": "site", "period": "month", "month": "2026-02"}
    bars = data(client, site, **query).json()
    response, body = download(client, site, "csv", **query)
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="casa-sole-energy-month-2026-02.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["Date"] + [f"{s.label} (kWh)" for s in SERIES]
    assert len(rows) == 1 + len(bars["x"])
    assert rows[1][0] == "2026-02-01" and rows[14][0] == "2026-02-14"
    for index, row in enumerate(rows[1:]):
        for column, series in enumerate(bars["series"], start=1):
            shown = series["values"][index]
            assert (float(row[column]) if row[column] else None) == shown
    response, body = download(client, site, "xlsx", **query)
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    cells = list(sheet.iter_rows(values_only=True))
    assert cells[0] == tuple(rows[0])
    assert cells[1][0].date() == dt.date(2026, 2, 1) and cells[1][1] == 12.5
    assert cells[14][2] == 2 and cells[2][1] is None  # a day without data: an empty cell
    assert len(cells) == len(rows)


def test_the_energy_tab_shows_the_device_choice_totals_and_downloads(client_for, tenants, site):
    add_inverter(site, "INV-A")
    today = dt.datetime.now(ROME).date()
    SiteEnergyDailyFactory(site=site, day=today, pv_kwh=12.5)
    client = client_for(tenants.owner)
    page = client.get(reverse("sites:energy", args=[site.pk])).content.decode()
    assert '<option value="site" selected>Whole site</option>' in page
    assert "INV-A</option>" in page
    assert 'value="month" id="energy-period-month" autocomplete="off" checked' in page
    assert 'type="month" name="month"' in page
    assert "<dt>PV yield</dt><dd>12.5 kWh</dd>" in page
    assert 'data-chart-kind="bar"' in page and "/energy/data/?" in page
    assert "export=csv" in page and "export=xlsx" in page
    # Switching the period re-renders the block only, with that period's picker.
    block = client.get(
        reverse("sites:energy", args=[site.pk]),
        {"device": "site", "period": "year", "year": "2025", "month": "2025-04"},
        headers={"HX-Request": "true", "HX-Target": "site-energy"},
    ).content.decode()
    assert block.lstrip().startswith('<div id="site-energy"')
    assert 'type="number" name="year"' in block and "year=2025" in block
    assert '<input type="hidden" name="month" value="2025-01">' in block


def test_bad_energy_input_is_refused_with_a_reason(client_for, tenants, site):
    foreign = add_inverter(SiteFactory(company=tenants.nordlicht), "FOREIGN")
    client = client_for(tenants.helios_admin)
    cases = {
        "foreign inverter": {"device": foreign.pk, "period": "month"},
        "unknown period": {"period": "week"},
        "bad month": {"period": "month", "month": "2026-13"},
        "month as text": {"period": "month", "month": "soon"},
        "bad day": {"period": "day", "day": "2026-02-30"},
        "old year": {"period": "year", "year": "1800"},
        "empty day": {"period": "day", "day": ""},
    }
    for name, query in cases.items():
        response = data(client, site, **query)
        assert response.status_code == 400, name
        assert response.json()["error"], name
        url = f"{reverse('sites:energy', args=[site.pk])}?{urlencode({**query, 'export': 'csv'})}"
        assert client.get(url).status_code == 400, name
    page = client.get(
        reverse("sites:energy", args=[site.pk]), {"period": "month", "month": "2026-13"}
    ).content.decode()
    assert "Enter a month as YYYY-MM." in page and "data-chart-url" not in page
    url = f"{reverse('sites:energy', args=[site.pk])}?export=pdf"
    assert client.get(url).status_code == 400


def test_energy_queries_stay_constant_as_data_grows(client_for, tenants, site):
    a = add_inverter(site, "INV-A")
    client = client_for(tenants.owner)
    query = {"device": "site", "period": "month", "month": "2026-02"}
    inverter_query = {**query, "device": a.pk}
    tab = reverse("sites:energy", args=[site.pk])

    def counts():
        data(client, site, **query)  # warm caches
        out = []
        for target in (
            lambda: data(client, site, **query),
            lambda: data(client, site, **inverter_query),
            lambda: client.get(tab, query),
        ):
            with CaptureQueriesContext(connection) as queries:
                assert target().status_code == 200
            out.append(len(queries))
        return out

    before = counts()
    for i in range(4):
        add_inverter(site, f"INV-{i}")
    for day in range(1, 29):
        SiteEnergyDailyFactory(site=site, day=dt.date(2026, 2, day), pv_kwh=1)
        EnergyDailyFactory(inverter=a, day=dt.date(2026, 2, day), pv_kwh=1)
    assert counts() == before


@pytest.mark.matrix("sites:energy")
def test_energy_tab_matrix(tenants, client_for, site):
    assert_matrix(tenants, client_for, reverse("sites:energy", args=[site.pk]), Expect(owner=200))


@pytest.mark.matrix("sites:energy")
def test_energy_download_matrix(tenants, client_for, site):
    url = f"{reverse('sites:energy', args=[site.pk])}?period=month&month=2026-02&export=csv"
    assert_matrix(tenants, client_for, url, Expect(owner=200))


@pytest.mark.matrix("sites:energy_data")
def test_energy_data_matrix(tenants, client_for, site):
    url = f"{reverse('sites:energy_data', args=[site.pk])}?period=month&month=2026-02"
    assert_matrix(tenants, client_for, url, Expect(owner=200))
