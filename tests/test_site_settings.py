"""Site → Settings (guide §6.2.6): Maintenance → Parameters' panel for the inverters of one
site — pick an inverter, Quick or Group Search over its register map, Read and Write through the
remote-operations engine; administrators and O&M engineers only."""

import re
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from django.urls import reverse
from guardian.shortcuts import assign_perm

from maintenance.dispatch import close_reply_waiter, execute
from maintenance.models import OperationKind, OperationState, RemoteOperation
from simulator.clock import SimClock
from simulator.environment import Site as SimSite
from simulator.fleet import FleetThread
from simulator.sources import GatewaySpec, InverterSpec
from tests.browser import CHROMIUM, sign_in
from tests.device_rig import yesterday_noon_in_rome
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.parameters_helpers import HTMX_DIALOG, HTMX_TABLE, POLLING, TH, assert_queued_read, names
from tests.permission_matrix import Expect, assert_matrix
from tests.services import needs_mosquitto

pytestmark = pytest.mark.django_db

PANEL = "maintenance/parameters/_panel.html"
VALUE = "maintenance/parameters/_value.html"
HTMX_TAB = {"HX-Request": "true", "HX-Target": "tab-panel"}


@pytest.fixture
def fleet(tenants):
    """SunFix's "Barn" (granted to the owner) with two inverters, a second SunFix site with
    one, and a Nordlicht site."""
    barn = SiteFactory(company=tenants.sunfix, name="Barn")
    assign_perm("pv_sites.view_site", tenants.owner, barn)
    barn_gw = GatewayFactory(serial_number="GWBARN001", site=barn)
    shed = SiteFactory(company=tenants.sunfix, name="Shed")
    nord = SiteFactory(company=tenants.nordlicht, name="Nord Hall")
    return SimpleNamespace(
        barn=barn,
        shed=shed,
        nord=nord,
        west=InverterFactory(gateway=barn_gw, serial_number="INVBARN001", name="Barn west"),
        east=InverterFactory(gateway=barn_gw, serial_number="INVBARN002", modbus_address=2),
        shed_inverter=InverterFactory(
            gateway=GatewayFactory(serial_number="GWSHED001", site=shed),
            serial_number="INVSHED001",
        ),
        nord_inverter=InverterFactory(
            gateway=GatewayFactory(serial_number="GWNORD001", site=nord),
            serial_number="INVNORD001",
        ),
    )


def tab_url(site, **params):
    query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    return reverse("sites:settings", args=[site.pk]) + (f"?{query}" if query else "")


def templates(response):
    return {template.name for template in response.templates}


def form_actions(html):
    """The Read forms' URLs (each with the panel's query string)."""
    urls = re.findall(r'<form method="post" action="([^"]+)"', html)
    return [unescape(url) for url in urls if "/read/" in url]


# --- Permissions ----------------------------------------------------------------------------


@pytest.mark.matrix("sites:settings")
def test_permission_matrix_of_the_settings_tab(tenants, client_for, fleet):
    # Owners may see the site but not operate its devices: the tab answers 403.
    assert_matrix(tenants, client_for, tab_url(fleet.barn), Expect(owner=403))
    assert_matrix(
        tenants, client_for, tab_url(fleet.barn, inverter=fleet.west.pk, q="0x0700"), Expect()
    )
    assert_matrix(tenants, client_for, tab_url(fleet.barn), Expect(), headers=HTMX_TAB)
    assert_matrix(
        tenants,
        client_for,
        tab_url(fleet.barn, inverter=fleet.west.pk, q="work"),
        Expect(),
        headers=HTMX_TABLE,
    )


def test_the_owner_does_not_see_the_settings_tab(tenants, client_for, fleet):
    html = client_for(tenants.owner).get(f"/site/{fleet.barn.pk}/alarm/").content.decode()
    assert f"/site/{fleet.barn.pk}/alarm/" in html
    assert tab_url(fleet.barn) not in html
    staff = client_for(tenants.sunfix_om).get(f"/site/{fleet.barn.pk}/alarm/").content.decode()
    assert f'href="{tab_url(fleet.barn)}"' in staff


