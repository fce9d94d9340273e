"""Maintenance → Operations log: every remote operation on the user's devices, filtered,
downloaded as CSV, opened in detail with its live state."""

import csv
import datetime as dt
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from guardian.shortcuts import assign_perm
from openpyxl import load_workbook

from accounts.tables import UserTable
from maintenance.models import OperationKind, OperationState, RemoteOperation
from maintenance.tables import OperationTable
from tests.browser import CHROMIUM, sign_in
from tests.factories import GatewayFactory, RemoteOperationFactory, SiteFactory
from tests.permission_matrix import Expect, assert_matrix
from ui.models import TablePreference
from ui.tables import chosen_columns

pytestmark = pytest.mark.django_db

LIST_URL = "/maintenance/operations/"
CSV_URL = "/maintenance/operations/download/"
HTMX_TABLE = {"HX-Request": "true", "HX-Target": "operation-table"}
POLLING = 'hx-trigger="every 1s"'
UTC = dt.UTC

WORK_MODE_BEFORE = {
    "values": {
        "work_mode": {"name": "WorkMode", "value": "self_use", "display": "Self-use", "unit": ""},
        "charge_limit": {"name": "ChargeCurrentLimit", "value": 50, "unit": "A"},
    }
}
WORK_MODE_AFTER = {
    "values": {
        "work_mode": {"name": "WorkMode", "value": "tou", "display": "TOU Mode", "unit": ""},
        "charge_limit": {"name": "ChargeCurrentLimit", "value": 60, "unit": "A"},
    }
}


def detail_url(operation):
    return reverse("maintenance:operation", args=[operation.pk])


def state_url(operation):
    return reverse("maintenance:operation_state", args=[operation.pk])


@pytest.fixture(autouse=True)
def _default_language_and_time_zone_afterwards():
    """The portal activates the signed-in user's language and time zone on the request's
    thread, which is the test's: later tests must not inherit them."""
    yield
    translation.deactivate()
    timezone.deactivate()


@pytest.fixture
def log(tenants):
    """Operations at a Helios site, at a SunFix site (granted to the SunFix owner) and at a
    Nordlicht site."""
    helios_gw = GatewayFactory(
        serial_number="GWHEL0001", site=SiteFactory(company=tenants.helios, name="Helios Roof")
    )
    sunfix_site = SiteFactory(company=tenants.sunfix, name="SunFix Barn")
    assign_perm("pv_sites.view_site", tenants.owner, sunfix_site)
    sunfix_gw = GatewayFactory(serial_number="GWSUN0001", site=sunfix_site)
    nordlicht_gw = GatewayFactory(
        serial_number="GWNOR0001", site=SiteFactory(company=tenants.nordlicht, name="Nord Hall")
    )
    ns = SimpleNamespace(helios_gw=helios_gw, sunfix_gw=sunfix_gw, nordlicht_gw=nordlicht_gw)
    ns.helios_read = RemoteOperationFactory(
        gateway=helios_gw,
        device_serial="INVHEL0001",
        user=tenants.helios_om,
        kind=OperationKind.READ,
        summary="Read work mode",
        after={"values": {"work_mode": WORK_MODE_AFTER["values"]["work_mode"]}},
        created_at=dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC),
    )
    ns.sunfix_write = RemoteOperationFactory(
        gateway=sunfix_gw,
        device_serial="INVSUN0001",
        user=tenants.sunfix_admin,
        kind=OperationKind.MODE,
        summary="Work mode → TOU Mode",
        request={"work_mode": "tou"},
        command={"op": "modbus", "frame": "0110"},
        before=WORK_MODE_BEFORE,
        after=WORK_MODE_AFTER,
        state=OperationState.FAILED,
        error="Gateway answered with Modbus exception 2",
        created_at=dt.datetime(2025, 3, 4, 16, 30, tzinfo=UTC),
    )
    ns.sunfix_scan = RemoteOperationFactory(
        gateway=sunfix_gw,
        device_serial="GWSUN0001",
        user=tenants.sunfix_om,
        kind=OperationKind.SCAN,
        summary="Protocol scan",
        result={"devices": [{"address": 1, "model": "ECH10K-TH-EU", "serial": "INVSUN0001"}]},
        created_at=dt.datetime(2025, 3, 6, 8, 0, tzinfo=UTC),
    )
    ns.nordlicht_read = RemoteOperationFactory(
        gateway=nordlicht_gw,
        device_serial="INVNOR0001",
        user=tenants.nordlicht_om,
        summary="Read battery SOC",
        created_at=dt.datetime(2025, 3, 5, 9, 0, tzinfo=UTC),
    )
    return ns


