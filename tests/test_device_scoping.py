"""Sites, gateways and inverters follow the same visibility as companies; owners see only the
sites granted to them and those sites' devices."""

import pytest
from guardian.shortcuts import assign_perm

from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site
from tests.factories import InverterFactory, SiteFactory


@pytest.fixture
def fleet(tenants):
    granted = SiteFactory(company=tenants.sunfix, name="Granted site")
    other = SiteFactory(company=tenants.sunfix, name="Other site")
    foreign = SiteFactory(company=tenants.nordlicht, name="Foreign site")
    assign_perm("pv_sites.view_site", tenants.owner, granted)
    devices = {}
    for site in (granted, other, foreign):
        inverter = InverterFactory(gateway__site=site)
        devices[site.name] = (inverter.gateway, inverter)
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