def test_only_the_sites_inverters_can_be_picked(tenants, client_for, fleet):
    client = client_for(tenants.helios_admin)
    response = client.get(tab_url(fleet.barn))
    assert list(response.context["inverter_page"]) == [fleet.west, fleet.east]
    html = response.content.decode()
    assert "INVSHED001" not in html and "INVNORD001" not in html
    assert "Select an inverter on the left" in html
    # Another site's inverter, even one the user may operate, is not part of this page.
    assert client.get(tab_url(fleet.barn, inverter=fleet.shed_inverter.pk)).status_code == 404
    assert client.get(tab_url(fleet.barn, inverter=fleet.nord_inverter.pk)).status_code == 404
    assert client.get(tab_url(fleet.barn, inverter="x")).status_code == 404
    assert client.get(tab_url(fleet.shed, inverter=fleet.shed_inverter.pk)).status_code == 200


def test_the_inverter_search_stays_within_the_site(tenants, client_for, fleet):
    client = client_for(tenants.helios_admin)
    response = client.get(tab_url(fleet.barn, iq="west"))
    assert list(response.context["inverter_page"]) == [fleet.west]
    response = client.get(tab_url(fleet.barn, iq="INVSHED"))
    assert list(response.context["inverter_page"]) == []
    html = client.get(
        tab_url(fleet.barn, iq="inv"), headers={"HX-Request": "true", "HX-Target": "inverter-list"}
    ).content.decode()
    assert html.lstrip().startswith('<div id="inverter-list"') and "INVBARN002" in html


# --- The same components as Maintenance → Parameters ---------------------------------------