def rows(response):
    return [row.record for row in response.context["table"].paginated_rows]


def csv_rows(response):
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- Permissions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(LIST_URL, marks=pytest.mark.matrix("maintenance:operations")),
        pytest.param(CSV_URL, marks=pytest.mark.matrix("maintenance:operations_csv")),
    ],
)
def test_permission_matrix_of_the_log_and_its_download(tenants, client_for, log, url):
    assert_matrix(tenants, client_for, url, Expect.tenant_wide(admin=200, om=200, owner=403))


@pytest.mark.parametrize(
    "make_url",
    [
        pytest.param(detail_url, marks=pytest.mark.matrix("maintenance:operation")),
        pytest.param(state_url, marks=pytest.mark.matrix("maintenance:operation_state")),
    ],
)
def test_permission_matrix_of_one_operation(tenants, client_for, log, make_url):
    # The SunFix site is granted to the owner: they see the record, but may not open it.
    assert_matrix(tenants, client_for, make_url(log.sunfix_write), Expect())


def test_an_operation_outside_the_owners_sites_is_not_acknowledged(tenants, client_for, log):
    response = client_for(tenants.owner).get(detail_url(log.helios_read))
    assert response.status_code == 404


def test_maintenance_menu_leads_staff_to_the_log(tenants, client_for, log):
    page = client_for(tenants.helios_om).get("/").content.decode()
    assert 'href="/maintenance/"' in page
    response = client_for(tenants.helios_om).get("/maintenance/")
    assert response.status_code == 302 and response.url == LIST_URL


def test_owners_keep_the_maintenance_placeholder(tenants, client_for):
    response = client_for(tenants.owner).get("/maintenance/")
    assert response.status_code == 200
    assert "placeholder.html" in [t.name for t in response.templates]


# --- The list -------------------------------------------------------------------------------


def test_newest_first_with_every_column(tenants, client_for, log):
    response = client_for(tenants.helios_admin).get(LIST_URL)
    assert rows(response) == [log.sunfix_scan, log.sunfix_write, log.helios_read]
    table = response.content.decode().split('id="operation-table"')[1]
    for text in (
        "2025-03-04 16:30:00+00:00",
        "Operating mode",
        "INVSUN0001",
        "SunFix Barn",
        "GWSUN0001",
        "admin@sunfix.example",
        "Work mode → TOU Mode",
        "WorkMode: Self-use; ChargeCurrentLimit: 50 A",
        "WorkMode: TOU Mode; ChargeCurrentLimit: 60 A",
        "text-bg-danger",
        "Gateway answered with Modbus exception 2",
        detail_url(log.sunfix_write),
    ):
        assert text in table, text


def test_times_are_shown_in_the_users_time_zone(tenants, client_for, log):
    tenants.helios_admin.time_zone = "Asia/Shanghai"
    tenants.helios_admin.save()
    html = client_for(tenants.helios_admin).get(LIST_URL).content.decode()
    assert "2025-03-05 00:30:00+08:00" in html


def test_a_foreign_tenants_operations_never_appear(tenants, client_for, log):
    assert rows(client_for(tenants.nordlicht_admin).get(LIST_URL)) == [log.nordlicht_read]
    html = client_for(tenants.helios_admin).get(LIST_URL).content.decode()
    assert "INVNOR0001" not in html and "Nord Hall" not in html


