"""An inverter's read-only tabs (guide §6.4.2.1–§6.4.2.5) and Power On/Off: Details with the
inversion information, Chart, Energy, Alarm and Data with their endpoints and downloads; bad
input; what owners and foreign tenants get; the permission matrix of every URL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from alarms.models import AlarmLevel
from inverters.models import EnergyDaily, Inverter, InverterLatest, InverterStatus
from maintenance.models import OperationKind, OperationState, RemoteOperation
from maintenance.tasks import sweep_operations
from tests.browser import CHROMIUM, PASSWORD, sign_in
from tests.factories import (
    AlarmFactory,
    EnergyDailyFactory,
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteFactory,
)
from tests.fleet_helpers import ROME, TH, granted_site  # noqa: F401 - the fixture `site`
from tests.inverter_page_helpers import (
    bulk_samples,
    reporting_inverter,  # noqa: F401 - the fixture `inverter`
    store_samples,
    url,
)
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.permission_matrix import Expect, assert_matrix
from tests.services import needs_mosquitto
from tests.upgrade_task_helpers import make_release
from ui.charts import MAX_POINTS
from upgrades import task_services
from upgrades.models import (
    DeviceKind,
    FirmwareType,
    TargetState,
    TaskState,
    UpgradeTarget,
    UpgradeTask,
)

pytestmark = pytest.mark.django_db

VIEW = Expect(admin=200, om=200, owner=200)
OPERATE = Expect(admin=200, om=200, owner=403)
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "action-dialog"}
HTMX_TAB = {"HX-Request": "true", "HX-Target": "tab-panel"}
SIM_GATEWAY = "GWINVTAB01"
SIM_INVERTER = "GWINVTAB01I1"


def rome_today() -> dt.date:
    return timezone.now().astimezone(ROME).date()


def body(response) -> bytes:
    return b"".join(response.streaming_content)


# --- Permission matrix --------------------------------------------------------------------------


@pytest.mark.matrix("inverters:detail")
def test_matrix_details(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("detail", inverter.pk), VIEW)


@pytest.mark.matrix("inverters:power")
def test_matrix_power(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("power", inverter.pk) + "?on=0", OPERATE)
    assert_matrix(
        tenants,
        client_for,
        url("power", inverter.pk),
        Expect(admin=302, om=302, owner=403),
        method="post",
        data={"on": "1"},
    )


@pytest.mark.matrix("inverters:chart")
def test_matrix_chart(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("chart", inverter.pk), VIEW)


@pytest.mark.matrix("inverters:chart_data")
def test_matrix_chart_data(tenants, client_for, inverter):
    day = rome_today().isoformat()
    query = f"?inverter={inverter.pk}&points=pv_power&start={day}&end={day}"
    assert_matrix(tenants, client_for, url("chart_data", inverter.pk) + query, VIEW)


@pytest.mark.matrix("inverters:energy")
def test_matrix_energy(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("energy", inverter.pk), VIEW)


@pytest.mark.matrix("inverters:energy_data")
def test_matrix_energy_data(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("energy_data", inverter.pk) + "?period=year", VIEW)


@pytest.mark.matrix("inverters:alarm")
def test_matrix_alarm(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("alarm", inverter.pk), VIEW)


@pytest.mark.matrix("inverters:data")
def test_matrix_data(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("data", inverter.pk), VIEW)


# --- Details (§6.4.2.1) -------------------------------------------------------------------------


def test_details_show_the_inversion_information_in_sections(tenants, client_for, inverter):
    html = client_for(tenants.owner).get(url("detail", inverter.pk)).content.decode()
    for text in (
        "Roof east",
        "INV-TH-0001",
        ">Running<",
        "Inversion information",
        "Battery",
        "Batt_SOC",
        "81 %",
        "26.8 °C",
        "402.5 V",
        "50.02 Hz",
        "612.3 V",
        "Running (on-grid)",
        "1,234.5 kWh",
        "Warn0070",
        "DSP: 01.90.06",
    ):
        assert text in html, text
    # Owners get no Power On/Off.
    assert url("power", inverter.pk) not in html


def test_details_without_values_say_why(tenants, client_for, site):
    inverter = InverterFactory(gateway=GatewayFactory(site=site), serial_number="INV-NEW")
    html = client_for(tenants.sunfix_om).get(url("detail", inverter.pk)).content.decode()
    assert "No values yet" in html


def test_a_tab_switch_swaps_only_the_panel(tenants, client_for, inverter):
    response = client_for(tenants.sunfix_om).get(url("detail", inverter.pk), headers=HTMX_TAB)
    html = response.content.decode()
    assert 'id="tab-panel"' in html and "<html" not in html and "Batt_SOC" in html


# --- Power On/Off ---------------------------------------------------------------------------------


def test_power_off_asks_first_then_records_one_operation(tenants, client_for, inverter):
    client = client_for(tenants.sunfix_om)
    details = client.get(url("detail", inverter.pk)).content.decode()
    assert url("power", inverter.pk) + "?on=0" in details
    dialog = client.get(url("power", inverter.pk) + "?on=0", headers=HTMX_DIALOG).content.decode()
    assert "Switch the inverter INV-TH-0001 off?" in dialog and "<html" not in dialog
    assert not RemoteOperation.objects.exists()  # asking sends nothing
    response = client.post(url("power", inverter.pk), {"on": "0"})
    assert response.status_code == 302 and response["Location"] == url("detail", inverter.pk)
    operation = RemoteOperation.objects.get()
    assert operation.kind == OperationKind.POWER and operation.state == OperationState.QUEUED
    assert operation.user == tenants.sunfix_om
    details = client.get(url("detail", inverter.pk)).content.decode()
    assert "Power off" in details and "Queued" in details
    assert f'hx-get="/maintenance/operations/{operation.pk}/state/"' in details  # it polls


def test_an_unanswered_power_command_ends_expired_with_a_message(
    tenants, client_for, inverter, settings
):
    settings.REMOTE_OPERATION_DEADLINE_S = 1
    client = client_for(tenants.sunfix_om)
    client.post(url("power", inverter.pk), {"on": "1"})
    operation = RemoteOperation.objects.get()
    RemoteOperation.objects.filter(pk=operation.pk).update(
        deadline=timezone.now() - dt.timedelta(seconds=1)
    )
    sweep_operations()
    details = client.get(url("detail", inverter.pk)).content.decode()
    assert "Expired" in details and "offline until the deadline" in details
    assert f'hx-get="/maintenance/operations/{operation.pk}/state/"' not in details  # stopped


def test_bad_power_requests_are_refused_and_send_nothing(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    unknown = InverterFactory(gateway=GatewayFactory(site=site), model="XYZ-1")
    assert client.post(url("power", unknown.pk), {"on": "0"}).status_code == 400
    inverter = InverterFactory(gateway=GatewayFactory(site=site))
    assert client.post(url("power", inverter.pk), {"on": "maybe"}).status_code == 400
    assert client.get(url("power", inverter.pk) + "?on=2").status_code == 400
    assert not RemoteOperation.objects.exists()


# --- Chart (§6.4.2.2) ---------------------------------------------------------------------------


def test_the_chart_tab_offers_the_guides_settings(tenants, client_for, inverter):
    html = client_for(tenants.owner).get(url("chart", inverter.pk)).content.decode()
    for text in ("Simplified", "Detailed", "Dimension", "Time interval", "Refresh interval"):
        assert text in html, text
    for category in ("Generation", "Temperature", "Power", "AC", "DC"):
        assert f">{category}</label>" in html, category
    assert url("chart_data", inverter.pk) + f"?inverter={inverter.pk}&amp;points=pv_power" in html


def test_each_category_draws_its_points(tenants, client_for, inverter):
    client = client_for(tenants.sunfix_om)
    html = client.get(url("chart", inverter.pk) + "?category=temperature").content.decode()
    assert "points=temp_inverter&amp;points=temp_heatsink" in html
    detailed = client.get(
        url("chart", inverter.pk) + "?chart=1&style=detailed&points=batt_soc&dimension=week"
        "&interval=900&refresh=60&day=2026-03-01"
    ).content.decode()
    assert "points=batt_soc&amp;start=2026-03-01&amp;end=2026-03-07&amp;interval=900" in detailed
    assert 'hx-trigger="every 60s"' in detailed


def test_chart_data_is_downsampled_to_the_limit_and_averaged_per_interval(
    tenants, client_for, inverter
):
    start = dt.datetime.combine(rome_today(), dt.time(), ROME)
    bulk_samples(inverter, start, 8000, step_s=10)
    day = rome_today().isoformat()
    base = f"{url('chart_data', inverter.pk)}?inverter={inverter.pk}&start={day}&end={day}"
    client = client_for(tenants.owner)
    raw = json.loads(client.get(f"{base}&points=pv_power&points=batt_soc").content)
    assert 2 < len(raw["x"]) <= MAX_POINTS
    assert [s["label"] for s in raw["series"]] == ["PV_Power", "Batt_SOC"]
    assert raw["series"][0]["unit"] == "kW" and raw["tz"] == "Europe/Rome"
    assert max(raw["series"][1]["values"]) == 99  # the extremes survive
    hourly = json.loads(client.get(f"{base}&points=batt_soc&interval=3600").content)
    assert len(hourly["x"]) == 23 and all(x % 3600 == 0 for x in hourly["x"])


@pytest.mark.parametrize(
    "query",
    [
        "points=nonsense&start={d}&end={d}",
        "points=pv_power&start={d}&end=2000-01-01",
        "points=pv_power&start=2020-01-01&end=2020-02-01",
        "points=pv_power&start={d}&end={d}&interval=7",
        "points=pv_power&start=yesterday&end={d}",
    ],
)
def test_bad_chart_requests_are_400_with_a_reason(tenants, client_for, inverter, query):
    day = rome_today().isoformat()
    query = query.format(d=day)
    response = client_for(tenants.sunfix_om).get(
        f"{url('chart_data', inverter.pk)}?inverter={inverter.pk}&{query}"
    )
    assert response.status_code == 400 and json.loads(response.content)["error"]


def test_bad_chart_settings_fall_back_to_defaults(tenants, client_for, inverter):
    response = client_for(tenants.sunfix_om).get(
        url("chart", inverter.pk) + "?style=x&dimension=year&day=31.02.&interval=5&refresh=1"
    )
    assert (
        response.status_code == 200 and url("chart_data", inverter.pk) in response.content.decode()
    )


# --- Energy (§6.4.2.3) --------------------------------------------------------------------------


def test_energy_shows_and_downloads_the_inverters_bars(tenants, client_for, inverter):
    today = rome_today()
    EnergyDailyFactory(inverter=inverter, day=today.replace(day=1), pv_kwh=12.5, load_kwh=4)
    client = client_for(tenants.owner)
    month = f"{today:%Y-%m}"
    html = client.get(url("energy", inverter.pk) + f"?period=month&month={month}").content.decode()
    assert "12.5 kWh" in html and url("energy_data", inverter.pk) in html
    data = json.loads(
        client.get(url("energy_data", inverter.pk) + f"?period=month&month={month}").content
    )
    assert data["series"][0]["values"][0] == 12.5
    response = client.get(url("energy", inverter.pk) + f"?period=month&month={month}&export=csv")
    rows = list(csv.reader(io.StringIO(body(response).decode("utf-8-sig"))))
    assert rows[0][:2] == ["Date", "PV yield (kWh)"] and rows[1][1] == "12.5"
    assert "inv-th-0001-energy" in response["Content-Disposition"]
    year = client.get(url("energy", inverter.pk) + f"?period=year&year={today.year}&export=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(body(year))).active
    assert sheet.cell(row=1 + today.month if today.day == 1 else 2, column=1).value


def test_bad_energy_requests_are_refused(tenants, client_for, inverter):
    client = client_for(tenants.sunfix_om)
    assert (
        client.get(url("energy_data", inverter.pk) + "?period=month&month=13-2020").status_code
        == 400
    )
    assert client.get(url("energy", inverter.pk) + "?period=decade").status_code == 200
    assert client.get(url("energy", inverter.pk) + "?export=pdf").status_code == 400


# --- Alarm (§6.4.2.4) ---------------------------------------------------------------------------


def test_the_alarm_tab_lists_this_inverters_alarms_by_level_and_downloads(
    tenants, client_for, site, inverter
):
    other = InverterFactory(gateway=GatewayFactory(site=site), serial_number="INV-OTHER")
    AlarmFactory(
        inverter=inverter, code="Protect0080", level=AlarmLevel.URGENT, message="Grid overvoltage"
    )
    AlarmFactory(inverter=inverter, code="Warn0070", level=AlarmLevel.PROMPT, message="Fan warning")
    AlarmFactory(inverter=other, code="Warn0071", level=AlarmLevel.PROMPT, message="Other device")
    client = client_for(tenants.owner)
    html = client.get(url("alarm", inverter.pk)).content.decode()
    assert "Protect0080" in html and "Warn0070" in html and "Warn0071" not in html
    urgent = client.get(url("alarm", inverter.pk) + "?level=urgent").content.decode()
    assert "Protect0080" in urgent and "Warn0070" not in urgent
    response = client.get(url("alarm", inverter.pk) + "?level=urgent&export=csv")
    rows = list(csv.reader(io.StringIO(body(response).decode("utf-8-sig"))))
    assert len(rows) == 2 and "Protect0080" in rows[1]


# --- Data (§6.4.2.5) ----------------------------------------------------------------------------


def test_data_lists_every_point_with_units_newest_first_in_the_users_zone(
    tenants, client_for, inverter
):
    tenants.owner.time_zone = "Asia/Karachi"
    tenants.owner.save()
    start = dt.datetime(2026, 3, 6, 10, 0, tzinfo=dt.UTC)
    store_samples(inverter, start, 3)
    client = client_for(tenants.owner)
    query = "?start=2026-03-06T15:00&end=2026-03-06T16:00"
    html = client.get(url("data", inverter.pk) + query).content.decode()
    for header in (
        "Batt_SOC(%)",
        "Batt_SOH(%)",
        "DchgLimitCurr(A)",
        "ChgLimitCurr(A)",
        "Batt_Temp(°C)",
    ):
        assert header in html, header
    assert html.index("2026-03-06 15:02:00+05:00") < html.index("2026-03-06 15:00:00+05:00")
    assert "120 A" in html and "26.8 °C" in html and "3 samples" in html
    group = client.get(url("data", inverter.pk) + query + "&group=Battery+Info").content.decode()
    assert "Batt_SOC(%)" in group and "PV_Power(W)" not in group


def test_data_pages_and_streams_csv_and_xlsx(tenants, client_for, inverter):
    start = dt.datetime.combine(rome_today(), dt.time(), ROME) - dt.timedelta(days=1)
    bulk_samples(inverter, start, 130, step_s=60)
    client = client_for(tenants.sunfix_om)
    local = timezone.localtime(start, ZoneInfo(tenants.sunfix_om.time_zone or "UTC"))
    query = f"?start={local:%Y-%m-%dT%H:%M}&end={(local + dt.timedelta(hours=3)):%Y-%m-%dT%H:%M}"
    first = client.get(url("data", inverter.pk) + query).content.decode()
    assert "1–50 of 130 samples" in first and "Page 1 of 3" in first
    third = client.get(url("data", inverter.pk) + query + "&page=3").content.decode()
    assert "101–130 of 130 samples" in third
    response = client.get(url("data", inverter.pk) + query + "&export=csv")
    assert response.streaming
    rows = list(csv.reader(io.StringIO(body(response).decode("utf-8-sig"))))
    assert rows[0][0] == "Time" and "PV_Power(W)" in rows[0] and len(rows) == 131
    response = client.get(url("data", inverter.pk) + query + "&export=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(body(response))).active
    assert sheet.max_row == 131


@pytest.mark.parametrize(
    "query",
    [
        "?start=2026-03-06T15:00&end=2026-03-06T14:00",
        "?start=2026-01-01T00:00&end=2026-03-01T00:00",
        "?start=soon&end=later",
        "?start=2026-03-06T15:00&end=2026-03-06T16:00&group=Nope",
    ],
)
def test_bad_data_ranges_are_refused_on_the_form(tenants, client_for, inverter, query):
    client = client_for(tenants.sunfix_om)
    response = client.get(url("data", inverter.pk) + query)
    assert response.status_code == 200
    assert (
        "is-invalid" in response.content.decode()
        or "Select a valid choice" in response.content.decode()
    )
    assert client.get(url("data", inverter.pk) + query + "&export=csv").status_code == 400


# --- On a simulated inverter, in the browser ------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    from tests.services import Mosquitto

    mosquitto = Mosquitto(tmp_path_factory.mktemp("inverter-broker")).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="module")
def worker(django_db_setup, broker, tmp_path_factory):
    from tests.device_rig import start_worker, stop_process

    queue = f"inverter-tabs-{uuid.uuid4().hex[:8]}"
    proc = start_worker(queue, broker.url, tmp_path_factory.mktemp("worker") / "worker.log")
    yield SimpleNamespace(queue=queue, proc=proc)
    stop_process(proc)


@pytest.fixture
def rig(tenants, broker, worker, settings):
    """SunFix's site in Rome with one simulated gateway and ECH10K inverter, online, granted
    to the owner; the inverter's page has a day of samples, a month of energy and alarms."""
    from gateways.models import GatewayStatus
    from maintenance.dispatch import close_reply_waiter
    from simulator.clock import SimClock
    from simulator.environment import Site as SimSite
    from simulator.fleet import FleetThread
    from simulator.sources import GatewaySpec, InverterSpec
    from tests.device_rig import gateway_status, tasks_to, yesterday_noon_in_rome
    from tests.ingest_helpers import running_ingest
    from tests.services import wait_for

    settings.MQTT_URL = broker.url
    site = SiteFactory(company=tenants.sunfix, name="Casa Sole", time_zone="Europe/Rome")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    gateway = GatewayFactory(serial_number=SIM_GATEWAY, site=site, upload_interval_s=3600)
    inverter = InverterFactory(
        serial_number=SIM_INVERTER,
        name="Roof east",
        model=TH,
        gateway=gateway,
        firmware_versions={"DSP": "01.90.06", "LCD": "01.56"},
    )
    spec = GatewaySpec(
        serial=SIM_GATEWAY,
        inverters=(InverterSpec(SIM_INVERTER, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(45.46, 9.19, "Europe/Rome"),
    )
    clock = SimClock(speed=0, start=yesterday_noon_in_rome())
    with (
        tasks_to(worker.queue),
        running_ingest(broker.broker, client_id=f"inv-ingest-{uuid.uuid4().hex[:6]}"),
        FleetThread([spec], mqtt_url=broker.url, clock=clock) as sim,
    ):
        wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 15, "gateway online")
        sim.call(sim.fleet.gateway(SIM_GATEWAY).upload, clock.now())
        wait_for(
            lambda: InverterLatest.objects.filter(inverter=inverter).exists(), 15, "first upload"
        )
        try:
            yield SimpleNamespace(t=tenants, site=site, inverter=inverter, sim=sim, clock=clock)
        finally:
            close_reply_waiter()


def power_switch(rig) -> str:
    return rig.sim.call(lambda: rig.sim.fleet.inverter(SIM_INVERTER).settings())["power_switch"]


@pytest.mark.browser
@needs_mosquitto
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_om_engineer_powers_a_simulated_inverter_off_and_on_and_reads_every_tab(rig, page, shots):
    from tests.services import wait_for

    inverter = rig.inverter
    today = rome_today()
    midnight = dt.datetime.combine(today, dt.time(), ROME)
    minutes = int((timezone.now() - midnight).total_seconds() // 60)
    bulk_samples(inverter, midnight, minutes, step_s=60)
    for day in range(1, today.day + 1):
        EnergyDaily.objects.update_or_create(
            inverter=inverter,
            day=today.replace(day=day),
            defaults={
                "company": inverter.company,
                "site": inverter.site,
                "pv_kwh": 18 + day % 7,
                "load_kwh": 9 + day % 3,
                "export_kwh": 6 + day % 4,
                "import_kwh": 2,
            },
        )
    AlarmFactory(inverter=inverter, code="Protect0080", level=AlarmLevel.URGENT)
    AlarmFactory(inverter=inverter, code="Warn0070", level=AlarmLevel.PROMPT)
    barn = SiteFactory(company=rig.t.sunfix, name="Barn", time_zone="Europe/Rome")
    for serial, name, model, status, power in (
        ("INV-SML-0002", "Barn west", "ECH6K-SML-EU", InverterStatus.FAULT, 25.0),
        ("INV-TH-0003", "Hybrid 3", "ECH20K-TH-EU", InverterStatus.STANDBY, 0.0),
        ("INV-TH-0004", "", "ECH10K-TH-EU", InverterStatus.UNKNOWN, None),
    ):
        other = InverterFactory(
            gateway=GatewayFactory(site=barn, serial_number=f"GW-{serial}"),
            serial_number=serial,
            name=name,
            model=model,
            status=status,
            firmware_versions={"DSP": "00.06.07", "LCD": "00.35"},
        )
        if power is not None:
            InverterLatestFactory(inverter=other, pv_power=power)
    om = rig.t.sunfix_om
    om.set_password(PASSWORD)
    om.time_zone = "Europe/Rome"
    om.save()
    sign_in(page, om.email)

    page.goto(url("list"))
    page.wait_for_selector(f"text={SIM_INVERTER}")
    assert page.locator("#inverter-table tbody tr").count() == 4
    page.screenshot(path=shots / "inverter-list.png")

    page.get_by_role("link", name="Roof east").click()
    page.wait_for_selector("text=Inversion information")
    assert page.is_visible("text=Batt_SOC")
    page.screenshot(path=shots / "inverter-details.png")

    page.get_by_role("link", name="Power off").click()
    page.wait_for_selector("#action-dialog >> text=Switch the inverter")
    page.click("#action-dialog button[type=submit]")
    page.wait_for_selector(".operation-state >> text=Succeeded", timeout=30_000)
    assert power_switch(rig) == "off"
    # The inverter's next upload says it is off: the page shows it.
    rig.clock.advance(60)
    rig.sim.call(rig.sim.fleet.gateway(SIM_GATEWAY).upload, rig.clock.now())
    wait_for(
        lambda: Inverter.objects.get(pk=inverter.pk).status == InverterStatus.STANDBY,
        15,
        "standby",
    )
    page.reload()
    page.wait_for_selector("text=Powered off")
    page.screenshot(path=shots / "inverter-power.png")
    page.get_by_role("link", name="Power on").click()
    page.wait_for_selector("#action-dialog >> text=Switch the inverter")
    page.click("#action-dialog button[type=submit]")
    page.wait_for_selector(".operation-state >> text=Succeeded", timeout=30_000)
    wait_for(lambda: power_switch(rig) == "on", 5, "switched on")
    page.goto(url("detail", inverter.pk))  # the success message has been read

    for tab, ready, shot in (
        ("Chart", "#chart-figure .uplot", "inverter-chart.png"),
        ("Energy", "#inverter-energy .uplot", "inverter-energy.png"),
        ("Alarm", "text=Protect0080", "inverter-alarm.png"),
        ("Data", "text=Batt_SOC(%)", "inverter-data.png"),
    ):
        page.click(f"#tab-panel-{tab.lower()}")
        page.wait_for_selector(ready, timeout=15_000)
        page.screenshot(path=shots / shot)
    # The Chart's detailed style: any measurement points.
    page.click("#tab-panel-chart")
    page.wait_for_selector("#chart-figure .uplot")
    page.click("label[for=chart-style-detailed]")
    page.wait_for_selector("#chart-point-batt_soc")
    page.check("#chart-point-batt_soc")
    page.wait_for_selector(".mc-chart .uplot >> text=Batt_SOC")


# --- Upgrade (§6.4.2.10, figure 6-63) -------------------------------------------------------------


def test_the_upgrade_dialog_offers_the_models_boards_and_creates_a_task(
    tenants, client_for, inverter
):
    lcd = make_release(DeviceKind.INVERTER, FirmwareType.LCD, "02.10", (TH,))
    make_release(DeviceKind.INVERTER, FirmwareType.DSP, "01.95", (TH,))
    make_release(DeviceKind.INVERTER, FirmwareType.LCD, "09.99", ("ECH6K-SML-EU",))
    client = client_for(tenants.sunfix_om)
    tab = client.get(url("upgrade", inverter.pk)).content.decode()
    dialog_url = url("upgrade_task", inverter.pk)
    assert dialog_url in tab
    dialog = client.get(dialog_url, {"type": "lcd"}, headers=HTMX_DIALOG).content.decode()
    for label in ("LCD", "DSP", "Slave DSP", "ARC"):
        assert f">{label}</a>" in dialog, label
    assert "Trip Board" not in dialog
    assert "ECH10K-TH-EU--02.10" in dialog and "01.95" not in dialog and "09.99" not in dialog
    assert "runs LCD 01.56" in dialog
    when = timezone.localtime() + dt.timedelta(hours=3)
    response = client.post(
        dialog_url,
        {
            "type": "lcd",
            "release": lcd.pk,
            "reservation": "yes",
            "time": when.strftime("%Y-%m-%dT%H:%M"),
        },
    )
    task = UpgradeTask.objects.get()
    assert response.status_code == 302 and str(task.pk) in response["Location"]
    assert task.state == TaskState.SCHEDULED and task.firmware_type == "lcd"
    target = task.targets.get()
    assert target.inverter == inverter and target.from_version == "01.56"
    # A past time is refused on the dialog, and nothing more is created.
    past = (timezone.localtime() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    refused = client.post(
        dialog_url, {"type": "lcd", "release": lcd.pk, "reservation": "yes", "time": past}
    )
    assert "The reserved time must be in the future." in refused.content.decode()
    assert UpgradeTask.objects.count() == 1


def test_the_upgrade_tab_lists_the_inverters_tasks_with_creator_and_filters(
    tenants, client_for, inverter
):
    dsp = make_release(DeviceKind.INVERTER, FirmwareType.DSP, "01.95", (TH,))
    task = task_services.create_task(
        tenants.sunfix_om,
        kind=DeviceKind.INVERTER,
        release=dsp,
        model=TH,
        firmware_type=FirmwareType.DSP,
        devices=[inverter],
    )
    UpgradeTarget.objects.filter(task=task).update(
        state=TargetState.FAILED, reason="image rejected", finished_at=timezone.now()
    )
    client = client_for(tenants.sunfix_om)
    html = client.get(url("upgrade", inverter.pk)).content.decode()
    for text in ("Creator", "SunFix O&amp;M", "01.90.06", "01.95", "Failed", "image rejected"):
        assert text in html, text
    assert inverter.gateway.serial_number in html
    none = client.get(url("upgrade", inverter.pk), {"type": "LCD"}).content.decode()
    assert "image rejected" not in none
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    later = client.get(url("upgrade", inverter.pk), {"start": tomorrow}).content.decode()
    assert "image rejected" not in later
    # Owners see the history but no Upgrade.
    owner = client_for(tenants.owner).get(url("upgrade", inverter.pk)).content.decode()
    assert url("upgrade_task", inverter.pk) not in owner


@pytest.mark.matrix("inverters:upgrade_task")
def test_permission_matrix_of_the_upgrade_dialog(tenants, client_for, inverter):
    dsp = make_release(DeviceKind.INVERTER, FirmwareType.DSP, "01.95", (TH,))
    assert_matrix(tenants, client_for, url("upgrade_task", inverter.pk), Expect())
    assert_matrix(
        tenants,
        client_for,
        url("upgrade_task", inverter.pk),
        Expect(admin=302, om=302),
        method="post",
        data={"type": "dsp", "release": dsp.pk, "reservation": "no"},
    )
