"""Site and device writes (fleet/services.py) and the list's row actions (guide §6.1.3):
Distribute, Rename and Delete, and binding, unbinding and deleting devices — each checked,
refused with a reason where it must be, and recorded in the audit trail."""

from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from guardian.shortcuts import assign_perm

from accounts.models import AuditEvent, CompanyType, Role
from alarms.models import Alarm
from fleet import services
from fleet.models import CommissioningReport
from inverters.models import EnergyDaily, Inverter, InverterLatest, Sample, SiteEnergyDaily
from sites.models import Site
from tests.factories import (
    AlarmFactory,
    CommissioningReportFactory,
    CompanyFactory,
    EnergyDailyFactory,
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SampleFactory,
    SiteEnergyDailyFactory,
    SiteEnergyMonthlyFactory,
    SiteFactory,
    UserFactory,
)
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db


def audit_actions(site) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="pv_sites.site", object_id=str(site.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def unbound_gateway(company, serial="GW-FREE-1", inverters=2):
    gateway = GatewayFactory(serial_number=serial, site=None, company=company)
    for address in range(1, inverters + 1):
        inverter = InverterFactory(
            gateway=gateway, site=None, company=company, modbus_address=address
        )
        InverterLatestFactory(inverter=inverter, pv_power=1000.0 * address)
    return gateway


@pytest.fixture
def site(tenants):
    return SiteFactory(company=tenants.sunfix, name="Alpha Roof")


# --- Binding gateways ---------------------------------------------------------------------------


def test_bind_moves_the_gateway_and_its_inverters_with_their_live_values(tenants, site):
    gateway = unbound_gateway(tenants.sunfix)
    services.bind_gateway(site, "GW-FREE-1", acting_user=tenants.sunfix_om)
    gateway.refresh_from_db()
    assert gateway.site == site and gateway.company == tenants.sunfix
    assert set(Inverter.objects.filter(gateway=gateway).values_list("site", flat=True)) == {site.pk}
    assert set(
        InverterLatest.objects.filter(inverter__gateway=gateway).values_list("site", flat=True)
    ) == {site.pk}
    assert audit_actions(site) == ["site.gateway_bound"]
    event = AuditEvent.objects.get(action="site.gateway_bound")
    assert event.after == {"gateway": "GW-FREE-1"} and event.actor == tenants.sunfix_om


def test_an_unclaimed_platform_gateway_is_claimed_with_its_history(tenants, site):
    gateway = unbound_gateway(tenants.platform, "GW-FACTORY")
    inverter = gateway.inverters.first()
    EnergyDailyFactory(inverter=inverter, site=None)
    AlarmFactory(inverter=inverter, site=None)
    services.bind_gateway(site, "GW-FACTORY", acting_user=tenants.sunfix_om)
    inverter.refresh_from_db()
    assert inverter.company == tenants.sunfix and inverter.site == site
    assert EnergyDaily.objects.get(inverter=inverter).company == tenants.sunfix
    assert Alarm.objects.get(inverter=inverter).company == tenants.sunfix
    assert InverterLatest.objects.get(inverter=inverter).company == tenants.sunfix


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unknown", "Unknown gateway SN “{sn}”."),
        ("foreign", "Unknown gateway SN “{sn}”."),  # never reveal another tenant's gateway
        ("foreign_bound", "Unknown gateway SN “{sn}”."),
        ("platform_bound", "Unknown gateway SN “{sn}”."),
        ("bound_here", "Gateway {sn} is already bound to the site “Bravo Barn”."),
    ],
)
def test_gateways_that_cannot_be_bound(tenants, site, setup, message):
    sn = "GW-X"
    if setup == "foreign":
        unbound_gateway(tenants.nordlicht, sn)
    elif setup == "foreign_bound":
        GatewayFactory(serial_number=sn, site=SiteFactory(company=tenants.nordlicht))
    elif setup == "platform_bound":
        GatewayFactory(serial_number=sn, site=SiteFactory(company=tenants.platform))
    elif setup == "bound_here":
        GatewayFactory(
            serial_number=sn, site=SiteFactory(company=tenants.sunfix, name="Bravo Barn")
        )
    with pytest.raises(ValidationError) as refused:
        services.bind_gateway(site, sn, acting_user=tenants.sunfix_om)
    assert refused.value.message_dict == {"serial_number": [message.format(sn=sn)]}
    assert audit_actions(site) == []


def test_a_gateway_of_the_company_above_is_unknown_to_an_installer(tenants, site):
    GatewayFactory(serial_number="GW-HELIOS", site=SiteFactory(company=tenants.helios))
    with pytest.raises(ValidationError) as refused:
        services.find_bindable_gateway("GW-HELIOS", acting_user=tenants.sunfix_om)
    assert refused.value.message_dict["serial_number"] == ["Unknown gateway SN “GW-HELIOS”."]


