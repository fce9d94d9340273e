"""A gateway bound to a site while ingest runs: its very next upload is filed under the site,
although ingest caches where every device belongs (inverters/placement.py)."""

import pytest

from fleet import services
from ingest.batch import Registry
from inverters.models import EnergyDaily, InverterLatest
from tests.factories import SiteFactory, UserFactory
from tests.ingest_helpers import make_fleet, now_ms, publisher, reading, running_ingest, settled
from tests.ingest_helpers import telemetry as telemetry_message
from tests.services import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_next_upload_after_binding_is_filed_under_the_new_site(
    mosquitto, clean_samples, monkeypatch
):
    # Ingest compares the generation at most once a second; here at every batch, so the
    # test does not depend on how far apart its two uploads arrive.
    monkeypatch.setattr(Registry, "PLACEMENT_CHECK_S", 0.0)
    [(gateway, [inverter])] = make_fleet(prefix="GWPLACE")
    company = gateway.company
    gateway.site = None
    gateway.save(update_fields=["site"])
    inverter.site = None
    inverter.save(update_fields=["site"])
    site = SiteFactory(company=company, name="Placement farm", time_zone="Europe/Rome")
    om = UserFactory(company=company, role="om")
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        pub.telemetry(gateway, telemetry_message(1, now_ms() - 60_000, reading(inverter)))
        pub.flush()
        wait_for(settled(service, 1), what="the upload before binding")
        assert InverterLatest.objects.get(inverter=inverter).site_id is None

        services.bind_gateway(site, gateway.serial_number, acting_user=om)
        # The cache is far younger than its two minutes: only the placement generation
        # tells ingest that the inverter moved.
        pub.telemetry(gateway, telemetry_message(2, now_ms(), reading(inverter)))
        pub.flush()
        wait_for(settled(service, 2), what="the upload after binding")
    latest = InverterLatest.objects.get(inverter=inverter)
    assert latest.site_id == site.pk
    assert EnergyDaily.objects.filter(inverter=inverter, site=site).exists()
