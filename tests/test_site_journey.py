"""The installer's journey through the Site pages, in a browser, on a real simulated device:
an O&M engineer creates a site with a gateway from stock, sees its inverter's live power,
reads the Energy tab and downloads it, builds a commissioning report and opens the PDF; the
site's owner then sees that site and no other.

Everything is real: a private Mosquitto, the simulator's gateway and pymodbus inverter, ingest
in a thread, a `celery worker` on the test database (the report reads the inverter live), the
live server and Debian's Chromium. With MATRICLOUD_SCREENSHOTS=1 it writes the screenshots of
Home, the site list and every site tab to docs/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from fleet.models import CommissioningReport
from gateways.models import GatewayStatus
from inverters.models import InverterLatest
from maintenance.dispatch import close_reply_waiter
from simulator.clock import SimClock
from simulator.environment import Site as SimSite
from simulator.fleet import FleetThread
from simulator.sources import GatewaySpec, InverterSpec
from sites.models import Site
from tests.browser import pick_existing_owner, sign_in
from tests.device_rig import gateway_status, start_worker, stop_process, tasks_to
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.ingest_helpers import TH, running_ingest
from tests.services import Mosquitto, needs_mosquitto, wait_for

pytestmark = [needs_mosquitto, pytest.mark.django_db(transaction=True), pytest.mark.browser]

GATEWAY_SN = "GWJOURNEY01"
INVERTER_SN = "GWJOURNEY01I1"
NEW_YORK = ZoneInfo("America/New_York")


def yesterday_late_morning() -> float:
    """The simulated day starts at 10:00 in New York yesterday: the sun is up and the whole
    run stays inside yesterday, which the Energy tab's month shows (unless today is the 1st,
    when the test opens last month)."""
    day = (dt.datetime.now(NEW_YORK) - dt.timedelta(days=1)).date()
    return dt.datetime.combine(day, dt.time(10), NEW_YORK).timestamp()


@pytest.fixture(scope="module")
def services(django_db_setup, tmp_path_factory):
    base = tmp_path_factory.mktemp("journey")
    broker = Mosquitto(base / "broker").start()
    media = base / "media"
    queue = f"journey-{uuid.uuid4().hex[:8]}"
    worker = start_worker(queue, broker.url, base / "worker.log", MEDIA_ROOT=str(media))
    try:
        yield SimpleNamespace(broker=broker, media=media, queue=queue)
    finally:
        stop_process(worker)
        broker.stop()


@pytest.fixture
def stock_gateway(tenants, services, settings):
    """A gateway in SunFix's stock (no site) with one inverter, simulated and online; the
    simulated clock is frozen and each `upload()` sends one telemetry message."""
    settings.MQTT_URL = services.broker.url
    settings.MEDIA_ROOT = str(services.media)
    gateway = GatewayFactory(
        serial_number=GATEWAY_SN, site=None, company=tenants.sunfix, upload_interval_s=3600
    )
    InverterFactory(
        serial_number=INVERTER_SN, model=TH, gateway=gateway, site=None, company=tenants.sunfix
    )
    # Another SunFix site, which the owner is not granted.
    SiteFactory(company=tenants.sunfix, name="Lakeside Depot")
    spec = GatewaySpec(
        serial=GATEWAY_SN,
        inverters=(InverterSpec(INVERTER_SN, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(40.71, -74.0, "America/New_York"),
    )
    clock = SimClock(speed=0, start=yesterday_late_morning())
    with (
        tasks_to(services.queue),
        running_ingest(services.broker.broker, client_id=f"journey-{uuid.uuid4().hex[:6]}"),
        FleetThread([spec], mqtt_url=services.broker.url, clock=clock) as sim,
    ):
        wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 15, "gateway online")

        def upload(minutes: int = 15) -> None:
            clock.advance(minutes * 60)
            sim.call(sim.fleet.gateway(GATEWAY_SN).upload, clock.now())

        try:
            yield SimpleNamespace(gateway=gateway, sim=sim, upload=upload)
        finally:
            close_reply_waiter()


def test_om_engineer_creates_equips_and_hands_over_a_site(page, tenants, stock_gateway, shots):
    from playwright.sync_api import expect

    stock = stock_gateway
    stock.upload()  # the inverter reports before it has a site
    sign_in(page, "om@sunfix.example")

    # Create Site: the gateway from stock, the region's defaults, an existing owner.
    page.goto("/site/")
    page.click("a:has-text('Create Site')")
    dialog = page.locator("#site-create-dialog")
    dialog.locator("input[name=serial_number]").fill(GATEWAY_SN)
    dialog.locator("button:has-text('Next')").click()
    dialog.get_by_text(f"Gateway {GATEWAY_SN} will be bound to this site.").wait_for()
    dialog.locator("input[name=name]").fill("Hudson Valley Farm")
    dialog.locator("input[name=address]").fill("12 Orchard Road, Kingston NY")
    dialog.locator("select[name=country]").select_option("US")
    expect(dialog.locator("select[name=currency]")).to_have_value("USD")
    dialog.locator("input[name=capacity_kwp]").fill("12")
    dialog.locator("button:has-text('Next')").click()
    pick_existing_owner(dialog, "olivia", "owner@sunfix.example")
    dialog.locator("button:has-text('Confirm')").click()
    page.wait_for_url(re.compile(r"/site/\d+/$"))
    site = Site.objects.get(name="Hudson Valley Farm")
    assert site.time_zone == "America/New_York" and site.currency == "USD"

    # Its inverter appears with live power once the next uploads are filed under the site.
    stock.sim.inject_fault(INVERTER_SN, "Protect0080")
    for _ in range(4):
        stock.upload()
    wait_for(
        lambda: InverterLatest.objects.filter(site=site, pv_power__gt=0).exists(),
        20,
        "live power filed under the new site",
    )
    page.goto(f"/site/{site.pk}/?devices=inverters")
    row = page.locator("table tr", has_text=INVERTER_SN)
    expect(row).to_contain_text(re.compile(r"\d+(\.\d+)? k?W"))
    page.screenshot(path=shots / "site-overview.png")

    # Energy: yesterday's bar, and the CSV of the month.
    yesterday = (dt.datetime.now(NEW_YORK) - dt.timedelta(days=1)).date()
    page.goto(f"/site/{site.pk}/energy/?period=month&date={yesterday:%Y-%m-%d}")
    page.locator(".mc-chart canvas").first.wait_for()
    page.screenshot(path=shots / "site-energy.png")
    page.get_by_role("button", name="Download").click()
    with page.expect_download() as download_info:
        page.locator(".dropdown-menu a", has_text="CSV").click()
    csv_text = download_info.value.path().read_text(encoding="utf-8-sig")
    yesterday_rows = [line for line in csv_text.splitlines() if f"{yesterday:%Y-%m-%d}" in line]
    assert yesterday_rows, csv_text
    assert re.search(r"[1-9]", yesterday_rows[0].split(",", 1)[1]), yesterday_rows

    # Chart, Alarm and Settings tabs.
    inverter = site.inverters.get()
    page.goto(
        f"/site/{site.pk}/chart/?model={TH}&inverter={inverter.pk}&points=pv_power"
        f"&points=batt_soc&start={yesterday:%Y-%m-%d}&end={yesterday:%Y-%m-%d}"
    )
    page.locator(".mc-chart canvas").first.wait_for()
    page.screenshot(path=shots / "site-chart.png")
    page.goto(f"/site/{site.pk}/alarm/")
    page.locator("table", has_text="Protect0080").wait_for()
    page.screenshot(path=shots / "site-alarm.png")
    page.goto(f"/site/{site.pk}/settings/")
    page.locator("#inverter-list a", has_text=INVERTER_SN).click()
    page.locator("#parameter-table table").wait_for()
    page.screenshot(path=shots / "site-settings.png")

    # Commissioning (a North-American site): the report reads the inverter live.
    page.goto(f"/site/{site.pk}/commissioning/")
    page.locator(".card-header").get_by_role("link", name="Create").click()
    report_dialog = page.locator("#commissioning-dialog")
    report_dialog.get_by_label("Report name").fill("Handover Hudson Valley")
    report_dialog.get_by_role("button", name="Confirm").click()
    link = page.locator("#commissioning-reports").get_by_role("link", name="Handover Hudson Valley")
    link.wait_for(timeout=90_000)
    page.screenshot(path=shots / "site-commissioning.png")
    pdf = page.request.get(link.get_attribute("href"))
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    assert CommissioningReport.objects.get(site=site).status == "finished"

    # Home and the site list, with the new site among the others.
    page.goto("/")
    page.locator("#home-live").wait_for()
    page.screenshot(path=shots / "home.png")
    page.goto("/site/")
    page.locator("table", has_text="Hudson Valley Farm").wait_for()
    page.screenshot(path=shots / "site-list.png")

    # The owner sees the site handed over to them, and no other.
    page.context.clear_cookies()
    sign_in(page, "owner@sunfix.example")
    page.goto("/site/")
    table = page.locator("table")
    expect(table).to_contain_text("Hudson Valley Farm")
    expect(table).not_to_contain_text("Lakeside Depot")
    page.goto(f"/site/{site.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hudson Valley Farm")
    assert page.goto(f"/site/{site.pk}/settings/").status == 403
