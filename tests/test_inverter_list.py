"""Inverter → the inverter list (guide §6.4, §6.4.1): the guide's columns, status, model and
keyword search, the column chooser and downloads, Rename and Delete with their audit rows,
what owners and foreign tenants get, and a page's cost whatever the fleet's size."""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import AuditAction, AuditEvent
from inverters.models import Inverter, InverterStatus
from tests.factories import GatewayFactory, InverterFactory, SampleFactory, SiteFactory
from tests.fleet_helpers import granted_site  # noqa: F401 - the fixture `site`
from tests.inverter_page_helpers import (
    fill_fleet,
    reporting_inverter,  # noqa: F401 - the fixture `inverter`
    url,
)
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

LIST = url("list")
HTMX_TABLE = {"HX-Request": "true", "HX-Target": "inverter-table"}
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "action-dialog"}
DEFAULT_HEADERS = [
    "Device status",
    "Name",
    "Device SN",
    "Site name",
    "Gateway SN",
    "Equipment model",
    "Firmware",
    "Power generation",
]


def headers(response) -> list[str]:
    table = response.content.decode().split("<thead", 1)[1].split("</thead>", 1)[0]
    return [
        re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)
    ]


def serials(response) -> list[str]:
    html = response.content.decode()
    return re.findall(r'class="text-decoration-none">(INV[^<]+)</a>', html)


def row_of(html: str, serial: str) -> str:
    """The table row (<tr>…</tr>) of the inverter with SN `serial`."""
    return next(row for row in html.split("<tr") if f">{serial}</a>" in row)


def download(client, query: str = "", fmt: str = "csv") -> list[list]:
    response = client.get(f"{LIST}?{query}&export={fmt}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    if fmt == "csv":
        return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


@pytest.fixture
def fleet(tenants, site, inverter):
    """Besides "Roof east" (running, 3.45 kW): a faulty SML on another SunFix site, an
    inverter without a site, and Nordlicht's inverter."""
    other = SiteFactory(company=tenants.sunfix, name="Barn")
    faulty = InverterFactory(
        gateway=GatewayFactory(site=other, serial_number="GW-BARN"),
        serial_number="INV-SML-0002",
        name="Barn west",
        model="ECH6K-SML-EU",
        status=InverterStatus.FAULT,
    )
    loose_gateway = GatewayFactory(site=None, company=tenants.sunfix, serial_number="GW-LOOSE")
    loose = InverterFactory(
        gateway=loose_gateway,
        serial_number="INV-LOOSE-3",
        company=tenants.sunfix,
        site=None,
        status=InverterStatus.OFFLINE,
    )
    foreign = InverterFactory(
        gateway=GatewayFactory(site=SiteFactory(company=tenants.nordlicht)),
        serial_number="INV-FOREIGN",
    )
    return inverter, faulty, loose, foreign


# --- Permission matrix --------------------------------------------------------------------------

MANAGE = Expect(admin=200, om=200, owner=403)


@pytest.mark.matrix("inverters:list")
def test_matrix_list(tenants, client_for, inverter):
    # Owners see their granted sites' inverters; a foreign user sees their own tenant's list.
    assert_matrix(tenants, client_for, LIST, Expect.tenant_wide(admin=200, om=200, owner=200))


@pytest.mark.matrix("inverters:rename")
def test_matrix_rename(tenants, client_for, inverter):
    assert_matrix(tenants, client_for, url("rename", inverter.pk), MANAGE)
    assert_matrix(
        tenants,
        client_for,
        url("rename", inverter.pk),
        Expect(admin=302, om=302, owner=403),
        method="post",
        data={"name": "Roof east"},
    )


@pytest.mark.matrix("inverters:delete")
def test_matrix_delete(tenants, client_for, site, inverter):
    assert_matrix(tenants, client_for, url("delete", inverter.pk), MANAGE)

    def fresh(actor: str) -> str:
        gateway = GatewayFactory(site=site, serial_number=f"GW-{actor}")
        return url("delete", InverterFactory(gateway=gateway, serial_number=f"INV-{actor}").pk)

    assert_matrix(tenants, client_for, fresh, Expect(admin=302, om=302, owner=403), method="post")


# --- The list -----------------------------------------------------------------------------------


def test_staff_see_the_guides_columns_and_their_tenants_inverters(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(LIST)
    assert response.status_code == 200
    assert headers(response) == [*DEFAULT_HEADERS, "Operation"]
    assert serials(response) == ["INV-LOOSE-3", "INV-SML-0002", "INV-TH-0001"]
    html = response.content.decode()
    row = row_of(html, "INV-TH-0001")
    assert ">Running<" in row and "Casa Sole" in row and "ECH10K-TH-EU" in row
    assert "dsp: 01.90.06 lcd: 01.56" in row and "3.45 kW" in row
    loose_row = row_of(html, "INV-LOOSE-3")
    assert ">Offline<" in loose_row and "–" in loose_row  # no site, no values
    assert "INV-FOREIGN" not in html
    assert 'aria-label="Operations for Roof east"' in html


def test_owners_see_only_their_granted_sites_inverters_read_only(tenants, client_for, fleet):
    response = client_for(tenants.owner).get(LIST)
    assert serials(response) == ["INV-TH-0001"]
    html = response.content.decode()
    assert "Operations for" not in html
    assert url("rename", fleet[0].pk) not in html and url("delete", fleet[0].pk) not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=fault", ["INV-SML-0002"]),
        ("status=running", ["INV-TH-0001"]),
        ("model=ECH6K-SML-EU", ["INV-SML-0002"]),
        ("model=ECH10K-TH-EU", ["INV-LOOSE-3", "INV-TH-0001"]),
        ("q=barn", ["INV-SML-0002"]),  # by name
        ("q=loose", ["INV-LOOSE-3"]),  # by SN
        ("q=+th-00+", ["INV-TH-0001"]),
        ("status=running&q=barn", []),
    ],
)
def test_status_model_and_keyword_search(tenants, client_for, fleet, query, expected):
    response = client_for(tenants.sunfix_om).get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert serials(response) == expected


