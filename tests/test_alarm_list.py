"""The alarm list (guide §8.1, §6.2.5): one component (alarms.lists) with the guide's filters and
columns, mounted in a site's Alarm tab and — as Maintenance → Alarm Management will mount it —
on a page of its own (this module's URLconf)."""

import csv
import datetime as dt
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from guardian.shortcuts import assign_perm
from openpyxl import load_workbook

from accounts.views.generic import ObjectListView
from alarms.lists import COMMON_TIME_ZONES, AlarmListMixin, time_zone_choices
from matricloud import urls as portal_urls
from tests.browser import CHROMIUM, sign_in
from tests.factories import AlarmFactory, GatewayFactory, InverterFactory, SiteFactory
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

UTC = dt.UTC
HTMX_TABLE = {"HX-Request": "true", "HX-Target": "alarm-table"}
HTMX_TAB = {"HX-Request": "true", "HX-Target": "tab-panel"}
SITE_COLUMNS = ["Alarm type", "Time", "Device name", "Fault code", "Alarm info", "Status"]
# The filters every mounting of the list has, after its own (a site's device, or site and SN).
COMMON_FILTERS = ["level", "info", "status", "tz", "date_from", "date_to"]
# The Barn's alarms, newest first (the fixture `fleet`).
BARN_CODES = ["Fault0201", "Protect0080", "Warn0070", "Info0010"]


# --- A page of its own, as Maintenance → Alarm Management mounts the component -----------------


class AllAlarmsView(AlarmListMixin, ObjectListView):
    action = "site.view"
    template_name = "ui/list.html"


def _alarm_page(request, pk):  # stands in for the alarm's page of issue 16
    from django.http import HttpResponse

    return HttpResponse(f"alarm {pk}")


urlpatterns = [
    path("test-alarms/", AllAlarmsView.as_view(), name="test_alarms"),
    path(
        "test-alarm/",
        include(([path("<int:pk>/", _alarm_page, name="detail")], "alarms")),
    ),
    *portal_urls.urlpatterns,
]
ALL_URL = "/test-alarms/"


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


def alarm(inverter, level, code, message, occurred_at, recovered_at=None):
    """An alarm still occurring, or recovered at `recovered_at`."""
    return AlarmFactory(
        inverter=inverter,
        level=level,
        code=code,
        message=message,
        occurred_at=occurred_at,
        status="recovered" if recovered_at else "occurring",
        recovered_at=recovered_at,
    )


@pytest.fixture
def fleet(tenants):
    """SunFix's "Barn" (Rome, granted to the owner) with two inverters and four alarms, a
    SunFix site not granted, a Helios site in New York, and a Nordlicht site."""
    barn = SiteFactory(company=tenants.sunfix, name="Barn", time_zone="Europe/Rome")
    assign_perm("pv_sites.view_site", tenants.owner, barn)
    barn_gw = GatewayFactory(site=barn)
    west = InverterFactory(gateway=barn_gw, serial_number="INVBARN001", name="Barn west")
    east = InverterFactory(gateway=barn_gw, serial_number="INVBARN002", modbus_address=2)
    shed = SiteFactory(company=tenants.sunfix, name="Shed")
    roof = SiteFactory(company=tenants.helios, name="Helios Roof", time_zone="America/New_York")
    roof_inverter = InverterFactory(gateway=GatewayFactory(site=roof), serial_number="INVROOF01")
    nord = SiteFactory(company=tenants.nordlicht, name="Nord Hall")
    nord_inverter = InverterFactory(gateway=GatewayFactory(site=nord), serial_number="INVNORD01")
    ns = SimpleNamespace(barn=barn, shed=shed, roof=roof, nord=nord, west=west, east=east)
    ns.bms = alarm(
        west,
        "urgent",
        "Fault0201",
        "BMS Comm Fault",
        at(2024, 12, 4, 12, 12, 34),
        at(2024, 12, 4, 12, 40),
    )
    # 00:30 on 4 December in Rome, still 3 December in UTC.
    ns.undervolt = alarm(
        west, "important", "Protect0080", "Grid Undervolt", at(2024, 12, 3, 23, 30)
    )
    ns.low_batt = alarm(east, "common", "Warn0070", "Low Batt volt", at(2024, 12, 1, 8))
    ns.firmware = alarm(
        east, "prompt", "Info0010", "=Firmware ready", at(2024, 11, 20, 10), at(2024, 11, 20, 11)
    )
    ns.roof_alarm = alarm(roof_inverter, "urgent", "Fault0300", "Roof fault", at(2024, 12, 2, 9))
    ns.nord_alarm = alarm(nord_inverter, "urgent", "Fault0400", "Foreign fault", at(2024, 12, 2, 9))
    return ns


