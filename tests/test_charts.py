"""Charts (ui/charts.py, static/js/charts.js) and a site's Chart tab (guide §6.2.3): model →
serial number → measurement points over a few local days, read from the raw samples of one
inverter and downsampled to at most 2,000 points."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from devices.decoding import codec_for_model
from inverters.telemetry import Sample, ensure_partitions, layout_id_for
from tests.browser import CHROMIUM, sign_in
from tests.factories import (
    SiteEnergyDailyFactory,
    SiteEnergyMonthlyFactory,
    SiteFactory,
)
from tests.fleet_helpers import (
    ROME,
    TH,
    add_inverter,
    granted_site,  # noqa: F401 - the fixture `site`
)
from tests.permission_matrix import Expect, assert_matrix
from ui.charts import MAX_POINTS, chart_json, downsample

pytestmark = pytest.mark.django_db

SML = "ECH6K-SML-EU"


# ---------------------------------------------------------------------------------------------
# ui.charts


def test_chart_json_has_the_documented_shape():
    response = chart_json(
        [1, 2],
        [{"label": "PV", "unit": "kW", "values": [1.23456, None]}],
        x_kind="time",
        tz="Europe/Rome",
    )
    assert json.loads(response.content) == {
        "x": [1, 2],
        "x_kind": "time",
        "series": [{"label": "PV", "unit": "kW", "values": [1.235, None]}],
        "tz": "Europe/Rome",
    }
    with pytest.raises(ValueError, match="downsample"):
        chart_json(list(range(MAX_POINTS + 1)), [], x_kind="time")
    with pytest.raises(ValueError):
        chart_json([1, 2], [{"label": "PV", "unit": "", "values": [1]}], x_kind="time")


def test_downsampling_keeps_extremes_and_the_limit():
    rows = [(float(i), float(i % 100), float(-i)) for i in range(50_000)]
    rows[31_337] = (31_337.0, 9_999.0, -31_337.0)  # a one-sample spike
    out = downsample(rows, 2000)
    assert len(out) <= 2000
    xs = [r[0] for r in out]
    assert xs == sorted(xs) and xs[0] == 0.0 and xs[-1] == 49_999.0
    assert max(r[1] for r in out) == 9_999.0  # the spike survives
    assert min(r[2] for r in out) == -49_999.0
    assert downsample(rows[:10]) == rows[:10]  # small series are untouched


def test_downsampling_breaks_the_line_over_gaps():
    rows = [(float(t), 1.0) for t in range(0, 600, 60)] + [(7200.0, 2.0), (7260.0, 2.0)]
    out = downsample(rows, 2000, gap=300)
    assert (None,) == out[10][1:] and out[9][0] < out[10][0] < out[11][0]
    # Many gaps and many rows: still within the limit.
    dense = [(float(t), 1.0) for t in range(0, 10_000) if t % 7]
    assert len(downsample(dense, 500, gap=0.5)) <= 500


# ---------------------------------------------------------------------------------------------
# The Chart tab


def store_samples(inverter, start: dt.datetime, count: int, step_s: int, **values) -> None:
    """`count` samples every `step_s` from `start`; values are callables of the index."""
    codec = codec_for_model(inverter.model)
    layout = layout_id_for(codec)
    rest = codec.rest_keys
    first = start.astimezone(dt.UTC).date()
    last = (start + dt.timedelta(seconds=step_s * count)).astimezone(dt.UTC).date()
    ensure_partitions(first + dt.timedelta(days=d) for d in range((last - first).days + 1))
    typed = {"pv_power", "batt_soc", "inv_temp", "load_power"}  # sample columns
    samples = []
    for i in range(count):
        vals = [None] * len(rest)
        fields = {}
        for key, make in values.items():
            if key in typed:
                fields[key] = make(i)
            else:
                vals[rest.index(key)] = make(i)
        samples.append(
            Sample(
                inverter_id=inverter.pk,
                ts=start + dt.timedelta(seconds=step_s * i),
                layout_id=layout,
                vals=vals,
                **fields,
            )
        )
    Sample.objects.bulk_create(samples, batch_size=2000)


def data_url(site, **query):
    from urllib.parse import urlencode

    return f"{reverse('sites:chart_data', args=[site.pk])}?{urlencode(query, doseq=True)}"


def test_the_chart_tab_offers_model_then_serial_then_points(client_for, tenants, site):
    a = add_inverter(site, "TH0001")
    add_inverter(site, "SML0001", model=SML)
    add_inverter(SiteFactory(company=tenants.sunfix), "ELSEWHERE")
    client = client_for(tenants.owner)
    url = reverse("sites:chart", args=[site.pk])
    page = client.get(url).content.decode()
    # The first model and its first inverter, with PV power checked.
    assert '<option value="ECH10K-TH-EU" selected>' in page
    assert f'<option value="{a.pk}" selected>TH0001</option>' in page
    assert "SML0001</option>" not in page and "ELSEWHERE" not in page
    assert 'value="pv_power" id="chart-point-pv_power" checked' in page
    assert 'value="grid_frequency"' in page  # a point stored in the compact values
    assert 'value="run_status"' not in page and 'value="fault_word' not in page
    assert 'class="mc-chart mc-chart-tall"' in page and "data-chart-url=" in page
    # Picking the other model re-renders the serial numbers (the selectors' partial only).
    swapped = client.get(
        url,
        {"chart": "1", "model": SML, "inverter": a.pk, "points": ["pv_power"]},
        headers={"HX-Request": "true", "HX-Target": "site-chart"},
    ).content.decode()
    assert swapped.lstrip().startswith('<div id="site-chart"')
    assert "SML0001</option>" in swapped and "TH0001</option>" not in swapped
    assert 'id="chart-point-pv_power" checked' in swapped
    # Points and dates re-render only the figure.
    figure = client.get(
        url,
        {"chart": "1", "model": TH, "inverter": a.pk, "points": ["pv_power", "batt_soc"]},
        headers={"HX-Request": "true", "HX-Target": "chart-figure"},
    ).content.decode()
    assert figure.lstrip().startswith('<div id="chart-figure"')
    assert "points=pv_power&amp;points=batt_soc" in figure


def test_the_chart_tab_says_what_is_wrong_with_the_range(client_for, tenants, site):
    a = add_inverter(site, "TH0001")
    client = client_for(tenants.sunfix_om)
    url = reverse("sites:chart", args=[site.pk])
    reversed_dates = client.get(
        url,
        {
            "chart": "1",
            "inverter": a.pk,
            "points": "pv_power",
            "start": "2026-03-05",
            "end": "2026-03-01",
        },
    ).content.decode()
    assert "The end date is before the start date." in reversed_dates
    assert "data-chart-url" not in reversed_dates
    too_long = client.get(
        url,
        {
            "chart": "1",
            "inverter": a.pk,
            "points": "pv_power",
            "start": "2026-03-01",
            "end": "2026-03-20",
        },
    ).content.decode()
    assert "Choose at most 7 days." in too_long
    none = client.get(url, {"chart": "1", "inverter": a.pk}).content.decode()
    assert "Choose one or more measurement points." in none
    empty_site = SiteFactory(company=tenants.sunfix)
    page = client.get(reverse("sites:chart", args=[empty_site.pk])).content.decode()
    assert "This site has no inverters yet." in page


def test_chart_data_returns_the_chosen_points_in_site_units(client_for, tenants, site):
    a = add_inverter(site, "TH0001")
    site.temperature_unit = "F"
    site.save()
    start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=ROME)
    store_samples(
        a,
        start,
        288,
        300,
        pv_power=lambda i: 1000.0 * (i % 10),
        grid_frequency=lambda i: 50.0,
        inv_temp=lambda i: 20.0,
    )
    client = client_for(tenants.owner)
    response = client.get(
        data_url(
            site,
            inverter=a.pk,
            points=["pv_power", "grid_frequency", "temp_inverter"],
            start="2026-03-02",
            end="2026-03-02",
        )
    )
    assert response.status_code == 200
    data = response.json()
    assert data["x_kind"] == "time" and data["tz"] == "Europe/Rome"
    assert len(data["x"]) == 288
    assert data["x"][0] == start.timestamp()
    assert data["x"][-1] == (start + dt.timedelta(minutes=5 * 287)).timestamp()
    pv, frequency, temperature = data["series"]
    assert (pv["label"], pv["unit"]) == ("PV_Power", "kW")
    assert pv["values"][:3] == [0.0, 1.0, 2.0]
    assert (frequency["unit"], set(frequency["values"])) == ("Hz", {50.0})
    assert (temperature["unit"], set(temperature["values"])) == ("°F", {68.0})
    # The next local day has none of these samples.
    empty = client.get(
        data_url(site, inverter=a.pk, points="pv_power", start="2026-03-03", end="2026-03-03")
    ).json()
    assert empty["x"] == [] and empty["series"][0]["values"] == []


def test_a_long_dense_range_is_downsampled_to_2000_points(client_for, tenants, site):
    a = add_inverter(site, "TH0001")
    start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=ROME)
    store_samples(a, start, 7 * 1440, 60, pv_power=lambda i: 5000.0 if i == 5000 else 100.0)
    client = client_for(tenants.helios_admin)
    data = client.get(
        data_url(site, inverter=a.pk, points="pv_power", start="2026-03-02", end="2026-03-08")
    ).json()
    assert 1000 < len(data["x"]) <= 2000
    assert data["x"] == sorted(data["x"])
    assert max(v for v in data["series"][0]["values"] if v is not None) == 5.0  # the spike


def test_chart_data_refuses_bad_input_with_400(client_for, tenants, site):
    a = add_inverter(site, "TH0001")
    foreign = add_inverter(SiteFactory(company=tenants.nordlicht), "FOREIGN1")
    other_site = add_inverter(SiteFactory(company=tenants.sunfix), "OTHER001")
    client = client_for(tenants.helios_admin)
    ok = {"inverter": a.pk, "points": "pv_power", "start": "2026-03-02", "end": "2026-03-02"}
    cases = {
        "unknown point": {**ok, "points": "no_such_point"},
        "foreign inverter": {**ok, "inverter": foreign.pk},
        "inverter of another site": {**ok, "inverter": other_site.pk},
        "reversed dates": {**ok, "start": "2026-03-05", "end": "2026-03-01"},
        "range too long": {**ok, "start": "2026-03-01", "end": "2026-03-31"},
        "not a date": {**ok, "start": "yesterday"},
        "not a number": {**ok, "inverter": "abc"},
        "no points": {key: value for key, value in ok.items() if key != "points"},
        "too many points": {
            **ok,
            "points": [
                "pv_power",
                "load_power",
                "batt_soc",
                "batt_soh",
                "batt_temp",
                "grid_frequency",
                "batt_voltage",
                "batt_current",
                "bus_voltage",
            ],
        },
    }
    for name, query in cases.items():
        response = client.get(data_url(site, **query))
        assert response.status_code == 400, name
        body = response.json()
        assert body["error"] and body["errors"], name
    assert client.get(data_url(site, **ok)).status_code == 200
    body = client.get(data_url(site, **{**ok, "start": "2026-03-05", "end": "2026-03-01"})).json()
    assert body["error"] == "To: The end date is before the start date."


def test_the_day_chart_endpoint_reads_one_partition_with_constant_queries(
    client_for, tenants, site
):
    a = add_inverter(site, "TH0001")
    start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=ROME)
    store_samples(a, start, 288, 300, pv_power=lambda i: 1.0, grid_frequency=lambda i: 50.0)
    client = client_for(tenants.owner)
    url = data_url(
        site,
        inverter=a.pk,
        points=["pv_power", "grid_frequency"],
        start="2026-03-02",
        end="2026-03-02",
    )
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    sample_queries = [q["sql"] for q in queries if "inverters_sample" in q["sql"]]
    assert len(sample_queries) == 1 and "inverter_id = " in sample_queries[0]
    count = len(queries)
    for i in range(5):
        add_inverter(site, f"TH100{i}", address=1)
    with CaptureQueriesContext(connection) as more:
        client.get(url)
    assert len(more) == count
    ensure_partitions(dt.date(2026, 2, 25) + dt.timedelta(days=d) for d in range(10))
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT ts FROM inverters_sample WHERE inverter_id = %s AND ts >= %s "
            "AND ts < %s",
            [a.pk, start, start + dt.timedelta(days=1)],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    partitions = set(re.findall(r"inverters_sample_p\d{8}", plan))
    assert len(partitions) == 2  # a local day spans two UTC days: only those are read


@pytest.mark.matrix("sites:chart")
def test_chart_tab_matrix(tenants, client_for, site):
    add_inverter(site, "TH0001")
    assert_matrix(tenants, client_for, reverse("sites:chart", args=[site.pk]), Expect(owner=200))


@pytest.mark.matrix("sites:chart_data")
def test_chart_data_matrix(tenants, client_for, site):
    a = add_inverter(site, "TH0001")
    url = data_url(site, inverter=a.pk, points="pv_power", start="2026-03-02", end="2026-03-02")
    assert_matrix(tenants, client_for, url, Expect(owner=200))


def test_an_owner_without_the_grant_gets_404(client_for, tenants):
    site = SiteFactory(company=tenants.sunfix)
    a = add_inverter(site, "TH0001")
    client = client_for(tenants.owner)
    assert client.get(reverse("sites:chart", args=[site.pk])).status_code == 404
    url = data_url(site, inverter=a.pk, points="pv_power", start="2026-03-02", end="2026-03-02")
    assert client.get(url).status_code == 404


# ---------------------------------------------------------------------------------------------
# In the browser


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_the_chart_and_energy_tabs_draw_in_the_browser(page, tenants, clean_samples, shots):
    site = SiteFactory(company=tenants.sunfix, name="Casa Sole", time_zone="Europe/Rome")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    a = add_inverter(site, "TH0001")
    today = dt.datetime.now(ROME).date()
    start = dt.datetime.combine(today, dt.time(), ROME)
    store_samples(
        a,
        start,
        288,
        300,
        pv_power=lambda i: max(0.0, 6000.0 - abs(i - 144) * 60.0),
        batt_soc=lambda i: 20 + i / 4,
        grid_frequency=lambda i: 50.0 + (i % 7) / 100,
    )
    for day in range(1, today.day + 1):
        SiteEnergyDailyFactory(
            site=site,
            day=today.replace(day=day),
            pv_kwh=20 + day,
            load_kwh=12,
            export_kwh=8,
            import_kwh=3,
        )
    SiteEnergyMonthlyFactory(site=site, month=today.replace(day=1), pv_kwh=300, load_kwh=150)
    sign_in(page, "owner@sunfix.example")

    page.goto(reverse("sites:chart", args=[site.pk]))
    page.wait_for_selector("#chart-figure .mc-chart canvas")
    legend = page.locator("#chart-figure .u-legend")
    box = page.locator("#chart-figure .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert re.search(r"\d kW", legend.inner_text())
    page.check("#chart-point-grid_frequency")
    page.wait_for_selector("#chart-figure .u-legend >> text=Grid_Freq")
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator("#chart-figure .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] / 2)
    assert re.search(r"50[.,]\d+ Hz", legend.inner_text())
    page.screenshot(path=shots / "site-chart-tab.png", full_page=True)
    page.fill("#chart-start", (today + dt.timedelta(days=1)).isoformat())
    page.dispatch_event("#chart-start", "change")
    page.wait_for_selector("#chart-figure >> text=The end date is before the start date.")

    page.goto(reverse("sites:energy", args=[site.pk]))
    page.wait_for_selector("#site-energy .mc-chart canvas")
    assert "PV yield" in page.locator("#site-energy .u-legend").inner_text()
    page.screenshot(path=shots / "site-energy-tab-month.png", full_page=True)
    page.click("label[for=energy-period-year]")
    page.wait_for_selector("#energy-year")
    page.wait_for_selector("#site-energy .mc-chart canvas")
    page.screenshot(path=shots / "site-energy-tab-year.png", full_page=True)
    page.fill("#energy-year", "2001")
    page.dispatch_event("#energy-year", "change")
    page.wait_for_selector("#site-energy >> text=No data for this period")
    # A failing endpoint says so instead of drawing nothing.
    page.route("**/energy/data/**", lambda route: route.fulfill(status=500, body="oops"))
    page.click("label[for=energy-period-total]")
    page.wait_for_selector("#site-energy >> text=The chart could not be loaded. Try again later.")