def test_a_sub_company_sees_only_its_subtree(tenants, client_for, log):
    response = client_for(tenants.sunfix_om).get(LIST_URL)
    assert rows(response) == [log.sunfix_scan, log.sunfix_write]
    _, *data = csv_rows(client_for(tenants.sunfix_om).get(CSV_URL))
    assert [row[3] for row in data] == ["GWSUN0001", "INVSUN0001"]
    sites = [str(choice[1]) for choice in response.context["filter_form"].fields["site"].choices]
    assert "SunFix Barn" in sites and "Helios Roof" not in sites


def test_pages_of_25_rows(tenants, client_for, log):
    RemoteOperationFactory.create_batch(30, gateway=log.helios_gw)
    response = client_for(tenants.helios_admin).get(LIST_URL)
    assert len(rows(response)) == 25
    assert len(rows(client_for(tenants.helios_admin).get(LIST_URL, {"page": 2}))) == 8


def test_htmx_pagination_renders_only_the_table(tenants, client_for, log):
    response = client_for(tenants.helios_admin).get(LIST_URL, headers=HTMX_TABLE)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="operation-table"')
    assert 'name="date_from"' not in html  # no filter form: only the table and its actions


def test_empty_log_and_no_match_messages(tenants, client_for):
    html = client_for(tenants.helios_admin).get(LIST_URL).content.decode()
    assert "No remote operation has been carried out on your devices yet." in html
    html = client_for(tenants.helios_admin).get(LIST_URL, {"sn": "nothing"}).content.decode()
    assert "No operation matches these filters." in html


def test_the_number_of_queries_does_not_grow_with_the_rows(
    tenants, client_for, log, django_assert_max_num_queries
):
    client = client_for(tenants.helios_admin)
    with CaptureQueriesContext(connection) as few:
        assert client.get(LIST_URL).status_code == 200
    for _ in range(20):
        RemoteOperationFactory(
            gateway=GatewayFactory(site=SiteFactory(company=tenants.sunfix)),
            user=tenants.sunfix_om,
            after=WORK_MODE_AFTER,
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST_URL)
    assert len(rows(response)) == 23


# --- Filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sn": "invsun"}, ["sunfix_write"]),  # device SN, case-insensitive
        ({"sn": "GWSUN"}, ["sunfix_scan", "sunfix_write"]),  # gateway SN
        ({"kind": "scan"}, ["sunfix_scan"]),
        ({"state": "failed"}, ["sunfix_write"]),
        ({"state": "succeeded", "kind": "read"}, ["helios_read"]),
        ({"date_from": "2025-03-05"}, ["sunfix_scan"]),
        ({"date_to": "2025-03-04"}, ["sunfix_write", "helios_read"]),
        ({"date_from": "2025-03-04", "date_to": "2025-03-04"}, ["sunfix_write", "helios_read"]),
    ],
)
def test_each_filter_narrows_the_rows(tenants, client_for, log, params, expected):
    response = client_for(tenants.helios_admin).get(LIST_URL, params)
    assert response.status_code == 200
    assert rows(response) == [getattr(log, name) for name in expected]


def test_site_and_user_filters(tenants, client_for, log):
    client = client_for(tenants.helios_admin)
    site = log.sunfix_gw.site
    assert rows(client.get(LIST_URL, {"site": site.pk})) == [log.sunfix_scan, log.sunfix_write]
    assert rows(client.get(LIST_URL, {"user": tenants.helios_om.pk})) == [log.helios_read]


def test_the_time_range_is_read_in_the_users_time_zone(tenants, client_for, log):
    # 2025-03-04 16:30 UTC is already 5 March in Shanghai.
    tenants.helios_admin.time_zone = "Asia/Shanghai"
    tenants.helios_admin.save()
    client = client_for(tenants.helios_admin)
    assert rows(client.get(LIST_URL, {"date_to": "2025-03-04"})) == [log.helios_read]
    assert rows(client.get(LIST_URL, {"date_from": "2025-03-05", "date_to": "2025-03-05"})) == [
        log.sunfix_write
    ]