def tab_url(site, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/site/{site.pk}/alarm/" + (f"?{query}" if query else "")


def rows(response):
    return list(response.context["table"].paginated_rows)


def codes(response):
    return [row.record.code for row in rows(response)]


def headers(response):
    table = response.context["table"]
    return [str(column.header) for column in table.columns if column.visible]


def download(response):
    assert response.status_code == 200, response.content
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def field_errors(response, name):
    form = response.context["filter_form"]
    return [str(error) for error in form.errors.get(name, [])]


# --- Permissions and scope ----------------------------------------------------------------------


@pytest.mark.matrix("sites:alarm")
def test_permission_matrix_of_the_alarm_tab(tenants, client_for, fleet):
    # The owner sees the tab of the site granted to them; a foreign tenant does not find it.
    assert_matrix(tenants, client_for, tab_url(fleet.barn), Expect(owner=200))
    assert_matrix(tenants, client_for, tab_url(fleet.barn, export="csv"), Expect(owner=200))
    assert_matrix(tenants, client_for, tab_url(fleet.barn), Expect(owner=200), headers=HTMX_TAB)


def test_an_owner_sees_only_the_granted_site(tenants, client_for, fleet):
    client = client_for(tenants.owner)
    assert codes(client.get(tab_url(fleet.barn))) == BARN_CODES
    assert client.get(tab_url(fleet.shed)).status_code == 404
    assert client.get(tab_url(fleet.roof)).status_code == 404
    assert client.get(tab_url(fleet.nord, export="csv")).status_code == 404


def test_the_tab_lists_only_the_sites_alarms_newest_first(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(tab_url(fleet.barn))
    assert response.status_code == 200
    assert codes(response) == BARN_CODES
    html = response.content.decode()
    assert "Roof fault" not in html and "Foreign fault" not in html


def test_the_columns_are_the_guides(tenants, client_for, fleet):
    response = client_for(tenants.helios_admin).get(tab_url(fleet.barn))
    # Figure 6-21: no Site column on a site's page; Operation is there, empty until alarms
    # have a page of their own.
    assert headers(response) == [*SITE_COLUMNS, "Operation"]
    html = response.content.decode()
    assert (
        '<span class="badge rounded-pill status-pill alarm-level alarm-level-urgent">Urgent<'
        in (html)
    )
    assert "alarm-level-important" in html and "alarm-level-common" in html
    assert "alarm-level-prompt" in html
    assert "alarm-status-recovered" in html and ">Occurring<" in html
    assert "INVBARN001" in html and "Barn west" in html and "BMS Comm Fault" in html
    assert ">Check<" not in html


def test_the_filters_of_the_site_tab(tenants, client_for, fleet):
    form = client_for(tenants.helios_om).get(tab_url(fleet.barn)).context["filter_form"]
    assert list(form.fields) == ["device", *COMMON_FILTERS]
    devices = [label for value, label in form.fields["device"].choices if value]
    assert devices == ["INVBARN001 · Barn west", "INVBARN002"]


# --- Filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"level": "urgent"}, ["Fault0201"]),
        ({"level": "prompt"}, ["Info0010"]),
        ({"status": "recovered"}, ["Fault0201", "Info0010"]),
        ({"status": "occurring"}, ["Protect0080", "Warn0070"]),
        ({"info": "undervolt"}, ["Protect0080"]),
        ({"info": "fault0201"}, ["Fault0201"]),  # the fault code
        ({"info": "  batt "}, ["Warn0070"]),
        ({"level": "urgent", "status": "occurring"}, []),
        # Days in the site's zone: 00:30 on 4 December in Rome is that day.
        ({"date_from": "2024-12-04"}, ["Fault0201", "Protect0080"]),
        ({"date_from": "2024-12-04", "tz": "UTC"}, ["Fault0201"]),
        ({"date_to": "2024-12-03"}, ["Warn0070", "Info0010"]),
        ({"date_to": "2024-12-03", "tz": "UTC"}, ["Protect0080", "Warn0070", "Info0010"]),
        ({"date_from": "2024-12-01", "date_to": "2024-12-01"}, ["Warn0070"]),
        ({"date_from": "1970-01-01", "date_to": "2999-12-31"}, BARN_CODES),  # everything
    ],
)
def test_each_filter_narrows_the_rows(tenants, client_for, fleet, params, expected):
    response = client_for(tenants.helios_om).get(tab_url(fleet.barn, **params))
    assert response.status_code == 200
    assert codes(response) == expected


