"""Site → Site list (guide §6.1.1): the sites a user may see, searched by superior account,
status, name and user; the guide's columns, the chooser, sorting, pages, downloads, the empty
state, and the query count as the fleet grows."""

import csv
import io
import re

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from accounts.models import Role
from gateways.models import GatewayStatus
from inverters.models import InverterStatus
from tests.factories import (
    CompanyFactory,
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteEnergyDailyFactory,
    SiteFactory,
    UserFactory,
)
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

URL = reverse("sites:list")

#: The headers of the default columns, in order (the download has them without "Operation").
DEFAULT_HEADERS = [
    "Site status",
    "Site name",
    "Site type",
    "Region",
    "Online rate",
    "Capacity",
    "Power generation",
    "Power generation day",
    "Account",
]


def table_html(response) -> str:
    html = response.content.decode()
    return html.split("<table", 1)[1].split("</table>", 1)[0] if "<table" in html else ""


def headers(response) -> list[str]:
    thead = table_html(response).split("</thead>", 1)[0]
    return [
        re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", thead, re.S)
    ]


def row_names(response) -> list[str]:
    """The site names of the table's rows, in order."""
    return re.findall(r'class="fw-semibold text-decoration-none">([^<]+)</a>', table_html(response))


def download(client, query: str = "", fmt: str = "csv") -> list[list]:
    separator = "&" if query else ""
    response = client.get(f"{URL}?{query}{separator}export={fmt}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    if fmt == "csv":
        return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    return [[cell for cell in row] for row in sheet.iter_rows(values_only=True)]


def online_site(company, name, power_w=1500.0, **kwargs):
    site = SiteFactory(company=company, name=name, **kwargs)
    inverter = InverterFactory(
        gateway=GatewayFactory(site=site, status=GatewayStatus.ONLINE),
        status=InverterStatus.RUNNING,
    )
    InverterLatestFactory(inverter=inverter, pv_power=power_w)
    return site


def faulty_site(company, name):
    site = SiteFactory(company=company, name=name)
    InverterFactory(gateway=GatewayFactory(site=site), status=InverterStatus.FAULT)
    return site


@pytest.fixture
def fleet(tenants):
    """SunFix: Alpha online (1.5 kW, 12.5 kWh today), Bravo abnormal, Charlie offline (no
    devices); Nordlicht: Foreign online."""
    alpha = online_site(tenants.sunfix, "Alpha Roof", capacity_kwp=12)
    SiteEnergyDailyFactory(site=alpha, pv_kwh=12.5, day=_local_today(alpha))
    bravo = faulty_site(tenants.sunfix, "Bravo Barn")
    charlie = SiteFactory(company=tenants.sunfix, name="Charlie Shed", capacity_kwp=4)
    foreign = online_site(tenants.nordlicht, "Foreign Farm")
    return alpha, bravo, charlie, foreign


def _local_today(site):
    import datetime as dt
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(site.time_zone)).date()


@pytest.mark.matrix("sites:list")
def test_everyone_signed_in_opens_the_site_list(tenants, client_for):
    # Owners see their granted sites; a foreign user sees their own tenant's list.
    assert_matrix(tenants, client_for, URL, Expect.tenant_wide(admin=200, om=200, owner=200))


def test_staff_see_their_company_trees_sites_with_the_guides_columns(tenants, client_for, fleet):
    response = client_for(tenants.helios_om).get(URL)
    assert response.status_code == 200
    assert row_names(response) == ["Alpha Roof", "Bravo Barn", "Charlie Shed"]
    table = table_html(response)
    assert headers(response) == [*DEFAULT_HEADERS, "Operation"]
    alpha_row = table.split("Alpha Roof", 1)[1].split("</tr>", 1)[0]
    assert "1.5 kW" in alpha_row and "12.5 kWh" in alpha_row and "12 kWp" in alpha_row
    assert "100 %" in alpha_row
    assert ">Online<" in table and ">Abnormal<" in table and ">Offline<" in table
    charlie_row = table.split("Charlie Shed", 1)[1].split("</tr>", 1)[0]
    assert "–" in charlie_row  # no devices: no power, no online rate
    assert "Foreign Farm" not in response.content.decode()


def test_a_site_name_links_to_its_page(tenants, client_for, fleet):
    alpha = fleet[0]
    html = client_for(tenants.sunfix_om).get(URL).content.decode()
    assert f'href="{reverse("sites:detail", args=[alpha.pk])}"' in html