def test_filter_choices_are_scoped(tenants, client_for, log):
    form = client_for(tenants.helios_admin).get(LIST_URL).context["filter_form"]
    emails = {str(label) for _, label in form.fields["user"].choices}
    assert "om@sunfix.example" in emails and "om@nordlicht.example" not in emails
    sites = {str(label) for _, label in form.fields["site"].choices}
    assert "Nord Hall" not in sites


@pytest.mark.parametrize(
    "params",
    [
        {"state": "exploded"},
        {"kind": "teleport"},
        {"site": "not-a-number"},
        {"date_from": "yesterday"},
        {"date_to": "0001-01-01"},
        {"date_to": "9999-12-31"},
        {"date_from": "2025-03-06", "date_to": "2025-03-01"},
        {"sn": "x" * 65},
    ],
)
def test_invalid_filters_show_a_form_error(tenants, client_for, log, params):
    response = client_for(tenants.helios_admin).get(LIST_URL, params)
    assert response.status_code == 200
    assert response.context["filter_form"].errors
    html = response.content.decode()
    assert 'class="invalid-feedback' in html or 'class="alert alert-danger' in html
    assert rows(response) == []
    assert client_for(tenants.helios_admin).get(CSV_URL, params).status_code == 400


def test_a_foreign_site_or_user_is_not_a_valid_choice(tenants, client_for, log):
    client = client_for(tenants.helios_admin)
    for params in ({"site": log.nordlicht_gw.site.pk}, {"user": tenants.nordlicht_om.pk}):
        response = client.get(LIST_URL, params)
        assert response.status_code == 200
        assert response.context["filter_form"].errors
        assert rows(response) == []


# --- Download -------------------------------------------------------------------------------


def test_csv_has_a_header_and_the_filtered_rows_of_every_page(tenants, client_for, log):
    RemoteOperationFactory.create_batch(30, gateway=log.sunfix_gw, device_serial="INVSUN0002")
    response = client_for(tenants.helios_admin).get(CSV_URL, {"sn": "INVSUN"})
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    header, *data = csv_rows(response)
    assert header == [
        "Time",
        "State",
        "Type",
        "Device SN",
        "Operation",
        "Before",
        "After",
        "Error",
        "Site",
        "Gateway",
        "User",
        "Command ID",
        "Sent",
        "Finished",
    ]
    assert len(data) == 31
    write = next(row for row in data if row[11] == log.sunfix_write.command_id)
    assert write[:11] == [
        "2025-03-04 16:30:00+00:00",
        "Failed",
        "Operating mode",
        "INVSUN0001",
        "Work mode → TOU Mode",
        "WorkMode: Self-use; ChargeCurrentLimit: 50 A",
        "WorkMode: TOU Mode; ChargeCurrentLimit: 60 A",
        "Gateway answered with Modbus exception 2",
        "SunFix Barn",
        "GWSUN0001",
        "admin@sunfix.example",
    ]


def test_csv_is_scoped_and_localised(tenants, client_for, log):
    tenants.nordlicht_admin.language = "de"
    tenants.nordlicht_admin.time_zone = "Europe/Berlin"
    tenants.nordlicht_admin.save()
    header, *data = csv_rows(client_for(tenants.nordlicht_admin).get(CSV_URL))
    assert header[:5] == ["Zeit", "Status", "Typ", "Geräte-SN", "Vorgang"]
    assert header[8] == "Anlage"
    assert [row[3] for row in data] == ["INVNOR0001"]
    assert data[0][0] == "2025-03-05 10:00:00+01:00"
    assert data[0][2] == "Register lesen" and data[0][1] == "Erfolgreich"


def test_csv_keeps_spreadsheet_formulas_inert(tenants, client_for, log):
    RemoteOperationFactory(gateway=log.helios_gw, summary="=HYPERLINK(1)")
    _, *data = csv_rows(client_for(tenants.helios_admin).get(CSV_URL, {"kind": "read"}))
    assert "'=HYPERLINK(1)" in [row[4] for row in data]


