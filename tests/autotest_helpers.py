"""Objects the AutoTest tests share: an Italian site's inverter of the Helios tree (granted to
the SunFix owner) and stored runs in any state."""

from __future__ import annotations

from types import SimpleNamespace

from django.utils import timezone
from guardian.shortcuts import assign_perm

from devices.registermap import RegisterMap
from fleet import autotest
from fleet.models import AutoTestRun, AutoTestStatus, AutoTestStep
from gateways.models import GatewayStatus
from tests.factories import GatewayFactory, InverterFactory, SiteFactory


def italian_site(tenants, **fields):
    """A SunFix site near Milan, granted to the SunFix owner."""
    fields = {
        "company": tenants.sunfix,
        "name": "Cascina Lombarda",
        "country": "IT",
        "time_zone": "Europe/Rome",
        "address": "Via Roma 1, Milano",
        **fields,
    }
    site = SiteFactory(**fields)
    assign_perm("pv_sites.view_site", tenants.owner, site)
    return site


def italian_inverter(tenants, site=None, **fields):
    """An ECH10K-TH-EU on an online gateway of an Italian site."""
    site = site or italian_site(tenants)
    gateway = GatewayFactory(site=site, status=GatewayStatus.ONLINE)
    return InverterFactory(gateway=gateway, status="running", **fields)


def stored_run(inverter, user=None, status=AutoTestStatus.PASSED, steps: int = 8, **fields):
    """A run with its steps as the inverter reports them after a full sequence (the first
    `steps` done and passed, the others pending)."""
    rm = RegisterMap.for_model(inverter.model)
    done = status not in (AutoTestStatus.STARTING, AutoTestStatus.RUNNING)
    run = AutoTestRun.objects.create(
        inverter=inverter,
        site=inverter.site,
        company=inverter.company,
        status=status,
        started_by=user,
        started_by_email=user.email if user else "",
        serial_number=inverter.serial_number,
        model=inverter.model,
        firmware_versions={"DSP": "01.20", "LCD": "02.00"},
        device_run=1,
        finished_at=timezone.now() if done else None,
        **fields,
    )
    for spec in autotest.sequence(rm):
        tested = spec.index <= steps
        AutoTestStep.objects.create(
            run=run,
            index=spec.index,
            code=spec.code,
            unit=spec.unit,
            threshold=spec.threshold,
            time_limit_ms=spec.time_limit_ms,
            trip_value=spec.threshold + (0.3 if spec.unit == "V" else 0.01) if tested else None,
            trip_time_ms=int(spec.time_limit_ms * 0.98) + 9 if tested else None,
            state="done" if tested else "pending",
            result="pass" if tested else "",
        )
    return run


def urls(inverter, run=None) -> SimpleNamespace:
    from django.urls import reverse

    return SimpleNamespace(
        tab=reverse("inverters:autotest", args=[inverter.pk]),
        start=reverse("inverters:autotest_start", args=[inverter.pk]),
        run=reverse("inverters:autotest_run", args=[inverter.pk, run.pk]) if run else None,
        pdf=reverse("inverters:autotest_pdf", args=[inverter.pk, run.pk]) if run else None,
    )