@pytest.mark.parametrize(
    ("status", "expected"),
    [("online", ["Alpha Roof"]), ("abnormal", ["Bravo Barn"]), ("offline", ["Charlie Shed"])],
)
def test_home_links_filter_the_list_by_status(tenants, client_for, fleet, status, expected):
    response = client_for(tenants.sunfix_om).get(f"{URL}?status={status}")
    assert row_names(response) == expected


def test_an_unknown_status_is_a_filter_error_not_a_crash(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(f"{URL}?status=burning")
    assert response.status_code == 200
    assert row_names(response) == []
    assert "Select a valid choice" in response.content.decode()
    assert client_for(tenants.sunfix_om).get(f"{URL}?status=burning&export=csv").status_code == 400


def test_filter_by_name_and_superior_account(tenants, client_for, fleet):
    client = client_for(tenants.helios_admin)
    assert row_names(client.get(f"{URL}?name=barn")) == ["Bravo Barn"]
    sub = CompanyFactory(superior=tenants.sunfix, name="SunFix South")
    SiteFactory(company=sub, name="Delta Dock")
    SiteFactory(company=tenants.helios, name="Echo Office")
    assert row_names(client.get(f"{URL}?company={tenants.sunfix.pk}")) == [
        "Alpha Roof",
        "Bravo Barn",
        "Charlie Shed",
        "Delta Dock",
    ]
    assert row_names(client.get(f"{URL}?company={sub.pk}")) == ["Delta Dock"]
    # A foreign company is not a choice.
    response = client.get(f"{URL}?company={tenants.nordlicht.pk}")
    assert row_names(response) == []
    assert "Select a valid choice" in response.content.decode()


def test_search_user_finds_the_sites_granted_to_a_user(tenants, client_for, fleet):
    alpha, bravo, _charlie, foreign = fleet
    assign_perm("pv_sites.view_site", tenants.owner, bravo)
    assign_perm("pv_sites.view_site", tenants.nordlicht_owner, foreign)
    client = client_for(tenants.sunfix_om)
    assert row_names(client.get(f"{URL}?user=olivia")) == ["Bravo Barn"]
    assert row_names(client.get(f"{URL}?user=owner@sunfix")) == ["Bravo Barn"]
    # A user outside the viewer's scope finds nothing.
    assert row_names(client.get(f"{URL}?user=nora")) == []


def test_the_account_column_shows_the_owners_granted_the_site(tenants, client_for, fleet):
    bravo = fleet[1]
    second = UserFactory(company=tenants.sunfix, role=Role.OWNER, username="Bert Owner")
    assign_perm("pv_sites.view_site", tenants.owner, bravo)
    assign_perm("pv_sites.view_site", second, bravo)
    table = table_html(client_for(tenants.sunfix_om).get(URL))
    bravo_row = table.split("Bravo Barn", 1)[1].split("</tr>", 1)[0]
    assert "Bert Owner, Olivia Owner" in bravo_row


def test_an_owner_sees_only_granted_sites_and_no_actions(tenants, client_for, fleet):
    bravo = fleet[1]
    assign_perm("pv_sites.view_site", tenants.owner, bravo)
    response = client_for(tenants.owner).get(URL)
    assert row_names(response) == ["Bravo Barn"]
    html = response.content.decode()
    assert reverse("sites:create") not in html
    assert reverse("sites:delete", args=[bravo.pk]) not in html


def test_staff_get_the_operation_menu(tenants, client_for, fleet):
    alpha = fleet[0]
    html = client_for(tenants.sunfix_om).get(URL).content.decode()
    for name in ("sites:distribute", "sites:rename", "sites:delete"):
        assert reverse(name, args=[alpha.pk]) in html
    assert reverse("sites:create") in html


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["Alpha Roof", "Bravo Barn", "Charlie Shed"]),
        ("-name", ["Charlie Shed", "Bravo Barn", "Alpha Roof"]),
        ("capacity_kwp", ["Charlie Shed", "Bravo Barn", "Alpha Roof"]),
        ("-power_w", ["Alpha Roof", "Bravo Barn", "Charlie Shed"]),
        ("power_w", ["Alpha Roof", "Bravo Barn", "Charlie Shed"]),  # no power: last either way
        ("-day_kwh", ["Alpha Roof", "Bravo Barn", "Charlie Shed"]),
        ("status", ["Bravo Barn", "Charlie Shed", "Alpha Roof"]),  # abnormal, offline, online
    ],
)
def test_sorting(tenants, client_for, fleet, sort, expected):
    response = client_for(tenants.sunfix_om).get(f"{URL}?sort={sort}")
    assert row_names(response) == expected


