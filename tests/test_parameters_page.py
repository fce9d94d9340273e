"""Maintenance → Parameters (guide §6.2.6, §6.4.2.6): an O&M engineer selects an inverter, finds
its register parameters by Quick Search or Group Search, reads them and writes holding
registers; the Value column shows the newest value known and the live state of a running
operation."""

import datetime as dt
import json
import re
from html import unescape
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from maintenance.models import OperationKind, OperationState, RemoteOperation
from tests.factories import (
    GatewayFactory,
    InverterFactory,
    RemoteOperationFactory,
    SiteFactory,
)
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.parameters_helpers import HTMX_DIALOG, HTMX_TABLE, POLLING, TH, assert_queued_read, names
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

PAGE_URL = "/maintenance/parameters/"
UTC = dt.UTC


@pytest.fixture
def fleet(tenants):
    """An inverter at a Helios site, one at a SunFix site granted to the SunFix owner, and one
    at a Nordlicht site."""
    helios_gw = GatewayFactory(
        serial_number="GWHEL0001", site=SiteFactory(company=tenants.helios, name="Helios Roof")
    )
    sunfix_site = SiteFactory(company=tenants.sunfix, name="SunFix Barn")
    assign_perm("pv_sites.view_site", tenants.owner, sunfix_site)
    sunfix_gw = GatewayFactory(serial_number="GWSUN0001", site=sunfix_site)
    nordlicht_gw = GatewayFactory(
        serial_number="GWNOR0001", site=SiteFactory(company=tenants.nordlicht, name="Nord Hall")
    )
    return SimpleNamespace(
        helios=InverterFactory(gateway=helios_gw, serial_number="INVHEL0001", name="Roof west"),
        sunfix=InverterFactory(gateway=sunfix_gw, serial_number="INVSUN0001", name="Barn"),
        nordlicht=InverterFactory(gateway=nordlicht_gw, serial_number="INVNOR0001"),
    )


def page_url(inverter, **params):
    query = "&".join(f"{k}={v}" for k, v in {"inverter": inverter.pk, **params}.items())
    return f"{PAGE_URL}?{query}"


def read_url(inverter):
    return reverse("maintenance:parameter_read", args=[inverter.pk])


def write_url(inverter, key):
    return reverse("maintenance:parameter_write", args=[inverter.pk, key])


def value_url(operation, key):
    return reverse("maintenance:parameter_value", args=[operation.pk, key])


def cells(response):
    return {point.key: cell for point, cell in response.context["rows"]}


def register_entry(name, address, value, unit, display=None):
    return {
        "name": name,
        "address": address,
        "value": value,
        "unit": unit,
        "display": display or f"{value} {unit}".strip(),
    }


def grid_power(value):
    return {"values": {"grid_power_kw": register_entry("Grid_Power", "[0X0700/1792]", value, "kW")}}


def bat_from_grid(value):
    entry = register_entry("BatFromGridPower", "[0X1030/4144]", value, "kW")
    return {"values": {"tou_bat_from_grid_power": entry}}


def operation_on(inverter, **fields):
    return RemoteOperationFactory(
        gateway=inverter.gateway,
        inverter=inverter,
        device_serial=inverter.serial_number,
        **fields,
    )


# --- Permissions ----------------------------------------------------------------------------


@pytest.mark.matrix("maintenance:parameters")
def test_permission_matrix_of_the_page(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, PAGE_URL, Expect.tenant_wide(admin=200, om=200, owner=403))


@pytest.mark.matrix("maintenance:parameters")
def test_permission_matrix_of_the_page_with_an_inverter(tenants, client_for, fleet):
    # The SunFix inverter is on a site granted to the owner: they see it, but may not open this.
    assert_matrix(tenants, client_for, page_url(fleet.sunfix), Expect())


@pytest.mark.matrix("maintenance:parameter_read")
def test_permission_matrix_of_read(tenants, client_for, fleet):
    assert_matrix(
        tenants,
        client_for,
        read_url(fleet.sunfix),
        Expect(),
        method="post",
        data={"key": "grid_power_kw"},
        headers={"HX-Request": "true"},
    )
    assert RemoteOperation.objects.count() == 2  # the Helios admin's and O&M engineer's reads