def test_select_device(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    assert codes(client.get(tab_url(fleet.barn, device=fleet.east.pk))) == [
        "Warn0070",
        "Info0010",
    ]
    assert codes(client.get(tab_url(fleet.barn, device=fleet.west.pk))) == [
        "Fault0201",
        "Protect0080",
    ]


def test_nothing_matches_says_so_and_offers_to_clear(tenants, client_for, fleet):
    html = client_for(tenants.helios_om).get(tab_url(fleet.barn, info="nothing")).content
    html = html.decode()
    assert "No alarm matches these filters." in html
    assert f'href="/site/{fleet.barn.pk}/alarm/"' in html and "Show all alarms" in html


def test_a_site_without_alarms_says_so(tenants, client_for, fleet):
    html = client_for(tenants.helios_om).get(tab_url(fleet.shed)).content.decode()
    assert "This site has no alarms." in html


# --- Time zone ----------------------------------------------------------------------------------


def test_times_are_in_the_sites_zone_by_default(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(tab_url(fleet.barn))
    html = response.content.decode()
    assert "2024-12-04 13:12:34+01:00" in html
    assert "2024-12-04 00:30:00+01:00" in html
    assert "Times in Europe/Rome" in html
    assert '<option value="Europe/Rome" selected>' in html


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("America/New_York", "2024-12-04 07:12:34-05:00"),
        ("Asia/Kolkata", "2024-12-04 17:42:34+05:30"),
        ("UTC", "2024-12-04 12:12:34+00:00"),
    ],
)
def test_the_chosen_time_zone_shows_the_times(tenants, client_for, fleet, zone, shown):
    html = client_for(tenants.helios_om).get(tab_url(fleet.barn, tz=zone)).content.decode()
    assert shown in html
    assert f'<option value="{zone}" selected>' in html


def test_a_site_zone_the_tz_database_does_not_know_falls_back_to_the_viewers(
    tenants, client_for, fleet
):
    fleet.barn.time_zone = "Mars/Olympus_Mons"
    fleet.barn.save()
    tenants.helios_om.time_zone = "Asia/Tokyo"
    tenants.helios_om.save()
    html = client_for(tenants.helios_om).get(tab_url(fleet.barn)).content.decode()
    assert "2024-12-04 21:12:34+09:00" in html and "Mars/" not in html


def test_the_time_zone_choices_are_known_zones_with_their_offsets():
    choices = dict(time_zone_choices("Europe/Rome", "Mars/Base", "America/Phoenix"))
    assert set(COMMON_TIME_ZONES) <= set(choices)
    assert "Mars/Base" not in choices
    assert choices["Asia/Kolkata"] == "Asia/Kolkata (UTC+05:30)"
    assert choices["America/Phoenix"] == "America/Phoenix (UTC-07:00)"
    offsets = [label.rsplit("(UTC", 1)[1] for label in choices.values()]
    as_minutes = [int(o[:3]) * 60 + (1 if o[0] == "+" else -1) * int(o[4:6]) for o in offsets]
    assert as_minutes == sorted(as_minutes)  # west to east


# --- Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"level": "catastrophic"}, "level", "Select a valid choice."),
        ({"status": "gone"}, "status", "Select a valid choice."),
        ({"tz": "Mars/Olympus_Mons"}, "tz", "Select a valid choice."),
        ({"tz": "../../etc/passwd"}, "tz", "Select a valid choice."),
        ({"device": "99999999999999999999"}, "device", "Select a valid choice."),
        ({"device": "abc"}, "device", "Select a valid choice."),
        ({"date_from": "2024-13-45"}, "date_from", "Enter a valid date."),
        ({"date_to": "yesterday"}, "date_to", "Enter a valid date."),
        ({"date_from": "0001-01-01"}, "date_from", "Enter a date between 1970-01-01"),
        ({"info": "x\x00y"}, "info", "Null characters are not allowed."),
        ({"info": "x" * 201}, "info", "at most 200 characters"),
    ],
)
def test_bad_filters_are_messages_on_their_fields(
    tenants, client_for, fleet, params, field, message
):
    response = client_for(tenants.helios_om).get(tab_url(fleet.barn), params)
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert rows(response) == []
    assert message.split(" 1970")[0] in response.content.decode()