def test_owners_cannot_bind_or_look_up_gateways(tenants, site):
    unbound_gateway(tenants.sunfix)
    assign_perm("pv_sites.view_site", tenants.owner, site)
    with pytest.raises(PermissionDenied):
        services.bind_gateway(site, "GW-FREE-1", acting_user=tenants.owner)
    with pytest.raises(PermissionDenied):
        services.find_bindable_gateway("GW-FREE-1", acting_user=tenants.owner)


def test_unbind_keeps_the_data_with_the_inverters(tenants, site):
    gateway = unbound_gateway(tenants.sunfix)
    services.bind_gateway(site, gateway.serial_number, acting_user=tenants.sunfix_om)
    inverter = gateway.inverters.first()
    EnergyDailyFactory(inverter=inverter)
    SiteEnergyDailyFactory(site=site, pv_kwh=3)
    services.unbind_gateway(site, gateway, acting_user=tenants.sunfix_om)
    gateway.refresh_from_db()
    inverter.refresh_from_db()
    assert gateway.site is None and gateway.company == tenants.sunfix
    assert inverter.site is None
    assert InverterLatest.objects.get(inverter=inverter).site is None
    assert EnergyDaily.objects.filter(inverter=inverter).exists()
    assert SiteEnergyDaily.objects.get(site=site).pv_kwh == 3
    assert audit_actions(site) == ["site.gateway_bound", "site.gateway_unbound"]
    # It can be bound again.
    services.bind_gateway(site, gateway.serial_number, acting_user=tenants.sunfix_om)


def test_unbind_refuses_a_gateway_of_another_site(tenants, site):
    other = GatewayFactory(site=SiteFactory(company=tenants.sunfix))
    with pytest.raises(ValidationError):
        services.unbind_gateway(site, other, acting_user=tenants.sunfix_om)


def test_delete_inverter_removes_it_and_its_data(tenants, site, clean_samples):
    gateway = unbound_gateway(tenants.sunfix)
    services.bind_gateway(site, gateway.serial_number, acting_user=tenants.sunfix_om)
    inverter, other = list(gateway.inverters.order_by("modbus_address"))
    SampleFactory(inverter=inverter)
    SampleFactory(inverter=other)
    EnergyDailyFactory(inverter=inverter)
    AlarmFactory(inverter=inverter)
    services.delete_inverter(site, inverter, acting_user=tenants.sunfix_om)
    assert not Inverter.objects.filter(pk=inverter.pk).exists()
    assert not Sample.objects.filter(inverter_id=inverter.pk).exists()
    assert Sample.objects.filter(inverter_id=other.pk).count() == 1
    assert not EnergyDaily.objects.filter(inverter_id=inverter.pk).exists()
    assert not Alarm.objects.filter(inverter_id=inverter.pk).exists()
    assert audit_actions(site)[-1] == "site.inverter_deleted"
    with pytest.raises(PermissionDenied):
        services.delete_inverter(site, other, acting_user=tenants.owner)
    with pytest.raises(ValidationError):
        services.delete_inverter(
            SiteFactory(company=tenants.sunfix), other, acting_user=tenants.sunfix_om
        )


# --- Update, rename, distribute ----------------------------------------------------------------


def test_update_site_checks_ranges_and_records_the_change(tenants, site):
    with pytest.raises(ValidationError) as refused:
        services.update_site(
            site, acting_user=tenants.sunfix_om, latitude=91, longitude=-181, tariff_per_kwh=-1
        )
    assert set(refused.value.message_dict) == {"latitude", "longitude", "tariff_per_kwh"}
    site.refresh_from_db()
    services.update_site(site, acting_user=tenants.sunfix_om, tariff_per_kwh="0.31")
    site.refresh_from_db()
    assert str(site.tariff_per_kwh) == "0.3100"
    event = AuditEvent.objects.get(action="site.edited")
    assert event.before == {"tariff_per_kwh": "0.2500"} and event.after == {
        "tariff_per_kwh": "0.31"
    }


def test_rename(tenants, site):
    services.rename_site(site, "  Alpha Roof East ", acting_user=tenants.sunfix_om)
    site.refresh_from_db()
    assert site.name == "Alpha Roof East"
    event = AuditEvent.objects.get(action="site.renamed")
    assert event.before == {"name": "Alpha Roof"} and event.after == {"name": "Alpha Roof East"}
    with pytest.raises(ValidationError):
        services.rename_site(site, "   ", acting_user=tenants.sunfix_om)
    with pytest.raises(PermissionDenied):
        services.rename_site(site, "Mine", acting_user=tenants.owner)