@pytest.mark.matrix("maintenance:parameter_write")
def test_permission_matrix_of_write(tenants, client_for, fleet):
    url = write_url(fleet.sunfix, "tou_bat_from_grid_power")
    assert_matrix(tenants, client_for, url, Expect(), headers=HTMX_DIALOG)
    assert_matrix(
        tenants,
        client_for,
        url,
        Expect(),
        method="post",
        data={"value": "2.5"},
        headers=HTMX_DIALOG,
    )
    assert RemoteOperation.objects.filter(kind=OperationKind.WRITE).count() == 2


@pytest.mark.matrix("maintenance:parameter_value")
def test_permission_matrix_of_the_value_cell(tenants, client_for, fleet):
    operation = operation_on(fleet.sunfix, state=OperationState.QUEUED)
    assert_matrix(tenants, client_for, value_url(operation, "grid_power_kw"), Expect())


@pytest.mark.parametrize("value", ["999999", "abc", "-1", "99999999999999999999", ""])
def test_an_unknown_inverter_is_not_found(tenants, client_for, fleet, value):
    response = client_for(tenants.helios_admin).get(f"{PAGE_URL}?inverter={value}")
    assert response.status_code == (200 if value == "" else 404)


def test_a_foreign_inverter_cannot_be_read_or_written(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    assert client.post(read_url(fleet.nordlicht), {"key": "grid_power_kw"}).status_code == 404
    url = write_url(fleet.nordlicht, "tou_bat_from_grid_power")
    assert client.get(url).status_code == 404
    assert client.post(url, {"value": "2"}).status_code == 404
    assert not RemoteOperation.objects.exists()


def test_maintenance_tabs_on_both_pages(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    for url, active in (
        (PAGE_URL, PAGE_URL),
        ("/maintenance/operations/", "/maintenance/operations/"),
    ):
        html = client.get(url).content.decode()
        assert 'class="nav nav-tabs' in html
        assert 'href="/maintenance/operations/"' in html and f'href="{PAGE_URL}"' in html
        assert f'class="nav-link active" aria-current="page" href="{active}"' in html


def test_posts_need_the_csrf_token(tenants, fleet):
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenants.helios_om, backend="accounts.backends.EmailBackend")
    assert client.post(read_url(fleet.sunfix), {"key": "work_mode"}).status_code == 403
    url = write_url(fleet.sunfix, "work_mode")
    assert client.post(url, {"value": "tou"}).status_code == 403
    assert not RemoteOperation.objects.exists()


def test_huge_ids_are_not_found(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    huge = 10**20
    assert client.post(f"/maintenance/parameters/{huge}/read/", {"key": "x"}).status_code == 404
    assert client.get(f"/maintenance/parameters/{huge}/write/work_mode/").status_code == 404
    assert client.get(f"/maintenance/parameters/operations/{huge}/work_mode/").status_code == 404


# --- The inverter panel ---------------------------------------------------------------------


def test_the_left_panel_lists_the_users_inverters(tenants, client_for, fleet):
    response = client_for(tenants.helios_admin).get(PAGE_URL)
    assert list(response.context["inverter_page"]) == [fleet.helios, fleet.sunfix]
    html = response.content.decode()
    assert "SunFix Barn" in html and TH in html and "INVNOR0001" not in html
    assert "Select an inverter on the left" in html
    sub = client_for(tenants.sunfix_om).get(PAGE_URL)
    assert list(sub.context["inverter_page"]) == [fleet.sunfix]


@pytest.mark.parametrize(
    ("query", "expected"), [("barn", ["sunfix"]), ("INVHEL", ["helios"]), ("west", ["helios"])]
)
def test_the_inverter_search_covers_sn_name_and_site(tenants, client_for, fleet, query, expected):
    response = client_for(tenants.helios_admin).get(PAGE_URL, {"iq": query})
    assert list(response.context["inverter_page"]) == [getattr(fleet, e) for e in expected]


def test_the_inverter_list_is_paginated_and_swapped_alone(tenants, client_for, fleet):
    gateway = fleet.helios.gateway
    for n in range(12):
        InverterFactory(serial_number=f"INVHEL1{n:03d}", gateway=gateway, modbus_address=n + 2)
    client = client_for(tenants.helios_admin)
    assert len(client.get(PAGE_URL).context["inverter_page"]) == 10
    response = client.get(
        PAGE_URL, {"ipage": 2}, headers={"HX-Request": "true", "HX-Target": "inverter-list"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="inverter-list"')
    assert html.count("list-group-item-action") == 4 and "<form" not in html


# --- Search ---------------------------------------------------------------------------------


def test_quick_search_is_the_default_and_narrows_the_rows(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    response = client.get(page_url(fleet.sunfix))
    assert response.context["mode"] == "quick"
    assert response.context["page_obj"].paginator.count > 100
    assert len(names(response)) == 25
    response = client.get(page_url(fleet.sunfix, q="0x0700"))
    assert names(response) == ["Grid_Power"]
    html = response.content.decode()
    assert "ABF Info" in html and "[0X0700/1792]" in html and "Grid_Power" in html
    response = client.get(page_url(fleet.sunfix, q="Grid_TotalBuyEnergy"))
    assert names(response) == ["Grid_TotalBuyEnergy"]


def test_quick_search_ignores_a_group_in_the_query_string(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(page_url(fleet.sunfix, q="1792", group="TOU"))
    assert names(response) == ["Grid_Power"]


def test_group_search_filters_by_group_and_keyword(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    response = client.get(page_url(fleet.sunfix, mode="group", group="ABF Info"))
    rows = response.context["rows"]
    assert {point.group for point, _ in rows} == {"ABF Info"}
    assert names(response)[0] == "Grid_Power" and "Grid_TotalSellEnergy" in names(response)
    assert response.context["read_group"] == "ABF Info"
    response = client.get(page_url(fleet.sunfix, mode="group", group="ABF Info", q="Grid_Total"))
    assert names(response) == ["Grid_TotalBuyEnergy", "Grid_TotalSellEnergy"]
    options = response.context["search_form"].fields["group"].choices
    assert ("Common Info", "Common Info") in options and ("TOU", "TOU") in options


def test_group_search_without_a_group_searches_every_group(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(
        page_url(fleet.sunfix, mode="group", q="LCDBootVersion")
    )
    assert names(response) == ["LCDBootVersion"]
    assert response.context["read_group"] == ""
    assert "Read group" not in response.content.decode()


def test_an_unknown_group_is_a_form_error(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(page_url(fleet.sunfix, mode="group", group="X"))
    assert response.status_code == 200
    assert response.context["search_form"].errors and names(response) == []
    assert "This search is not valid." in response.content.decode()


def test_no_match_says_so(tenants, client_for, fleet):
    html = client_for(tenants.helios_om).get(page_url(fleet.sunfix, q="nothing-like-this"))
    assert "No parameter matches this search." in html.content.decode()


def test_htmx_search_swaps_only_the_table(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(
        page_url(fleet.sunfix, q="0x0700"), headers=HTMX_TABLE
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="parameter-table"')
    assert '<form method="get"' not in html and "Grid_Power" in html
    assert response["Vary"] and "HX-Target" in response["Vary"]


def test_the_parameters_are_paginated(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    first = names(client.get(page_url(fleet.sunfix, mode="group", group="TOU")))
    second = names(client.get(page_url(fleet.sunfix, mode="group", group="TOU", page=2)))
    assert len(first) == 25 and len(second) == 23 and not set(first) & set(second)


def test_write_only_for_writable_holding_registers(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    html = client.get(page_url(fleet.sunfix, mode="group", group="ABF Info")).content.decode()
    assert html.count(">Read</button>") == 9
    assert ">Write</a>" not in html
    assert write_url(fleet.sunfix, "grid_power_kw") not in html
    html = client.get(page_url(fleet.sunfix, mode="group", group="Mode")).content.decode()
    assert html.count(">Read</button>") == 4 and html.count(">Write</a>") == 4
    assert write_url(fleet.sunfix, "work_mode") in html


def test_an_inverter_without_gateway_cannot_be_operated(tenants, client_for, fleet):
    fleet.sunfix.gateway = None
    fleet.sunfix.save()
    client = client_for(tenants.helios_om)
    html = client.get(page_url(fleet.sunfix, q="work_mode")).content.decode()
    assert "not connected to a gateway" in html
    assert write_url(fleet.sunfix, "work_mode") not in html
    response = client.post(
        read_url(fleet.sunfix), {"key": "work_mode"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "This inverter is not connected to a gateway." in response.content.decode()
    assert not RemoteOperation.objects.exists()


def test_an_inverter_model_without_register_map(tenants, client_for, fleet):
    fleet.sunfix.model = "XYZ-UNKNOWN"
    fleet.sunfix.save()
    client = client_for(tenants.helios_om)
    response = client.get(page_url(fleet.sunfix))
    assert response.status_code == 200
    assert "There is no register map for the model XYZ-UNKNOWN." in response.content.decode()
    assert client.post(read_url(fleet.sunfix), {"key": "work_mode"}).status_code == 404


# --- The Value column -----------------------------------------------------------------------


def test_value_is_the_newest_succeeded_read_or_write(tenants, client_for, fleet):
    t = dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    operation_on(fleet.sunfix, result=grid_power(1.5), created_at=t)
    newest = operation_on(
        fleet.sunfix, result=grid_power(2.25), created_at=t + dt.timedelta(hours=1)
    )
    operation_on(  # newer, but failed: not a value
        fleet.sunfix,
        state=OperationState.FAILED,
        result=grid_power(9.9),
        created_at=t + dt.timedelta(hours=2),
    )
    operation_on(  # another inverter
        fleet.helios, result=grid_power(7.7), created_at=t + dt.timedelta(hours=3)
    )
    operation_on(fleet.sunfix, kind=OperationKind.READ, result=bat_from_grid(1.0), created_at=t)
    operation_on(
        fleet.sunfix,
        kind=OperationKind.WRITE,
        before=bat_from_grid(1.0),
        after=bat_from_grid(3.5),
        created_at=t + dt.timedelta(minutes=5),
    )
    response = client_for(tenants.helios_om).get(page_url(fleet.sunfix, q="grid_power"))
    shown = cells(response)
    assert shown["grid_power_kw"].text == "2.25 kW"
    assert shown["grid_power_kw"].source.pk == newest.pk
    assert shown["tou_bat_from_grid_power"].text == "3.5 kW"
    assert shown["abf_grid_power"].text == "" and shown["abf_grid_power"].source is None
    html = response.content.decode()
    assert "2.25 kW" in html and "2025-03-04 11:00:00" in html
    assert "9.9 kW" not in html and "7.7 kW" not in html
    assert POLLING not in html


def test_odd_json_in_operations_never_breaks_the_table(tenants, client_for, fleet):
    for odd in ([1, 2], "text", {"values": [1]}, {"values": {"grid_power_kw": 5}}, {}):
        operation_on(fleet.sunfix, result=odd, after=odd, request=odd)
    response = client_for(tenants.helios_om).get(page_url(fleet.sunfix, q="0x0700"))
    assert response.status_code == 200
    assert cells(response)["grid_power_kw"].text == "5"


def test_a_pending_operation_shows_its_state_and_the_table_polls(tenants, client_for, fleet):
    t = dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    operation_on(fleet.sunfix, result=grid_power(1.5), created_at=t)
    pending = operation_on(
        fleet.sunfix,
        state=OperationState.SENT,
        request={"keys": ["grid_power_kw", "abf_grid_power"], "group": None},
        created_at=t + dt.timedelta(minutes=1),
    )
    client = client_for(tenants.helios_om)
    response = client.get(page_url(fleet.sunfix, q="0x0700"))
    cell = cells(response)["grid_power_kw"]
    assert cell.operation.pk == pending.pk and cell.text == "1.5 kW"
    html = response.content.decode()
    assert POLLING in html and "text-bg-info" in html  # the "Sent" badge
    pending.state = OperationState.SUCCEEDED
    pending.result = grid_power(1.75)
    pending.save()
    html = client.get(page_url(fleet.sunfix, q="0x0700"), headers=HTMX_TABLE).content.decode()
    assert POLLING not in html and "1.75 kW" in html


def test_a_failure_newer_than_the_value_shows_its_error(tenants, client_for, fleet):
    t = dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    operation_on(fleet.sunfix, result=grid_power(1.5), created_at=t)
    operation_on(
        fleet.sunfix,
        state=OperationState.EXPIRED,
        request={"keys": ["grid_power_kw"], "group": None},
        error="The gateway received the command after its deadline.",
        created_at=t + dt.timedelta(minutes=1),
    )
    client = client_for(tenants.helios_om)
    response = client.get(page_url(fleet.sunfix, q="0x0700"))
    cell = cells(response)["grid_power_kw"]
    assert cell.error == "The gateway received the command after its deadline."
    html = response.content.decode()
    assert cell.error in html and "1.5 kW" in html and POLLING not in html
    operation_on(fleet.sunfix, result=grid_power(1.25), created_at=t + dt.timedelta(minutes=2))
    response = client.get(page_url(fleet.sunfix, q="0x0700"))
    assert cells(response)["grid_power_kw"].error == ""
    assert "after its deadline" not in response.content.decode()


# --- Read -----------------------------------------------------------------------------------


def test_read_queues_one_operation_and_answers_with_the_polling_cell(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    response = client.post(
        read_url(fleet.sunfix) + f"?inverter={fleet.sunfix.pk}&q=0x0700",
        {"key": "grid_power_kw"},
        headers={"HX-Request": "true", "HX-Target": "value-grid_power_kw"},
    )
    operation, html = assert_queued_read(response, fleet.sunfix, tenants.helios_om)
    assert f'hx-get="{value_url(operation, "grid_power_kw")}"' in html
    assert "Queued" in html


def test_the_value_cell_stops_polling_with_the_value_or_the_error(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    client.post(read_url(fleet.sunfix), {"key": "grid_power_kw"}, headers={"HX-Request": "true"})
    operation = RemoteOperation.objects.get()
    url = value_url(operation, "grid_power_kw")
    assert POLLING in client.get(url).content.decode()
    operation.state = OperationState.SUCCEEDED
    operation.result = grid_power(4.5)
    operation.finished_at = timezone.now()
    operation.save()
    html = client.get(url).content.decode()
    assert POLLING not in html and "4.5 kW" in html
    operation.state = OperationState.FAILED
    operation.error = "Gateway error: timeout"
    operation.save()
    html = client.get(url).content.decode()
    assert POLLING not in html and "Gateway error: timeout" in html


def test_read_group_reads_every_point_of_the_group_in_one_operation(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    query = f"?inverter={fleet.sunfix.pk}&mode=group&group=ABF+Info"
    html = client.get(PAGE_URL + query).content.decode()
    assert "Read group" in html
    response = client.post(
        read_url(fleet.sunfix) + query, {"group": "ABF Info"}, headers=HTMX_TABLE
    )
    operation = RemoteOperation.objects.get()
    assert operation.request["group"] == "ABF Info" and len(operation.request["keys"]) == 9
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="parameter-table"')
    assert POLLING in html and html.count("text-bg-secondary") == 9  # nine queued rows


def test_read_without_htmx_returns_to_the_page(tenants, client_for, fleet):
    query = f"?inverter={fleet.sunfix.pk}&q=work"
    response = client_for(tenants.helios_om).post(
        read_url(fleet.sunfix) + query, {"key": "work_mode"}
    )
    assert response.status_code == 302 and response.url == PAGE_URL + query
    assert RemoteOperation.objects.count() == 1


@pytest.mark.parametrize(
    "data",
    [{}, {"key": "no_such_register"}, {"group": "No Such Group"}, {"key": "x" * 500}],
)
def test_a_bad_read_request_is_a_400(tenants, client_for, fleet, data):
    response = client_for(tenants.helios_om).post(read_url(fleet.sunfix), data)
    assert response.status_code == 400
    assert not RemoteOperation.objects.exists()


def test_read_needs_post(tenants, client_for, fleet):
    assert client_for(tenants.helios_om).get(read_url(fleet.sunfix)).status_code == 405


# --- Write ----------------------------------------------------------------------------------


def test_the_write_dialog_for_a_number(tenants, client_for, fleet):
    operation_on(fleet.sunfix, result=bat_from_grid(2.5))
    response = client_for(tenants.helios_om).get(
        write_url(fleet.sunfix, "tou_bat_from_grid_power"), headers=HTMX_DIALOG
    )
    html = response.content.decode()
    assert html.lstrip().startswith("<form")
    assert 'type="number"' in html and 'min="0"' in html and 'max="10"' in html
    assert 'step="0.1"' in html and ">kW<" in html
    assert "Value Range: [0,10] Offset value: 0.1" in html
    assert "2.5 kW" in html  # the current value, and the field starts from it
    assert 'value="2.5"' in html


def test_the_write_dialog_for_options_times_and_flags(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    html = client.get(write_url(fleet.sunfix, "work_mode"), headers=HTMX_DIALOG).content.decode()
    assert "<select" in html and '<option value="tou">TOU Mode</option>' in html
    html = client.get(write_url(fleet.sunfix, "tou1_start"), headers=HTMX_DIALOG).content.decode()
    assert 'type="time"' in html
    html = client.get(
        write_url(fleet.sunfix, "tou1_weekdays"), headers=HTMX_DIALOG
    ).content.decode()
    assert html.count('type="checkbox"') == 7


def test_the_write_dialog_works_without_htmx(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(write_url(fleet.sunfix, "work_mode"))
    assert response.status_code == 200
    assert "<!doctype html>" in response.content.decode()


def test_an_out_of_range_write_shows_the_refusal_and_records_nothing(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).post(
        write_url(fleet.sunfix, "tou_bat_from_grid_power"), {"value": "12"}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "BatFromGridPower: 12 kW is out of range; enter a value from 0 to 10 kW." in html
    assert "is-invalid" in html and "HX-Retarget" not in response
    assert not RemoteOperation.objects.exists()


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("tou_bat_from_grid_power", "abc", "Enter a number."),
        ("tou_bat_from_grid_power", "", "This field is required."),
        ("tou_bat_from_grid_power", "2.55", "is not a multiple of the step"),
        ("work_mode", "warp", "Select a valid choice."),
        ("tou1_start", "25:00", "Enter a valid time."),
        ("tou1_weekdays", "someday", "Select a valid choice."),
    ],
)
def test_bad_write_values_are_form_errors(tenants, client_for, fleet, key, value, error):
    response = client_for(tenants.helios_om).post(
        write_url(fleet.sunfix, key), {"value": value}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not RemoteOperation.objects.exists()


@pytest.mark.parametrize("key", ["grid_power_kw", "no_such_register"])
def test_only_writable_registers_have_a_write_dialog(tenants, client_for, fleet, key):
    client = client_for(tenants.helios_om)
    assert client.get(write_url(fleet.sunfix, key)).status_code == 404
    assert client.post(write_url(fleet.sunfix, key), {"value": "1"}).status_code == 404
    assert not RemoteOperation.objects.exists()


def test_a_valid_write_queues_one_operation_and_updates_the_row(tenants, client_for, fleet):
    response = client_for(tenants.helios_admin).post(
        write_url(fleet.sunfix, "tou_bat_from_grid_power"), {"value": "3.5"}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200
    operation = RemoteOperation.objects.get()
    assert operation.kind == OperationKind.WRITE and operation.state == OperationState.QUEUED
    assert operation.request == {"values": {"tou_bat_from_grid_power": 3.5}}
    assert operation.inverter == fleet.sunfix and operation.user == tenants.helios_admin
    assert response["HX-Retarget"] == "#value-tou_bat_from_grid_power"
    assert response["HX-Reswap"] == "outerHTML"
    assert "parameter-written" in json.loads(response["HX-Trigger"])
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="value-tou_bat_from_grid_power"')
    assert POLLING in html and value_url(operation, "tou_bat_from_grid_power") in html


@pytest.mark.parametrize(
    ("key", "posted", "stored"),
    [
        ("work_mode", ["tou"], "tou"),
        ("tou1_start", ["22:30"], "22:30"),
        ("tou1_weekdays", ["mon", "fri"], ["mon", "fri"]),
        ("batt_min_soc_on_grid", ["20"], 20),
        ("power_factor_setpoint", ["-0.95"], -0.95),
    ],
)
def test_each_kind_of_field_writes_what_the_map_expects(
    tenants, client_for, fleet, key, posted, stored
):
    response = client_for(tenants.helios_om).post(
        write_url(fleet.sunfix, key), {"value": posted}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200, response.content.decode()
    assert RemoteOperation.objects.get().request == {"values": {key: stored}}


def test_write_without_htmx_returns_to_the_page(tenants, client_for, fleet):
    query = f"?inverter={fleet.sunfix.pk}&q=work"
    response = client_for(tenants.helios_om).post(
        write_url(fleet.sunfix, "work_mode") + query, {"value": "tou"}
    )
    assert response.status_code == 302 and response.url == PAGE_URL + query
    assert RemoteOperation.objects.get().request == {"values": {"work_mode": "tou"}}


# --- Cost -----------------------------------------------------------------------------------


def test_the_number_of_queries_does_not_grow(
    tenants, client_for, fleet, django_assert_max_num_queries
):
    client = client_for(tenants.helios_admin)
    url = page_url(fleet.sunfix, mode="group", group="ABF Info")
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    gateway = fleet.sunfix.gateway
    for n in range(15):
        InverterFactory(serial_number=f"INVSUN1{n:03d}", gateway=gateway, modbus_address=n + 2)
    for n in range(20):
        operation_on(fleet.sunfix, result=grid_power(n))
        operation_on(fleet.sunfix, state=OperationState.QUEUED, request={"keys": ["abf_pf"]})
        operation_on(fleet.sunfix, state=OperationState.FAILED, request={"keys": ["abf_pf"]})
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert len(response.context["inverter_page"]) == 10
    assert cells(response)["grid_power_kw"].text == "19 kW"


# --- Pagination -----------------------------------------------------------------------------


def page_links(html):
    return re.findall(r'class="page-link" href="\?([^"]+)"', unescape(html))


def test_the_page_links_keep_the_inverter_and_the_searches(tenants, client_for, fleet):
    gateway = fleet.helios.gateway
    for n in range(12):
        InverterFactory(serial_number=f"INVHEL1{n:03d}", gateway=gateway, modbus_address=n + 2)
    client = client_for(tenants.helios_om)

    # The inverter list: previous and next only, swapping the list alone.
    html = client.get(
        PAGE_URL, {"iq": "INVHEL", "ipage": 2}, headers={**HTMX_TABLE, "HX-Target": "inverter-list"}
    ).content.decode()
    assert "11–13 of 13" in html and 'hx-target="#inverter-list"' in html
    assert page_links(html) == ["iq=INVHEL&ipage=1"]

    # The parameters of one inverter: numbered pages, swapping the table alone.
    url = page_url(fleet.sunfix, mode="group", group="TOU", iq="INVHEL")
    html = client.get(url, headers=HTMX_TABLE).content.decode()
    assert "1–25 of 48" in html and 'hx-target="#parameter-table"' in html
    links = page_links(html)
    assert links and all(
        f"inverter={fleet.sunfix.pk}" in link
        and "mode=group" in link
        and "group=TOU" in link
        and "iq=INVHEL" in link
        for link in links
    )
    assert {link.rsplit("page=", 1)[1] for link in links} == {"2"}
    # A disabled item (no previous page) is text, not a link.
    assert '<li class="page-item disabled"><span class="page-link">' in html