def test_a_device_of_another_site_is_refused(tenants, client_for, fleet):
    roof_inverter = fleet.roof_alarm.inverter
    response = client_for(tenants.helios_admin).get(tab_url(fleet.barn, device=roof_inverter.pk))
    assert field_errors(response, "device") and rows(response) == []
    assert "Roof fault" not in response.content.decode()


def test_dates_in_the_wrong_order_are_refused(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(
        tab_url(fleet.barn, date_from="2024-12-05", date_to="2024-12-01")
    )
    assert response.status_code == 200 and rows(response) == []
    assert "The start date must not be after the end date." in response.content.decode()
    download = client_for(tenants.helios_om).get(
        tab_url(fleet.barn, date_from="2024-12-05", date_to="2024-12-01", export="csv")
    )
    assert download.status_code == 400
    assert "The start date must not be after the end date." in download.content.decode()


# --- Downloads ----------------------------------------------------------------------------------


def test_the_download_holds_exactly_the_filtered_rows(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    lines = download(client.get(tab_url(fleet.barn, status="recovered", export="csv")))
    assert lines == [
        [*SITE_COLUMNS, "Recovered", "Inverter name"],
        [
            "Urgent",
            "2024-12-04 13:12:34+01:00",
            "INVBARN001",
            "Fault0201",
            "BMS Comm Fault",
            "Recovered",
            "2024-12-04 13:40:00+01:00",
            "Barn west",
        ],
        [
            "Prompt",
            "2024-11-20 11:00:00+01:00",
            "INVBARN002",
            "Info0010",
            "'=Firmware ready",  # a spreadsheet would run it as a formula
            "Recovered",
            "2024-11-20 12:00:00+01:00",
            "",
        ],
    ]


def test_the_download_uses_the_chosen_time_zone_and_every_page(tenants, client_for, fleet):
    for n in range(30):
        AlarmFactory(
            inverter=fleet.east,
            code=f"Warn{n:04d}",
            status="recovered",
            occurred_at=at(2024, 10, 1, 0, n),
        )
    client = client_for(tenants.helios_om)
    page = client.get(tab_url(fleet.barn, tz="America/New_York"))
    assert len(rows(page)) == 25
    lines = download(client.get(tab_url(fleet.barn, tz="America/New_York", export="csv")))
    assert len(lines) == 1 + 34
    assert lines[1][1] == "2024-12-04 07:12:34-05:00"
    assert lines[-1][1] == "2024-09-30 20:00:00-04:00"


def test_the_xlsx_download_matches_the_csv(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    csv_lines = download(client.get(tab_url(fleet.barn, level="urgent", export="csv")))
    response = client.get(tab_url(fleet.barn, level="urgent", export="xlsx"))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="alarms-barn-')
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    cells = [
        ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
    ]
    assert cells == csv_lines


def test_the_download_links_keep_the_filters(tenants, client_for, fleet):
    html = client_for(tenants.helios_om).get(tab_url(fleet.barn, level="urgent", page=2))
    links = re.findall(r'href="([^"]+export=[^"]+)"', html.content.decode())
    assert links == [
        f"/site/{fleet.barn.pk}/alarm/?level=urgent&amp;export=csv",
        f"/site/{fleet.barn.pk}/alarm/?level=urgent&amp;export=xlsx",
    ]


# --- Sorting, paging, htmx ----------------------------------------------------------------------


def test_sorting_by_alarm_type_puts_the_most_severe_first(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    assert codes(client.get(tab_url(fleet.barn, sort="level"))) == BARN_CODES
    assert codes(client.get(tab_url(fleet.barn, sort="-level")))[0] == "Info0010"
    assert codes(client.get(tab_url(fleet.barn, sort="occurred_at")))[0] == "Info0010"


def test_htmx_sorting_swaps_only_the_table(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(
        tab_url(fleet.barn, sort="code"), headers=HTMX_TABLE
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="alarm-table"')
    assert "<form" not in html and 'id="alarm-table-actions" ' in html  # out of band
    assert "site-thumb" not in html and "nav-tabs" not in html


def test_a_tab_switch_swaps_the_panel_with_the_tab_bar(tenants, client_for, fleet):
    html = client_for(tenants.helios_om).get(tab_url(fleet.barn), headers=HTMX_TAB)
    html = html.content.decode()
    assert 'id="tab-panel-tabs" hx-swap-oob="true"' in html
    assert '<div id="tab-panel"' in html and 'id="alarm-table"' in html
    assert "<!doctype" not in html.lower() and "Fault0201" in html


def test_the_number_of_queries_does_not_grow(
    tenants, client_for, fleet, django_assert_max_num_queries
):
    client = client_for(tenants.helios_om)
    url = tab_url(fleet.barn, level="common")
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    gateway = fleet.west.gateway
    for n in range(40):
        inverter = InverterFactory(gateway=gateway, modbus_address=n + 3)
        AlarmFactory(inverter=inverter, occurred_at=at(2024, 12, 5, 0, n))
        AlarmFactory(inverter=inverter, code="Warn0040", occurred_at=at(2024, 12, 5, 1, n))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert len(rows(response)) == 25


# --- The component on a page of its own (Maintenance → Alarm Management) -------------------------


@pytest.mark.urls(__name__)
def test_fleet_wide_list_has_every_filter_and_column(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(ALL_URL)
    form = response.context["filter_form"]
    assert list(form.fields) == ["site", "sn", *COMMON_FILTERS]
    assert headers(response) == ["Alarm type", "Site", *SITE_COLUMNS[1:], "Operation"]
    sites = [label for value, label in form.fields["site"].choices if value]
    assert sites == ["Barn", "Helios Roof", "Shed"]
    assert "Foreign fault" not in response.content.decode()
    assert len(rows(response)) == 5
    # The viewer's zone (UTC) until they choose.
    assert "2024-12-04 12:12:34+00:00" in response.content.decode()


@pytest.mark.urls(__name__)
def test_fleet_wide_site_screening_and_sn(tenants, client_for, fleet):
    client = client_for(tenants.helios_om)
    assert codes(client.get(ALL_URL, {"site": fleet.roof.pk})) == ["Fault0300"]
    assert codes(client.get(ALL_URL, {"sn": "invbarn002"})) == ["Warn0070", "Info0010"]
    assert codes(client.get(ALL_URL, {"sn": "BARN", "level": "urgent"})) == ["Fault0201"]


@pytest.mark.urls(__name__)
def test_fleet_wide_a_foreign_site_is_a_message_not_its_rows(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(ALL_URL, {"site": fleet.nord.pk})
    assert response.status_code == 200
    assert field_errors(response, "site") and rows(response) == []
    assert "Foreign fault" not in response.content.decode()
    assert (
        client_for(tenants.helios_om)
        .get(ALL_URL, {"site": fleet.nord.pk, "export": "csv"})
        .status_code
        == 400
    )


@pytest.mark.urls(__name__)
def test_fleet_wide_an_owner_sees_only_the_granted_site(tenants, client_for, fleet):
    response = client_for(tenants.owner).get(ALL_URL)
    assert codes(response) == BARN_CODES
    assert field_errors(client_for(tenants.owner).get(ALL_URL, {"site": fleet.shed.pk}), "site")


@pytest.mark.urls(__name__)
def test_check_links_to_the_alarms_page_once_there_is_one(tenants, client_for, fleet):
    html = client_for(tenants.helios_om).get(ALL_URL, {"level": "prompt"}).content.decode()
    link = f'<a href="/test-alarm/{fleet.firmware.pk}/" class="btn btn-sm btn-outline-primary">'
    assert f"{link}Check</a>" in html
    lines = download(client_for(tenants.helios_om).get(ALL_URL, {"export": "csv"}))
    assert "Operation" not in lines[0] and lines[0][1] == "Site"


# --- In the browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_filtering_the_alarm_tab_in_the_browser(tenants, fleet, page):
    """A tab switch brings the list; a filter narrows it and the download follows it (the page
    fixture also checks the Content-Security-Policy and axe-core)."""
    sign_in(page, tenants.helios_om.email)
    page.goto(f"/site/{fleet.barn.pk}/settings/")
    page.click("#tab-panel-alarm")
    page.wait_for_selector("#alarm-table >> text=2024-12-04 13:12:34+01:00")
    assert page.locator("#alarm-table tbody tr").count() == 4
    page.select_option("#id_level", "urgent")
    page.select_option("#id_tz", "America/New_York")
    page.click(".filter-bar button[type=submit]")
    page.wait_for_url("**level=urgent**")
    page.wait_for_selector("#alarm-table >> text=2024-12-04 07:12:34-05:00")
    assert page.locator("#alarm-table tbody tr").count() == 1
    page.click("#alarm-table-actions >> text=Download")
    with page.expect_download() as started:
        page.click("#alarm-table-actions >> text=CSV")
    lines = list(csv.reader(open(started.value.path(), encoding="utf-8")))
    assert [line[3] for line in lines[1:]] == ["Fault0201"]