def test_distribute_grants_an_owner_the_site(tenants, site):
    assert not Site.objects.visible_to(tenants.owner).exists()
    services.distribute_site(site, tenants.owner, acting_user=tenants.sunfix_om)
    assert list(Site.objects.visible_to(tenants.owner)) == [site]
    event = AuditEvent.objects.get(action="site.distributed")
    assert event.after == {"user": "owner@sunfix.example"}
    with pytest.raises(ValidationError) as again:
        services.distribute_site(site, tenants.owner, acting_user=tenants.sunfix_om)
    assert "already has this site" in str(again.value)


@pytest.mark.parametrize("receiver", ["nordlicht_owner", "sunfix_admin", "helios_om"])
def test_distribute_refuses_foreign_or_staff_users(tenants, site, receiver):
    with pytest.raises(ValidationError):
        services.distribute_site(site, getattr(tenants, receiver), acting_user=tenants.sunfix_om)
    assert audit_actions(site) == []


# --- Delete ------------------------------------------------------------------------------------


def test_delete_is_refused_while_gateways_are_bound(tenants, site):
    GatewayFactory(site=site, serial_number="GW-B")
    GatewayFactory(site=site, serial_number="GW-A")
    assert services.site_delete_blockers(site) == [
        "Gateways GW-A, GW-B are still bound to this site. Unbind them first."
    ]
    with pytest.raises(services.SiteDeletionRefused):
        services.delete_site(site, acting_user=tenants.sunfix_om)
    assert Site.objects.filter(pk=site.pk).exists()
    assert audit_actions(site) == []


def test_delete_removes_the_sites_energy_and_grants_and_unlinks_inverters(tenants, site):
    loose = InverterFactory(gateway=None, site=site, company=tenants.sunfix)
    SiteEnergyDailyFactory(site=site)
    SiteEnergyMonthlyFactory(site=site)
    EnergyDailyFactory(inverter=loose)
    assign_perm("pv_sites.view_site", tenants.owner, site)
    pk = site.pk
    services.delete_site(site, acting_user=tenants.sunfix_om)
    assert not Site.objects.filter(pk=pk).exists()
    assert not SiteEnergyDaily.objects.filter(site_id=pk).exists()
    loose.refresh_from_db()
    assert loose.site is None
    assert EnergyDaily.objects.filter(inverter=loose).exists()
    from guardian.models import UserObjectPermission

    assert not UserObjectPermission.objects.filter(object_pk=str(pk)).exists()
    event = AuditEvent.objects.get(action="site.deleted")
    assert event.object_label == "Alpha Roof" and event.before["name"] == "Alpha Roof"


@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_commissioning_reports_and_their_pdf_files(tenants, site):
    report = CommissioningReportFactory(site=site)
    report.pdf.save("handover.pdf", ContentFile(b"%PDF-1.4 test"), save=True)
    stored = Path(report.pdf.path)
    assert stored.exists()
    services.delete_site(site, acting_user=tenants.sunfix_om)
    assert not CommissioningReport.objects.filter(pk=report.pk).exists()
    assert not stored.exists()


def test_delete_is_for_staff_only(tenants, site):
    assign_perm("pv_sites.view_site", tenants.owner, site)
    with pytest.raises(PermissionDenied):
        services.delete_site(site, acting_user=tenants.owner)
    with pytest.raises(PermissionDenied):
        services.delete_site(site, acting_user=tenants.nordlicht_admin)


# --- The dialogs of the list -----------------------------------------------------------------


def _fresh_site(tenants, actor: str) -> Site:
    site = SiteFactory(company=tenants.sunfix, name=f"Site of {actor}")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    return site


@pytest.mark.matrix("sites:rename")
def test_rename_dialog_matrix(tenants, client_for, site):
    assign_perm("pv_sites.view_site", tenants.owner, site)
    url = reverse("sites:rename", args=[site.pk])
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=403))


@pytest.mark.matrix("sites:distribute")
def test_distribute_dialog_matrix(tenants, client_for, site):
    assign_perm("pv_sites.view_site", tenants.owner, site)
    url = reverse("sites:distribute", args=[site.pk])
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=403))


@pytest.mark.matrix("sites:delete")
def test_delete_dialog_matrix(tenants, client_for, site):
    assign_perm("pv_sites.view_site", tenants.owner, site)
    url = reverse("sites:delete", args=[site.pk])
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=403))


@pytest.mark.matrix("sites:delete")
def test_delete_post_matrix(tenants, client_for):
    sites = {}

    def url(actor: str) -> str:
        sites[actor] = _fresh_site(tenants, actor)
        return reverse("sites:delete", args=[sites[actor].pk])

    assert_matrix(tenants, client_for, url, Expect(admin=302, om=302, owner=403), method="post")
    remaining = set(Site.objects.values_list("name", flat=True))
    assert "Site of admin" not in remaining and "Site of om" not in remaining
    assert {"Site of owner", "Site of foreign_admin", "Site of anonymous"} <= remaining


