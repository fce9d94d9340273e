"""Gateway (guide §6.3, §6.3.1, §6.3.2.1, §6.3.2.3): the dashboard of counts, the gateway list
with its filters, columns, downloads, Distribute and Rename; a gateway's Overview with its
device list and Delete; the Upgrade dialog; what owners and foreign tenants get."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from accounts.models import AuditEvent
from gateways.models import Gateway, GatewayModel, GatewayStatus
from inverters.models import Inverter, InverterStatus
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.gateway_page_helpers import HTMX_DIALOG, HTMX_TABLE, gateway_fleet, url  # noqa: F401
from tests.permission_matrix import Expect, assert_matrix
from tests.upgrade_task_helpers import make_release
from upgrades.models import DeviceKind, FirmwareType, TaskState, UpgradeTask

pytestmark = pytest.mark.django_db


def rows_of(response) -> list[str]:
    return [row.record.serial_number for row in response.context["table"].page.object_list]


# --- the list and its dashboard ------------------------------------------------------------------


def test_the_list_shows_the_dashboard_counts_and_the_guides_columns(tenants, client_for, fleet):
    GatewayFactory(
        serial_number="GWPAGE0002",
        site=fleet.other,
        model=GatewayModel.WIFI,
        firmware_version="2.1.0",
        status=GatewayStatus.OFFLINE,
    )
    faulty = GatewayFactory(
        serial_number="GWPAGE0003",
        site=fleet.other,
        model=GatewayModel.ETH,
        firmware_version="1.9.4",
        status=GatewayStatus.ONLINE,
    )
    InverterFactory(gateway=faulty, status=InverterStatus.FAULT)
    GatewayFactory(site=SiteFactory(company=tenants.nordlicht), status=GatewayStatus.ONLINE)

    response = client_for(tenants.sunfix_om).get(url("list"))
    assert response.status_code == 200
    board = response.context["dashboard"]
    assert board["total"] == 3
    assert {s.key: s.count for s in board["statuses"]} == {
        "online": 1,
        "offline": 1,
        "faulty": 1,
    }
    assert {m.label: m.count for m in board["models"]} == {"4G": 1, "WiFi": 1, "ETH": 1}
    assert {v.label: v.count for v in board["versions"]} == {"2.1.0": 2, "1.9.4": 1}
    html = response.content.decode()
    assert "GWPAGE0001" in html and "Roof kit" in html and "Casa Sole" in html
    assert "Faulty" in html and "Offline" in html
    assert 'href="/gateway/?status=faulty"' in html
    assert rows_of(response) == ["GWPAGE0001", "GWPAGE0002", "GWPAGE0003"]
    # Staff get the row menu with Distribute and Rename.
    assert url("distribute", fleet.gateway.pk) in html and url("rename", fleet.gateway.pk) in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("model=CPS+4G+Kit", ["GWPAGE0001"]),
        ("model=CPS+WiFi+Kit", ["GWPAGE0002"]),
        ("status=online", ["GWPAGE0001"]),
        ("status=offline", ["GWPAGE0002"]),
        ("status=faulty", ["GWPAGE0003"]),
        ("version=1.9", ["GWPAGE0003"]),
        ("sn=page0002", ["GWPAGE0002"]),
        ("status=online&model=CPS+ETH+Kit", []),
    ],
)
def test_filters_model_status_version_and_sn(tenants, client_for, fleet, query, expected):
    GatewayFactory(
        serial_number="GWPAGE0002",
        site=fleet.other,
        model=GatewayModel.WIFI,
        status=GatewayStatus.UNKNOWN,
    )
    faulty = GatewayFactory(
        serial_number="GWPAGE0003",
        site=fleet.other,
        model=GatewayModel.ETH,
        firmware_version="1.9.4",
        status=GatewayStatus.ONLINE,
    )
    # An inverter that does not answer makes its online gateway faulty too.
    InverterFactory(gateway=faulty, status=InverterStatus.OFFLINE)
    response = client_for(tenants.sunfix_om).get(f"{url('list')}?{query}")
    assert response.status_code == 200
    assert rows_of(response) == expected


def test_bad_filters_answer_with_the_reason_not_a_crash(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(url("list") + "?status=burning&model=5G")
    assert response.status_code == 200
    assert rows_of(response) == []
    assert "Select a valid choice" in response.content.decode()
    download = client_for(tenants.sunfix_om).get(url("list") + "?status=burning&export=csv")
    assert download.status_code == 400


def test_csv_and_xlsx_downloads_hold_the_filtered_rows(tenants, client_for, fleet):
    GatewayFactory(serial_number="GWPAGE0002", site=fleet.other, status=GatewayStatus.OFFLINE)
    client = client_for(tenants.sunfix_om)
    response = client.get(url("list") + "?status=online&export=csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:3] == ["Status", "Gateway SN", "Name"]
    assert [r[1] for r in rows[1:]] == ["GWPAGE0001"]
    assert rows[1][0] == "Online"
    response = client.get(url("list") + "?export=xlsx")
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    sheet = book.active
    serials = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert serials == ["GWPAGE0001", "GWPAGE0002"]


def test_the_column_chooser_remembers_the_choice(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    response = client.post(
        url("list"), {"columns": ["signal_strength", "company"]}, headers=HTMX_TABLE
    )
    assert response.status_code == 200
    table = client.get(url("list")).context["table"]
    assert set(table.visible_columns) == {
        "serial_number",
        "operations",
        "signal_strength",
        "company",
    }


def test_owners_see_their_sites_gateways_read_only_and_foreign_tenants_none(
    tenants, client_for, fleet
):
    GatewayFactory(site=fleet.other)  # not granted to the owner
    response = client_for(tenants.owner).get(url("list"))
    assert rows_of(response) == ["GWPAGE0001"]
    html = response.content.decode()
    assert url("rename", fleet.gateway.pk) not in html
    assert url("distribute", fleet.gateway.pk) not in html
    response = client_for(tenants.nordlicht_admin).get(url("list"))
    assert rows_of(response) == []
    assert response.context["dashboard"]["total"] == 0


def _fleet_of(tenants, n: int) -> None:
    for i in range(n):
        site = SiteFactory(company=tenants.sunfix)
        gateway = GatewayFactory(
            site=site,
            status=GatewayStatus.ONLINE if i % 2 else GatewayStatus.OFFLINE,
            firmware_version=f"1.{i % 9}.0",
            model=(GatewayModel.WIFI, GatewayModel.G4, GatewayModel.ETH)[i % 3],
        )
        InverterFactory(gateway=gateway, status=InverterStatus.FAULT if i % 5 == 0 else "running")


def test_the_list_costs_the_same_queries_for_10_and_100_gateways(tenants, client_for):
    client = client_for(tenants.sunfix_om)

    def count() -> int:
        client.get(url("list"))  # warm caches (session, content types)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url("list") + "?per_page=100")
        assert response.status_code == 200
        return len(queries)

    _fleet_of(tenants, 10)
    small = count()
    _fleet_of(tenants, 90)
    assert count() == small


# --- Rename and Distribute -----------------------------------------------------------------------


def test_rename_changes_the_name_and_records_it(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    dialog = client.get(url("rename", fleet.gateway.pk), headers=HTMX_DIALOG)
    assert dialog.status_code == 200 and "Roof kit" in dialog.content.decode()
    response = client.post(
        url("rename", fleet.gateway.pk), {"name": "  Garage kit "}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200 and response["HX-Redirect"].startswith("/gateway/")
    fleet.gateway.refresh_from_db()
    assert fleet.gateway.name == "Garage kit"
    event = AuditEvent.objects.get(action="gateway.renamed")
    assert event.before == {"name": "Roof kit"} and event.after == {"name": "Garage kit"}
    too_long = client.post(url("rename", fleet.gateway.pk), {"name": "x" * 121})
    assert too_long.status_code == 200
    assert "at most 120 characters" in too_long.content.decode()
    assert AuditEvent.objects.filter(action="gateway.renamed").count() == 1


def test_distribute_moves_the_gateway_and_its_inverters_through_the_site_binding(
    tenants, client_for, fleet
):
    client = client_for(tenants.sunfix_admin)
    dialog = client.get(url("distribute", fleet.gateway.pk), headers=HTMX_DIALOG)
    html = dialog.content.decode()
    assert "Villa Luna" in html and "Company belonging" in html
    found = client.get(url("distribute", fleet.gateway.pk) + "?part=sites&site_q=luna")
    assert "Villa Luna" in found.content.decode()
    assert "Casa Sole" not in found.content.decode()

    response = client.post(
        url("distribute", fleet.gateway.pk), {"site": fleet.other.pk}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200 and "HX-Redirect" in response
    fleet.gateway.refresh_from_db()
    assert fleet.gateway.site == fleet.other
    assert set(Inverter.objects.filter(gateway=fleet.gateway).values_list("site", flat=True)) == {
        fleet.other.pk
    }
    event = AuditEvent.objects.get(action="gateway.distributed")
    assert event.before == {"site": "Casa Sole"} and event.after == {"site": "Villa Luna"}
    # The site binding service recorded the unbind and the bind on the sites.
    assert AuditEvent.objects.filter(action="site.gateway_unbound").count() == 1
    assert AuditEvent.objects.filter(action="site.gateway_bound").count() == 1

    again = client.post(url("distribute", fleet.gateway.pk), {"site": fleet.other.pk})
    assert "already on the site" in again.content.decode()
    foreign = SiteFactory(company=tenants.nordlicht)
    refused = client.post(url("distribute", fleet.gateway.pk), {"site": foreign.pk})
    assert "Please select one of the sites shown." in refused.content.decode()
    nothing = client.post(url("distribute", fleet.gateway.pk), {})
    assert "Please select a site." in nothing.content.decode()
    assert AuditEvent.objects.filter(action="gateway.distributed").count() == 1


def test_an_unbound_gateway_can_be_distributed(tenants, client_for, fleet):
    loose = GatewayFactory(site=None, company=tenants.sunfix, serial_number="GWLOOSE001")
    InverterFactory(gateway=loose, site=None, company=tenants.sunfix)
    response = client_for(tenants.sunfix_om).post(
        url("distribute", loose.pk), {"site": fleet.site.pk}
    )
    assert response.status_code == 302
    loose.refresh_from_db()
    assert loose.site == fleet.site
    assert AuditEvent.objects.get(action="gateway.distributed").before == {"site": None}


# --- Overview and Delete -------------------------------------------------------------------------


def test_overview_shows_basic_information_and_the_device_list(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(url("detail", fleet.gateway.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Basic information" in html and "Device list" in html
    assert "Communication address" in html and "Created time" in html
    assert "DSP: 01.02.00 LCD: 02.00" in html
    assert "INVPAGE001" in html and "INVPAGE002" in html
    assert url("device_delete", fleet.gateway.pk, fleet.first.pk) in html
    assert url("settings", fleet.gateway.pk) in html  # the Settings tab
    assert url("upgrade", fleet.gateway.pk) in html


def test_owners_see_the_overview_without_settings_delete_or_upgrade(tenants, client_for, fleet):
    response = client_for(tenants.owner).get(url("detail", fleet.gateway.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "INVPAGE001" in html
    assert url("device_delete", fleet.gateway.pk, fleet.first.pk) not in html
    assert url("settings", fleet.gateway.pk) not in html
    assert url("upgrade", fleet.gateway.pk) not in html


def test_delete_removes_the_device_through_the_sites_service_and_records_it(
    tenants, client_for, fleet
):
    client = client_for(tenants.sunfix_om)
    dialog = client.get(url("device_delete", fleet.gateway.pk, fleet.first.pk), headers=HTMX_DIALOG)
    assert "INVPAGE001" in dialog.content.decode()
    response = client.post(url("device_delete", fleet.gateway.pk, fleet.first.pk))
    assert response.status_code == 302
    assert not Inverter.objects.filter(pk=fleet.first.pk).exists()
    event = AuditEvent.objects.get(action="gateway.device_deleted")
    assert event.before == {"inverter": "INVPAGE001", "address": 1}
    assert AuditEvent.objects.filter(action="site.inverter_deleted").count() == 1
    # A device of another gateway is not found through this gateway.
    other = InverterFactory(gateway=GatewayFactory(site=fleet.site))
    assert client.get(url("device_delete", fleet.gateway.pk, other.pk)).status_code == 404


def test_a_device_of_a_gateway_on_no_site_can_be_deleted(tenants, client_for):
    loose = GatewayFactory(site=None, company=tenants.sunfix)
    inverter = InverterFactory(gateway=loose, site=None, company=tenants.sunfix)
    response = client_for(tenants.sunfix_om).post(url("device_delete", loose.pk, inverter.pk))
    assert response.status_code == 302
    assert not Inverter.objects.filter(pk=inverter.pk).exists()
    assert AuditEvent.objects.filter(action="gateway.device_deleted").count() == 1


# --- Upgrade -------------------------------------------------------------------------------------


def g4_release(version: str = "2.2.0"):
    return make_release(DeviceKind.GATEWAY, FirmwareType.GATEWAY, version, (GatewayModel.G4,))


def test_upgrade_creates_a_one_device_task_and_opens_it(tenants, client_for, fleet):
    release = g4_release()
    make_release(DeviceKind.GATEWAY, FirmwareType.GATEWAY, "9.9.9", (GatewayModel.WIFI,))
    client = client_for(tenants.sunfix_om)
    dialog = client.get(url("upgrade", fleet.gateway.pk), headers=HTMX_DIALOG)
    html = dialog.content.decode()
    assert "Reservation" in html and "CPS 4G Kit--2.2.0" in html and "9.9.9" not in html
    assert "runs firmware 2.1.0" in html
    when = timezone.localtime() + dt.timedelta(days=1)
    response = client.post(
        url("upgrade", fleet.gateway.pk),
        {"release": release.pk, "reservation": "yes", "time": when.strftime("%Y-%m-%dT%H:%M")},
    )
    task = UpgradeTask.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("upgrades:task_detail", args=[task.pk])
    assert task.state == TaskState.SCHEDULED and task.release == release
    target = task.targets.get()
    assert target.gateway == fleet.gateway and target.from_version == "2.1.0"
    assert AuditEvent.objects.filter(action="upgrade.created").count() == 1
    page = client.get(response["Location"]).content.decode()
    assert f"Upgrade task {task.pk} of GWPAGE0001 to 2.2.0 starts at" in page
    assert Gateway.objects.get(pk=fleet.gateway.pk).firmware_version == "2.1.0"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"reservation": "no"}, "This field is required."),
        ({"release": "REL", "reservation": "yes"}, "Please choose the time of the upgrade."),
        (
            {"release": "REL", "reservation": "yes", "time": "2001-01-01T10:00"},
            "The reserved time must be in the future.",
        ),
        ({"release": "REL", "reservation": "maybe"}, "Select a valid choice"),
        ({"release": "999999", "reservation": "no"}, "Select a valid choice"),
    ],
)
def test_upgrade_refuses_what_cannot_be_done(tenants, client_for, fleet, data, reason):
    release = g4_release()
    data = {k: (str(release.pk) if v == "REL" else v) for k, v in data.items()}
    response = client_for(tenants.sunfix_om).post(url("upgrade", fleet.gateway.pk), data)
    assert response.status_code == 200
    assert reason in response.content.decode()
    assert not UpgradeTask.objects.exists()


def test_upgrade_of_an_offline_gateway_now_waits_for_it(tenants, client_for, fleet):
    release = g4_release()
    Gateway.objects.filter(pk=fleet.gateway.pk).update(status=GatewayStatus.OFFLINE)
    response = client_for(tenants.sunfix_om).post(
        url("upgrade", fleet.gateway.pk), {"release": release.pk, "reservation": "no"}
    )
    assert response.status_code == 302
    task = UpgradeTask.objects.get()
    assert task.state == TaskState.RUNNING and task.targets.get().state == "waiting"


# --- permission matrix ---------------------------------------------------------------------------


@pytest.mark.matrix("gateways:list")
def test_matrix_list(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("list"), Expect.tenant_wide(200, 200, 200))


@pytest.mark.matrix("gateways:detail")
def test_matrix_detail(tenants, client_for, fleet):
    # The fleet belongs to SunFix; Helios is above it, so its staff see it, and the owner is
    # granted the site.
    assert_matrix(tenants, client_for, url("detail", fleet.gateway.pk), Expect(owner=200))


@pytest.mark.matrix("gateways:rename")
def test_matrix_rename(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("rename", fleet.gateway.pk), Expect())
    assert_matrix(
        tenants,
        client_for,
        url("rename", fleet.gateway.pk),
        Expect(admin=302, om=302),
        method="post",
        data={"name": "Kit"},
    )


@pytest.mark.matrix("gateways:distribute")
def test_matrix_distribute(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("distribute", fleet.gateway.pk), Expect())
    # A POST without a site: the form's error for staff, refusals for the others.
    assert_matrix(tenants, client_for, url("distribute", fleet.gateway.pk), Expect(), method="post")


@pytest.mark.matrix("gateways:device_delete")
def test_matrix_device_delete(tenants, client_for, fleet):
    assert_matrix(
        tenants, client_for, url("device_delete", fleet.gateway.pk, fleet.first.pk), Expect()
    )

    addresses = iter(range(10, 40))

    def fresh(actor: str) -> str:
        device = InverterFactory(gateway=fleet.gateway, modbus_address=next(addresses))
        return url("device_delete", fleet.gateway.pk, device.pk)

    assert_matrix(tenants, client_for, fresh, Expect(admin=302, om=302), method="post")


@pytest.mark.matrix("gateways:upgrade")
def test_matrix_upgrade(tenants, client_for, fleet):
    release = g4_release()
    assert_matrix(tenants, client_for, url("upgrade", fleet.gateway.pk), Expect())
    assert_matrix(
        tenants,
        client_for,
        url("upgrade", fleet.gateway.pk),
        Expect(admin=302, om=302),
        method="post",
        data={"release": release.pk, "reservation": "no"},
    )