# --- One operation --------------------------------------------------------------------------


def test_detail_shows_everything_of_the_record(tenants, client_for, log):
    html = client_for(tenants.helios_admin).get(detail_url(log.sunfix_write)).content.decode()
    for text in (
        "Work mode → TOU Mode",
        "INVSUN0001",
        "GWSUN0001",
        "SunFix Barn",
        "admin@sunfix.example",
        log.sunfix_write.command_id,
        "WorkMode",
        "Self-use",
        "TOU Mode",
        "50 A",
        "60 A",
        "Gateway answered with Modbus exception 2",
        "&quot;frame&quot;: &quot;0110&quot;",  # the command
        "tou",  # the request
    ):
        assert text in html, text


def test_detail_lists_scanned_devices(tenants, client_for, log):
    html = client_for(tenants.helios_admin).get(detail_url(log.sunfix_scan)).content.decode()
    assert "Address 1" in html and "ECH10K-TH-EU · INVSUN0001" in html


@pytest.mark.parametrize(
    "odd",
    [
        [1, 2, 3],
        "just text",
        {"values": [1, 2]},
        {"values": {"x": 5, "y": {"name": None}, "z": {"value": {"nested": True}, "unit": 3}}},
        {"devices": ["?", {"address": None}, {}]},
        {"settings": {"interval": 60, "apn": {"name": "internet"}}},
        {"anything": {"deep": [None, True]}},
    ],
)
def test_any_json_shape_renders(tenants, client_for, log, odd):
    operation = RemoteOperationFactory(
        gateway=log.helios_gw, request=odd, before=odd, after=odd, result=odd, command=odd
    )
    client = client_for(tenants.helios_admin)
    assert client.get(detail_url(operation)).status_code == 200
    assert client.get(LIST_URL).status_code == 200
    assert len(csv_rows(client.get(CSV_URL))) == 5


@pytest.mark.parametrize("state", [OperationState.QUEUED, OperationState.SENT])
def test_a_pending_operation_polls_its_state(tenants, client_for, log, state):
    pending = RemoteOperationFactory(gateway=log.sunfix_gw, state=state, after={})
    client = client_for(tenants.helios_om)
    detail = client.get(detail_url(pending)).content.decode()
    assert POLLING in detail and f'hx-get="{state_url(pending)}"' in detail
    partial = client.get(state_url(pending))
    assert POLLING in partial.content.decode()
    assert "HX-Trigger" not in partial
    assert POLLING in client.get(LIST_URL).content.decode()


@pytest.mark.parametrize(
    "state", [OperationState.SUCCEEDED, OperationState.FAILED, OperationState.EXPIRED]
)
def test_a_finished_operation_does_not_poll(tenants, client_for, log, state):
    finished = RemoteOperationFactory(gateway=log.sunfix_gw, state=state)
    client = client_for(tenants.helios_om)
    assert POLLING not in client.get(detail_url(finished)).content.decode()
    partial = client.get(state_url(finished))
    assert partial.status_code == 200 and POLLING not in partial.content.decode()
    assert "operation-finished" in partial["HX-Trigger"]
    assert POLLING not in client.get(LIST_URL).content.decode()


def test_the_values_refresh_when_the_operation_finishes(tenants, client_for, log):
    pending = RemoteOperationFactory(gateway=log.sunfix_gw, state=OperationState.SENT)
    client = client_for(tenants.helios_om)
    assert "operation-finished from:body" in client.get(detail_url(pending)).content.decode()
    pending.state = OperationState.SUCCEEDED
    pending.after = WORK_MODE_AFTER
    pending.save()
    partial = client.get(
        detail_url(pending), headers={"HX-Request": "true", "HX-Target": "operation-values"}
    ).content.decode()
    assert partial.lstrip().startswith('<div id="operation-values"')
    assert "TOU Mode" in partial and "operation-finished" not in partial


# --- Columns the user chooses, and downloads of the selected rows ----------------------------