def test_pages_of_twenty_and_bookmarkable_filters(tenants, client_for):
    for n in range(45):
        SiteFactory(company=tenants.sunfix, name=f"Site {n:03d}")
    client = client_for(tenants.sunfix_om)
    first = client.get(URL)
    assert len(row_names(first)) == 20
    third = client.get(f"{URL}?page=3")
    assert row_names(third) == [f"Site {n:03d}" for n in range(40, 45)]
    assert "41–45 of 45" in third.content.decode()
    filtered = client.get(f"{URL}?name=Site+04&sort=-name")
    assert row_names(filtered) == [f"Site {n:03d}" for n in range(44, 39, -1)]
    # The download links keep the filters and the sort.
    assert "name=Site+04&amp;sort=-name&amp;export=csv" in filtered.content.decode()


def test_csv_download_has_the_filtered_rows_in_the_visible_columns(tenants, client_for, fleet):
    rows = download(client_for(tenants.sunfix_om), "status=online")
    assert rows[0] == DEFAULT_HEADERS
    assert rows[1:] == [
        [
            "Online",
            "Alpha Roof",
            "Residential ESS",
            "IT",
            "100 %",
            "12 kWp",
            "1.5 kW",
            "12.5 kWh",
            "",
        ]
    ]


def test_xlsx_download_of_every_page(tenants, client_for, fleet):
    for n in range(30):
        SiteFactory(company=tenants.sunfix, name=f"Zulu {n:02d}")
    rows = download(client_for(tenants.sunfix_om), "sort=name", fmt="xlsx")
    assert len(rows) == 1 + 33
    assert rows[1][1] == "Alpha Roof"
    assert rows[-1][1] == "Zulu 29"


def test_the_column_chooser_adds_optional_columns_for_this_user(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    html = client.get(URL).content.decode()
    for option in ("company", "address", "tariff_per_kwh", "created_at"):
        assert f'value="{option}"' in html
    response = client.post(URL, {"columns": ["status", "company", "tariff_per_kwh"]})
    assert response.status_code == 302
    response = client.get(URL)
    table = table_html(response)
    assert headers(response) == [
        "Site status",
        "Site name",
        "Company",
        "Tariff per kWh",
        "Operation",
    ]
    assert "SunFix Installers" in table and "€0.25" in table
    assert download(client)[0] == ["Site status", "Site name", "Company", "Tariff per kWh"]
    # Other users keep the defaults.
    assert "Company" not in headers(client_for(tenants.helios_om).get(URL))


def test_empty_state_offers_create_site_to_staff_only(tenants, client_for):
    html = client_for(tenants.sunfix_om).get(URL).content.decode()
    assert "No sites yet." in html
    assert f'href="{reverse("sites:create")}"' in html
    owner_html = client_for(tenants.owner).get(URL).content.decode()
    assert "No sites yet" in owner_html
    assert reverse("sites:create") not in owner_html


def test_a_filter_that_matches_nothing_offers_to_show_all(tenants, client_for, fleet):
    html = client_for(tenants.sunfix_om).get(f"{URL}?name=nothing").content.decode()
    assert "No site matches these filters." in html
    assert "Show all sites" in html


def test_htmx_sorting_swaps_only_the_table(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(
        f"{URL}?sort=-name", headers={"HX-Request": "true", "HX-Target": "site-table"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="site-table"')
    assert row_names(response) == ["Charlie Shed", "Bravo Barn", "Alpha Roof"]


def _list_queries(client, query: str = "") -> int:
    client.get(f"{URL}?{query}")  # warm: content types and the like are cached per process
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200
    return len(queries)


def _grow_fleet(tenants, count: int) -> None:
    owner = tenants.owner
    for n in range(count):
        site = (
            online_site(tenants.sunfix, f"Grow {n:03d}")
            if n % 3
            else faulty_site(tenants.sunfix, f"Grow {n:03d}")
        )
        SiteEnergyDailyFactory(site=site, pv_kwh=n, day=_local_today(site))
        assign_perm("pv_sites.view_site", owner, site)


@pytest.mark.parametrize("query", ["", "status=online&sort=-power_w", "user=olivia&sort=-day_kwh"])
def test_query_count_does_not_grow_with_the_fleet(tenants, client_for, query):
    _grow_fleet(tenants, 10)
    staff, owner = client_for(tenants.sunfix_om), client_for(tenants.owner)
    small = (_list_queries(staff, query), _list_queries(owner, query))
    _grow_fleet(tenants, 90)
    large = (_list_queries(staff, query), _list_queries(owner, query))
    assert small == large