def test_the_tab_renders_the_parameters_panel(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(tab_url(fleet.barn, inverter=fleet.west.pk))
    assert {PANEL, VALUE, "fleet/sites/settings.html"} <= templates(response)
    html = response.content.decode()
    assert 'id="parameter-table"' in html and 'id="parameter-modal"' in html
    assert 'id="tab-panel-settings"' in html and 'aria-current="page"' in html
    # Its searches load this tab, not Maintenance → Parameters.
    assert f'action="{tab_url(fleet.barn)}"' in html
    assert 'action="/maintenance/parameters/"' not in html
    assert response.context["page_obj"].paginator.count > 100


def test_quick_and_group_search(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    assert names(client.get(tab_url(fleet.barn, inverter=fleet.west.pk, q="0x0700"))) == [
        "Grid_Power"
    ]
    response = client.get(
        tab_url(fleet.barn, inverter=fleet.west.pk, mode="group", group="ABF Info", q="Grid_Total")
    )
    assert names(response) == ["Grid_TotalBuyEnergy", "Grid_TotalSellEnergy"]
    assert "Read group" in response.content.decode()


def test_htmx_search_swaps_only_the_table(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(
        tab_url(fleet.barn, inverter=fleet.west.pk, q="0x0700"), headers=HTMX_TABLE
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="parameter-table"')
    assert "Grid_Power" in html and "nav-tabs" not in html and "site-thumb" not in html
    assert response.template_name == [f"{PANEL}#table"]


def test_a_tab_switch_swaps_the_panel(tenants, client_for, fleet):
    html = client_for(tenants.sunfix_om).get(tab_url(fleet.barn), headers=HTMX_TAB)
    html = html.content.decode()
    assert 'id="tab-panel-tabs" hx-swap-oob="true"' in html
    assert '<div id="tab-panel"' in html and 'id="inverter-list"' in html
    assert "<!doctype" not in html.lower()


def test_write_only_for_holding_registers_with_the_range_shown(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    html = client.get(
        tab_url(fleet.barn, inverter=fleet.west.pk, mode="group", group="ABF Info")
    ).content.decode()
    assert html.count(">Read</button>") == 9 and ">Write</a>" not in html
    html = client.get(
        tab_url(fleet.barn, inverter=fleet.west.pk, q="BatFromGridPower")
    ).content.decode()
    write_links = re.findall(r'<a href="([^"]+)" class="btn btn-sm btn-primary', html)
    assert len(write_links) == 1
    dialog = client.get(unescape(write_links[0]), headers=HTMX_DIALOG).content.decode()
    assert "Value Range: [0,10] Offset value: 0.1" in dialog
    assert 'min="0"' in dialog and 'max="10"' in dialog


def test_a_site_without_inverters_says_so(tenants, client_for, fleet):
    empty = SiteFactory(company=tenants.sunfix, name="Empty")
    html = client_for(tenants.sunfix_admin).get(tab_url(empty)).content.decode()
    assert "This site has no inverters yet." in html
    assert 'id="parameter-table"' not in html and 'id="inverter-list"' not in html


# --- Read and Write through the remote-operations engine ------------------------------------


def test_a_read_from_the_tab_queues_one_operation_and_the_tab_follows_it(
    tenants, client_for, fleet
):
    client = client_for(tenants.sunfix_om)
    html = client.get(tab_url(fleet.barn, inverter=fleet.west.pk, q="0x0700")).content.decode()
    [action] = form_actions(html)
    assert action.startswith(reverse("maintenance:parameter_read", args=[fleet.west.pk]))
    response = client.post(
        action, {"key": "grid_power_kw"}, headers={"HX-Request": "true", "HX-Target": "x"}
    )
    assert_queued_read(response, fleet.west, tenants.sunfix_om)
    # Back on the tab, the row shows the running operation.
    html = client.get(tab_url(fleet.barn, inverter=fleet.west.pk, q="0x0700")).content.decode()
    assert POLLING in html and "Queued" in html


def test_a_group_read_from_the_tab_polls_the_tab(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    page = tab_url(fleet.barn, inverter=fleet.west.pk, mode="group", group="ABF Info")
    actions = form_actions(client.get(page).content.decode())
    response = client.post(actions[0], {"group": "ABF Info"}, headers=HTMX_TABLE)
    assert len(RemoteOperation.objects.get().request["keys"]) == 9
    html = unescape(response.content.decode())
    polled = re.search(r'<div id="parameter-table" hx-get="([^"]+)"', html).group(1)
    assert polled.startswith(tab_url(fleet.barn) + "?") and "return_to" not in polled
    assert client.get(polled, headers=HTMX_TABLE).status_code == 200


def test_without_javascript_read_and_write_return_to_the_tab(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    page = tab_url(fleet.barn, inverter=fleet.west.pk, q="work_mode")
    action = form_actions(client.get(page).content.decode())[0]
    response = client.post(action, {"key": "work_mode"})
    assert response.status_code == 302 and response.url == page
    write = reverse("maintenance:parameter_write", args=[fleet.west.pk, "work_mode"])
    query = action.split("?", 1)[1]
    response = client.post(f"{write}?{query}", {"value": "tou"})
    assert response.status_code == 302 and response.url == page
    assert RemoteOperation.objects.filter(kind=OperationKind.WRITE).get().request == {
        "values": {"work_mode": "tou"}
    }


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/site/1/?a=b"]
)
def test_return_to_never_leaves_the_portal(tenants, client_for, fleet, target):
    read = reverse("maintenance:parameter_read", args=[fleet.west.pk])
    response = client_for(tenants.sunfix_om).post(
        f"{read}?inverter={fleet.west.pk}&return_to={quote(target)}", {"key": "work_mode"}
    )
    assert response.status_code == 302
    assert response.url == f"/maintenance/parameters/?inverter={fleet.west.pk}"


def test_an_out_of_range_write_is_refused_and_records_nothing(tenants, client_for, fleet):
    write = reverse("maintenance:parameter_write", args=[fleet.west.pk, "tou_bat_from_grid_power"])
    response = client_for(tenants.sunfix_om).post(
        f"{write}?return_to={quote(tab_url(fleet.barn))}", {"value": "12"}, headers=HTMX_DIALOG
    )
    assert "12 kW is out of range; enter a value from 0 to 10 kW." in response.content.decode()
    assert not RemoteOperation.objects.exists()


def test_an_owner_cannot_read_or_write(tenants, client_for, fleet):
    client = client_for(tenants.owner)
    read = reverse("maintenance:parameter_read", args=[fleet.west.pk])
    assert client.post(read, {"key": "work_mode"}).status_code == 403
    write = reverse("maintenance:parameter_write", args=[fleet.west.pk, "work_mode"])
    assert client.post(write, {"value": "tou"}).status_code == 403
    assert not RemoteOperation.objects.exists()


@needs_mosquitto
def test_read_and_write_from_the_tab_reach_a_simulated_inverter(
    tenants, client_for, mosquitto, settings
):
    """The whole way: the tab's Read and Write → the engine's operation → MQTT → a simulated
    gateway → Modbus RTU → the simulated inverter, and back into the tab's Value column."""
    settings.MQTT_URL = mosquitto.url
    site = SiteFactory(company=tenants.sunfix, name="Simulated barn")
    gateway = GatewayFactory(
        serial_number="GWSETT0001", site=site, status="online", upload_interval_s=3600
    )
    inverter = InverterFactory(serial_number="GWSETT0001I1", model=TH, gateway=gateway)
    spec = GatewaySpec(
        serial="GWSETT0001",
        inverters=(InverterSpec("GWSETT0001I1", TH, 1),),
        upload_interval_s=3600,
        site=SimSite(45.46, 9.19, "Europe/Rome"),
    )
    client = client_for(tenants.sunfix_om)
    page = tab_url(site, inverter=inverter.pk, q="ExportLimitPower")
    close_reply_waiter()
    try:
        with FleetThread(
            [spec], mqtt_url=mosquitto.url, clock=SimClock(speed=0, start=yesterday_noon_in_rome())
        ) as sim:
            [action] = form_actions(client.get(page).content.decode())
            client.post(action, {"key": "export_limit_power"}, headers={"HX-Request": "true"})
            read = RemoteOperation.objects.get()
            assert execute(read.pk) == "finished"
            read.refresh_from_db()
            assert read.state == OperationState.SUCCEEDED, read.error
            truth = sim.call(lambda: sim.fleet.inverter("GWSETT0001I1").settings())
            shown = client.get(page).context["rows"][0][1]
            assert shown.source.pk == read.pk
            assert shown.value == pytest.approx(truth["export_limit_power"])

            write = reverse("maintenance:parameter_write", args=[inverter.pk, "export_limit_power"])
            query = action.split("?", 1)[1]
            client.post(f"{write}?{query}", {"value": "6.5"}, headers=HTMX_DIALOG)
            written = RemoteOperation.objects.get(kind=OperationKind.WRITE)
            assert execute(written.pk) == "finished"
            written.refresh_from_db()
            assert written.state == OperationState.SUCCEEDED, written.error
            assert sim.call(lambda: sim.fleet.inverter("GWSETT0001I1").settings())[
                "export_limit_power"
            ] == pytest.approx(6.5)
            html = client.get(page).content.decode()
            assert "6.5 kW" in html
    finally:
        close_reply_waiter()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_writing_a_parameter_from_the_settings_tab_in_the_browser(tenants, fleet, page):
    """Settings tab → an inverter → its parameter → Write in the dialog: the row shows the
    queued write and the dialog closes (the page fixture checks CSP and axe-core)."""
    sign_in(page, tenants.sunfix_om.email)
    page.goto(f"/site/{fleet.barn.pk}/alarm/")
    page.click("#tab-panel-settings")
    page.click("#inverter-list >> text=INVBARN001")
    page.fill("#parameter-table >> xpath=preceding::input[@name='q'][1]", "BatFromGridPower")
    row = page.locator("#parameter-table tr", has_text="BatFromGridPower")
    row.wait_for()
    row.get_by_role("link", name="Write").click()
    page.wait_for_selector("#parameter-dialog >> text=Value Range: [0,10]")
    page.fill("#parameter-dialog input[type=number]", "2.5")
    page.click("#parameter-dialog button[type=submit]")
    page.wait_for_selector("#value-tou_bat_from_grid_power >> text=Queued")
    page.wait_for_selector("#parameter-modal", state="hidden")
    operation = RemoteOperation.objects.get()
    assert operation.request == {"values": {"tou_bat_from_grid_power": 2.5}}
    assert page.url.startswith(f"{page.url.split('/site/')[0]}/site/{fleet.barn.pk}/settings/")