def test_rename_dialog_in_the_modal(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    url = reverse("sites:rename", args=[site.pk])
    htmx = {"HX-Request": "true", "HX-Target": "action-dialog"}
    dialog = client.get(url, headers=htmx).content.decode()
    assert "Rename “Alpha Roof”" in dialog and 'value="Alpha Roof"' in dialog
    assert "<html" not in dialog
    refused = client.post(url, {"name": "  "}, headers=htmx)
    assert refused.status_code == 200 and "This field is required." in refused.content.decode()
    done = client.post(
        url,
        {"name": "Alpha Roof East"},
        headers={**htmx, "HX-Current-URL": "http://testserver/site/?status=online"},
    )
    assert done.status_code == 200 and done["HX-Redirect"] == "/site/?status=online"
    site.refresh_from_db()
    assert site.name == "Alpha Roof East"
    # Without htmx: a page of its own, and a redirect.
    assert client.post(url, {"name": "Alpha"}).status_code == 302


def test_distribute_dialog_searches_owners_and_grants_one(tenants, client_for, site):
    other_company = CompanyFactory(
        superior=tenants.sunfix, name="Roof Owners", type=CompanyType.OWNER
    )
    UserFactory(
        company=other_company, role=Role.OWNER, username="Rita Roof", email="rita@roof.example"
    )
    client = client_for(tenants.sunfix_om)
    url = reverse("sites:distribute", args=[site.pk])
    dialog = client.get(url, headers={"HX-Request": "true", "HX-Target": "action-dialog"})
    html = dialog.content.decode()
    assert "Olivia Owner" in html and "Rita Roof" in html
    assert "SunFix O&amp;M" not in html.split('id="owner-choices"', 1)[1]  # staff are not offered
    found = client.get(
        url, {"part": "owners", "owner_q": "rita"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "Rita Roof" in found and "Olivia Owner" not in found
    by_company = client.get(
        url, {"part": "owners", "owner_company": tenants.sunfix.pk}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "Olivia Owner" in by_company and "Rita Roof" not in by_company
    refused = client.post(url, {}, headers={"HX-Request": "true"})
    assert "Please select a user." in refused.content.decode()
    done = client.post(url, {"user": tenants.owner.pk}, headers={"HX-Request": "true"})
    assert done["HX-Redirect"] == "/site/"
    assert list(Site.objects.visible_to(tenants.owner)) == [site]
    # A foreign owner's id is not a choice.
    refused = client.post(url, {"user": tenants.nordlicht_owner.pk}, headers={"HX-Request": "true"})
    assert "Select a valid choice" in refused.content.decode()


def test_delete_dialog_names_the_site_and_lists_bound_gateways(tenants, client_for, site):
    GatewayFactory(site=site, serial_number="GW-STILL")
    client = client_for(tenants.sunfix_om)
    url = reverse("sites:delete", args=[site.pk])
    html = client.get(
        url, headers={"HX-Request": "true", "HX-Target": "action-dialog"}
    ).content.decode()
    assert "“Alpha Roof” cannot be deleted while gateways are bound to it" in html
    assert "Gateway GW-STILL is still bound to this site. Unbind it first." in html
    assert "disabled" in html
    response = client.post(url, follow=True)
    assert Site.objects.filter(pk=site.pk).exists()
    assert "cannot be deleted" in response.content.decode()


def test_delete_dialog_says_what_happens_to_the_data(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    url = reverse("sites:delete", args=[site.pk])
    html = client.get(
        url, headers={"HX-Request": "true", "HX-Target": "action-dialog"}
    ).content.decode()
    assert "Delete the site “Alpha Roof”?" in html
    assert "daily and monthly energy records are deleted with it" in html
    response = client.post(url, follow=True)
    assert not Site.objects.filter(pk=site.pk).exists()
    assert "Site “Alpha Roof” has been deleted." in response.content.decode()


def test_after_a_delete_the_list_keeps_its_filters(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    url = reverse("sites:delete", args=[site.pk])
    dialog = client.get(
        url,
        headers={
            "HX-Request": "true",
            "HX-Target": "action-dialog",
            "HX-Current-URL": "http://testserver/site/?status=offline&sort=-name",
        },
    ).content.decode()
    assert f'action="{url}?next=%2Fsite%2F%3Fstatus%3Doffline%26sort%3D-name"' in dialog
    response = client.post(f"{url}?next=%2Fsite%2F%3Fstatus%3Doffline")
    assert response["Location"] == "/site/?status=offline"
    # Only the site list is a place to go back to.
    response = client.post(
        reverse("sites:delete", args=[SiteFactory(company=tenants.sunfix).pk])
        + "?next=https://evil.example/site/"
    )
    assert response["Location"] == "/site/"
