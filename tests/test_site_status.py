"""A site's §4.1 status is a column PostgreSQL keeps (fleet migration 0003): whatever changes a
device — the ORM, a bulk update, raw SQL as ingest writes it, a move to another site, a delete —
the site's status follows at once and always equals the rule of fleet.queries, and the periodic
reconciliation puts right a status a race left behind."""

from __future__ import annotations

import random

import pytest
from django.db import connection
from django.db.models import F

from fleet.queries import reconcile_site_statuses, status_expression
from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site
from tests.factories import GatewayFactory, InverterFactory, SiteFactory

pytestmark = pytest.mark.django_db


def status_of(site: Site) -> str:
    site.refresh_from_db(fields=["status"])
    return site.status


def assert_column_follows_the_rule() -> None:
    wrong = Site.objects.annotate(rule=status_expression()).exclude(status=F("rule"))
    assert list(wrong.values_list("name", "status", "rule")) == []


def test_status_follows_every_device_change(tenants):
    site = SiteFactory(company=tenants.sunfix)
    assert status_of(site) == "offline"  # no devices

    gateway = GatewayFactory(site=site, company=site.company, status="offline")
    assert status_of(site) == "offline"
    inverter = InverterFactory(gateway=gateway, site=site, company=site.company, status="running")
    assert status_of(site) == "online"

    Inverter.objects.filter(pk=inverter.pk).update(status="fault")  # a bulk update
    assert status_of(site) == "abnormal"

    with connection.cursor() as cursor:  # raw SQL, as ingest writes statuses
        cursor.execute(
            "UPDATE inverters_inverter SET status = 'offline' WHERE id = %s", [inverter.pk]
        )
    assert status_of(site) == "offline"

    gateway.status = "online"
    gateway.save()
    assert status_of(site) == "online"

    Gateway.objects.filter(pk=gateway.pk).update(status="offline")
    assert status_of(site) == "offline"


def test_moving_or_deleting_a_device_updates_both_sites(tenants):
    first, second = SiteFactory(company=tenants.sunfix), SiteFactory(company=tenants.sunfix)
    inverter = InverterFactory(site=first, company=first.company, status="fault")
    assert (status_of(first), status_of(second)) == ("abnormal", "offline")

    Inverter.objects.filter(pk=inverter.pk).update(site=second)
    assert (status_of(first), status_of(second)) == ("offline", "abnormal")

    Inverter.objects.filter(pk=inverter.pk).update(site=None)
    assert status_of(second) == "offline"

    gateway = GatewayFactory(site=first, company=first.company, status="online")
    assert status_of(first) == "online"
    gateway.delete()
    assert status_of(first) == "offline"


def test_random_changes_keep_every_site_on_the_rule(tenants):
    rng = random.Random(7)
    sites = [SiteFactory(company=tenants.sunfix) for _ in range(6)]
    inverters = [
        InverterFactory(site=rng.choice(sites), company=tenants.sunfix, status="unknown")
        for _ in range(10)
    ]
    gateways = [
        GatewayFactory(site=rng.choice(sites), company=tenants.sunfix, status="unknown")
        for _ in range(5)
    ]
    for _ in range(60):
        if rng.random() < 0.6:
            device = rng.choice(inverters)
            status = rng.choice(["running", "standby", "fault", "offline", "unknown"])
            Inverter.objects.filter(pk=device.pk).update(status=status, site=rng.choice(sites))
        else:
            device = rng.choice(gateways)
            status = rng.choice(["online", "offline", "unknown"])
            Gateway.objects.filter(pk=device.pk).update(status=status, site=rng.choice(sites))
        assert_column_follows_the_rule()


def test_reconciliation_corrects_a_status_left_behind(tenants):
    site = SiteFactory(company=tenants.sunfix)
    InverterFactory(site=site, company=site.company, status="running")
    other = SiteFactory(company=tenants.sunfix)
    # What a race between two transactions could leave: a status its devices no longer have.
    Site.objects.filter(pk=site.pk).update(status="abnormal")

    assert reconcile_site_statuses() == 1
    assert status_of(site) == "online" and status_of(other) == "offline"
    assert reconcile_site_statuses() == 0  # nothing differs: nothing is written