DEFAULT_COLUMNS = ["created_at", "state", *OperationTable.default_columns()]


def columns(response):
    return response.context["table"].visible_columns


def xlsx_rows(response):
    assert response["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    body = b"".join(response.streaming_content)
    sheet = load_workbook(io.BytesIO(body), read_only=True).active
    return [
        ["" if value is None else value for value in row]
        for row in sheet.iter_rows(values_only=True)
    ]


def test_the_log_shows_every_column_until_the_user_chooses(tenants, client_for, log):
    response = client_for(tenants.helios_admin).get(LIST_URL)
    assert columns(response) == DEFAULT_COLUMNS
    html = response.content.decode()
    # Time and State are always shown; every other column of the page can be hidden.
    assert re.search(r'value="state" id="operation-table-column-state" checked disabled', html)
    assert re.search(r'value="site" id="operation-table-column-site" checked>', html)
    assert 'id="operation-table-column-command_id"' not in html  # only in downloads


def test_the_column_choice_is_kept_for_the_user_and_this_table(tenants, client_for, log):
    admin = client_for(tenants.helios_admin)
    response = admin.post(f"{LIST_URL}?state=failed", {"columns": ["site", "error"]})
    assert response.status_code == 302 and response["Location"] == f"{LIST_URL}?state=failed"

    chosen = ["created_at", "state", "error", "site"]
    assert columns(admin.get(LIST_URL)) == chosen
    # After signing in again (a new session) the choice still applies …
    assert columns(client_for(tenants.helios_admin).get(LIST_URL)) == chosen
    # … to this user only, and to this table only.
    assert columns(client_for(tenants.helios_om).get(LIST_URL)) == DEFAULT_COLUMNS
    assert chosen_columns(tenants.helios_admin, OperationTable) == ["error", "site"]
    assert chosen_columns(tenants.helios_admin, UserTable) is None
    client_for(tenants.helios_admin).post(
        reverse("accounts:company_users", args=[tenants.sunfix.pk]), {"columns": ["email"]}
    )
    assert columns(admin.get(LIST_URL)) == chosen

    # Reset brings the defaults back.
    admin.post(LIST_URL, {"reset": "1"})
    assert columns(admin.get(LIST_URL)) == DEFAULT_COLUMNS


def test_the_chooser_answers_htmx_with_the_table_and_fresh_actions(tenants, client_for, log):
    response = client_for(tenants.helios_om).post(
        f"{LIST_URL}?kind=mode", {"columns": ["device_serial"]}, headers=HTMX_TABLE
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="operation-table"')
    assert columns(response) == ["created_at", "state", "device_serial"]
    assert rows(response) == [log.sunfix_write]
    assert 'id="operation-table-actions"' in html and 'hx-swap-oob="true"' in html
    assert "kind=mode&amp;export=csv" in html


def test_a_download_has_the_columns_the_user_sees_and_the_download_only_ones(
    tenants, client_for, log
):
    admin = client_for(tenants.helios_admin)
    admin.post(LIST_URL, {"columns": ["device_serial", "site"]})
    header, *data = csv_rows(admin.get(LIST_URL, {"export": "csv", "kind": "mode"}))
    assert header == ["Time", "State", "Device SN", "Site", "Command ID", "Sent", "Finished"]
    assert data == [
        [
            "2025-03-04 16:30:00+00:00",
            "Failed",
            "INVSUN0001",
            "SunFix Barn",
            log.sunfix_write.command_id,
            "",
            "",
        ]
    ]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_download_holds_exactly_the_filtered_rows_of_every_page(tenants, client_for, log, fmt):
    RemoteOperationFactory.create_batch(30, gateway=log.sunfix_gw, device_serial="INVSUN0002")
    RemoteOperationFactory.create_batch(
        3, gateway=log.sunfix_gw, device_serial="INVSUN0003", state=OperationState.FAILED
    )
    # A foreign tenant's operation that the filters would match.
    RemoteOperationFactory(gateway=log.nordlicht_gw, device_serial="INVSUN0009")
    params = {"sn": "invsun", "state": "succeeded", "sort": "-created_at", "page": "2"}
    client = client_for(tenants.helios_admin)
    assert client.get(LIST_URL, params).context["table"].paginator.count == 30

    response = client.get(LIST_URL, {**params, "export": fmt})
    assert response.status_code == 200
    assert re.fullmatch(
        rf'attachment; filename="operations-\d{{8}}\.{fmt}"', response["Content-Disposition"]
    )
    header, *data = csv_rows(response) if fmt == "csv" else xlsx_rows(response)
    expected = list(
        RemoteOperation.objects.filter(
            company__in=[tenants.helios, tenants.sunfix],
            device_serial__icontains="invsun",
            state=OperationState.SUCCEEDED,
        )
        .order_by("-created_at", "-id")
        .values_list("command_id", flat=True)
    )
    assert len(expected) == 30
    assert [row[header.index("Command ID")] for row in data] == expected
    assert {row[header.index("State")] for row in data} == {"Succeeded"}


def test_the_download_address_gives_the_csv_of_the_list(tenants, client_for, log):
    client = client_for(tenants.helios_admin)
    params = {"kind": "read"}
    by_address = csv_rows(client.get(CSV_URL, params))
    by_list = csv_rows(client.get(LIST_URL, {**params, "export": "csv"}))
    assert by_address == by_list and len(by_address) == 2
    assert client.post(CSV_URL, {"columns": ["site"]}).status_code == 405
    assert not TablePreference.objects.exists()


def test_a_poll_leaves_the_page_actions_alone(tenants, client_for, log):
    """The block fetching itself while a row is pending gets the table only; a sort or a page
    change gets the actions too, since their download links follow the query."""
    RemoteOperationFactory(gateway=log.helios_gw, state=OperationState.QUEUED, after={})
    client = client_for(tenants.helios_om)
    poll = client.get(LIST_URL, headers={**HTMX_TABLE, "HX-Trigger": "operation-table"})
    html = poll.content.decode()
    assert html.lstrip().startswith('<div id="operation-table"') and POLLING in html
    assert "hx-swap-oob" not in html
    sorted_again = client.get(LIST_URL, {"sort": "site"}, headers=HTMX_TABLE)
    assert "hx-swap-oob" in sorted_again.content.decode()


def test_the_download_links_keep_the_filters_and_the_sort(tenants, client_for, log):
    html = client_for(tenants.helios_admin).get(
        LIST_URL, {"state": "failed", "sort": "site", "page": "1"}
    )
    links = re.findall(r'href="([^"]*export=[^"]*)"', html.content.decode())
    assert len(links) == 2
    for link in links:
        assert "state=failed" in link and "sort=site" in link and "page=" not in link
    # Filtering again keeps the sort.
    assert '<input type="hidden" name="sort" value="site">' in html.content.decode()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_chooser_stays_open_while_the_log_polls(page, tenants, log):
    RemoteOperationFactory(
        gateway=log.helios_gw,
        device_serial="INVHEL0001",
        user=tenants.helios_om,
        kind=OperationKind.WRITE,
        summary="Battery charge limit → 95 %",
        state=OperationState.SENT,
        after={},
    )
    site = page.locator("#operation-table th", has_text="Site")
    sign_in(page, tenants.helios_om.email)
    page.goto(LIST_URL)
    assert site.count() == 1

    page.click("#operation-table-columns-toggle")
    # The pending row makes the table fetch itself again; the open chooser stays open.
    with page.expect_response(
        lambda response: response.request.headers.get("hx-trigger") == "operation-table"
    ):
        pass
    page.wait_for_timeout(300)
    assert page.is_visible("#operation-table-actions .column-chooser")
    page.uncheck("#operation-table-column-site")
    page.click("#operation-table-actions button:has-text('Confirm')")
    site.wait_for(state="detached")
    page.reload()
    page.wait_for_selector("#operation-table table")
    assert site.count() == 0