def test_bad_filters_are_refused_on_the_form_never_an_error_page(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    for query in ("status=exploded", "model=NOPE-1", "q=" + "x" * 300, "q=a%00b", "page=abc"):
        response = client.get(f"{LIST}?{query}")
        assert response.status_code in (200, 400), query
        assert "INV-TH" not in "".join(serials(response)) or query == "page=abc"
    assert client.get(f"{LIST}?status=exploded&export=csv").status_code == 400


def test_sorting_by_power_puts_inverters_without_values_last(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    assert serials(client.get(f"{LIST}?sort=-power"))[0] == "INV-TH-0001"
    assert serials(client.get(f"{LIST}?sort=power"))[0] == "INV-TH-0001"


def test_htmx_swaps_only_the_table(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(f"{LIST}?status=fault", headers=HTMX_TABLE)
    html = response.content.decode()
    assert 'id="inverter-table"' in html and "<html" not in html
    assert serials(response) == ["INV-SML-0002"]


def test_the_column_chooser_is_remembered(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    client.post(LIST, {"columns": ["status", "modbus_address", "company"]})
    response = client.get(LIST)
    assert headers(response) == [
        "Device status",
        "Name",
        "Device SN",
        "Communication address",
        "Company",
        "Operation",
    ]


def test_downloads_hold_the_filtered_rows_of_every_page(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    rows = download(client, "sort=serial_number&per_page=1")
    assert rows[0] == DEFAULT_HEADERS
    assert [r[2] for r in rows[1:]] == ["INV-LOOSE-3", "INV-SML-0002", "INV-TH-0001"]
    th = rows[3]
    assert th[0] == "Running" and th[1] == "Roof east" and th[3] == "Casa Sole"
    assert th[6] == "DSP: 01.90.06 LCD: 01.56 ARC: 00.10" and th[7] == "3.45 kW"
    sheet = download(client, "status=fault", fmt="xlsx")
    assert [r[2] for r in sheet[1:]] == ["INV-SML-0002"]


# --- Rename and Delete ----------------------------------------------------------------------------


def test_rename_in_the_dialog_is_audited(tenants, client_for, fleet):
    inverter = fleet[0]
    client = client_for(tenants.sunfix_om)
    dialog = client.get(url("rename", inverter.pk), headers=HTMX_DIALOG)
    assert 'name="name"' in dialog.content.decode() and "<html" not in dialog.content.decode()
    response = client.post(url("rename", inverter.pk), {"name": "  Roof south  "})
    assert response.status_code == 302
    inverter.refresh_from_db()
    assert inverter.name == "Roof south"
    event = AuditEvent.objects.get(action=AuditAction.INVERTER_RENAMED)
    assert event.before == {"name": "Roof east"} and event.after == {"name": "Roof south"}
    assert event.object_id == str(inverter.pk) and event.actor == tenants.sunfix_om


def test_a_too_long_name_is_refused_in_the_dialog(tenants, client_for, fleet):
    inverter = fleet[0]
    client = client_for(tenants.sunfix_om)
    response = client.post(url("rename", inverter.pk), {"name": "x" * 121}, headers=HTMX_DIALOG)
    assert response.status_code == 200 and "at most 120" in response.content.decode()
    inverter.refresh_from_db()
    assert inverter.name == "Roof east"
    assert not AuditEvent.objects.filter(action=AuditAction.INVERTER_RENAMED).exists()


def test_delete_confirms_then_removes_the_inverter_and_its_samples(tenants, client_for, fleet):
    inverter = fleet[0]
    SampleFactory(inverter=inverter)
    client = client_for(tenants.sunfix_om)
    dialog = client.get(url("delete", inverter.pk), headers=HTMX_DIALOG).content.decode()
    assert "Delete the inverter INV-TH-0001?" in dialog and "GW" in dialog
    response = client.post(url("delete", inverter.pk) + "?next=/inverter/%3Fstatus%3Drunning")
    assert response.status_code == 302 and response["Location"] == "/inverter/?status=running"
    assert not Inverter.objects.filter(pk=inverter.pk).exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM inverters_sample WHERE inverter_id = %s", [inverter.pk]
        )
        assert cursor.fetchone()[0] == 0
    event = AuditEvent.objects.get(action=AuditAction.INVERTER_REMOVED)
    assert event.before["inverter"] == "INV-TH-0001" and event.object_type == "inverters.inverter"


def test_the_site_pages_delete_still_names_the_site(tenants, client_for, site, inverter):
    from fleet import services

    services.delete_inverter(site, inverter, acting_user=tenants.sunfix_om)
    event = AuditEvent.objects.get(action=AuditAction.INVERTER_DELETED)
    assert event.object_type == "pv_sites.site"


# --- Scale ----------------------------------------------------------------------------------------


def _queries(client, query: str = "") -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"{LIST}?{query}")
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("query", ["", "status=running&sort=-power", "q=INV&page=2&per_page=5"])
def test_query_count_does_not_grow_with_the_fleet(tenants, client_for, query):
    fill_fleet(tenants.sunfix, 10, owner=tenants.owner)
    staff, owner = client_for(tenants.sunfix_om), client_for(tenants.owner)
    _queries(staff, query), _queries(owner, query)  # sessions and caches warm
    small = (_queries(staff, query), _queries(owner, query))
    fill_fleet(tenants.sunfix, 90, owner=tenants.owner)
    large = (_queries(staff, query), _queries(owner, query))
    assert small == large
