"""The setup the tests of a site's Chart and Energy tabs share (test_charts.py,
test_site_energy.py): a site in Rome granted to the owner, and inverters on it."""

from zoneinfo import ZoneInfo

import pytest
from guardian.shortcuts import assign_perm

from tests.factories import GatewayFactory, InverterFactory, SiteFactory

ROME = ZoneInfo("Europe/Rome")
TH = "ECH10K-TH-EU"


@pytest.fixture(name="site")
def granted_site(tenants):
    """SunFix's "Casa Sole" in Rome, granted to the owner. Import `granted_site` into a test
    module to use the fixture `site` there."""
    site = SiteFactory(company=tenants.sunfix, name="Casa Sole", time_zone="Europe/Rome")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    return site


def add_inverter(site, serial, model=TH, address=1):
    """An inverter on a gateway of its own at `site`, uploading every minute."""
    gateway = GatewayFactory(site=site, company=site.company, upload_interval_s=60)
    return InverterFactory(
        serial_number=serial, model=model, gateway=gateway, modbus_address=address
    )
