"""Sites, gateways and inverters follow the same visibility as companies; owners see only the
sites granted to them and those sites' devices."""

import pytest
from guardian.shortcuts import assign_perm

from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site


def make_site(company, name):
    return Site.objects.create(
        company=company,
        name=name,
        address="Via Roma 1",
        country="IT",
        latitude=45.46,
        longitude=9.19,
        time_zone="Europe/Rome",
        capacity_kwp=10,
        tariff_per_kwh="0.25",
    )


@pytest.fixture
def fleet(tenants):
    granted = make_site(tenants.sunfix, "Granted site")
    other = make_site(tenants.sunfix, "Other site")
    foreign = make_site(tenants.nordlicht, "Foreign site")
    assign_perm("pv_sites.view_site", tenants.owner, granted)
    devices = {}
    for site in (granted, other, foreign):
        gateway = Gateway.objects.create(
            serial_number=f"GW-{site.pk}", company=site.company, site=site
        )
        inverter = Inverter.objects.create(
            serial_number=f"INV-{site.pk}",
            model="ECH10K-TH-EU",
            gateway=gateway,
            company=site.company,
            site=site,
        )
        devices[site.name] = (gateway, inverter)
    return granted, other, foreign, devices


@pytest.mark.django_db
def test_staff_see_sites_of_their_tree_only(tenants, fleet):
    granted, other, foreign, _ = fleet
    assert set(Site.objects.visible_to(tenants.helios_om)) == {granted, other}
    assert set(Site.objects.visible_to(tenants.nordlicht_admin)) == {foreign}


@pytest.mark.django_db
def test_owner_sees_only_granted_site_and_its_devices(tenants, fleet):
    granted, _, _, devices = fleet
    gateway, inverter = devices["Granted site"]
    assert list(Site.objects.visible_to(tenants.owner)) == [granted]
    assert list(Gateway.objects.visible_to(tenants.owner)) == [gateway]
    assert list(Inverter.objects.visible_to(tenants.owner)) == [inverter]


@pytest.mark.django_db
def test_owner_without_grant_sees_nothing(tenants, fleet):
    assert not Site.objects.visible_to(tenants.nordlicht_owner).exists()
    assert not Inverter.objects.visible_to(tenants.nordlicht_owner).exists()
