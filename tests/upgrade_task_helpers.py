"""What the upgrade-task tests share (test_upgrade_tasks.py, and the Upgrade tests of
test_gateway_pages.py and test_inverter_tabs.py): firmware releases stored through the ORM with
their file in the test's MEDIA_ROOT, a fleet of SunFix gateways and inverters of one model, and
a way to create a task as a user would."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from guardian.shortcuts import assign_perm

from devices.ota import build_image
from gateways.models import GatewayModel, GatewayStatus
from inverters.models import InverterStatus
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from upgrades import task_services
from upgrades.models import DeviceKind, FirmwareRelease, FirmwareType, ReleaseModel

TH = "ECH10K-TH-EU"
WIFI = GatewayModel.WIFI
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "action-dialog"}
HTMX_PICKER = {"HX-Request": "true", "HX-Target": "device-picker"}


def url(name: str, *args) -> str:
    return reverse(f"upgrades:{name}", args=args)


def make_release(
    kind: str,
    firmware_type: str,
    version: str,
    models: tuple[str, ...],
    size: int = 4096,
) -> FirmwareRelease:
    """A release of `version` for `models`, its image stored in MEDIA_ROOT."""
    data = build_image(models[0], firmware_type, version, size)
    digest = hashlib.sha256(data).hexdigest()
    release = FirmwareRelease(
        kind=kind,
        firmware_type=firmware_type,
        version=version,
        description=f"{firmware_type} {version}",
        file_name=f"{version}.bin",
        size=len(data),
        sha256=digest,
        creator_label="platform",
    )
    release.file.save(f"{version}.bin", ContentFile(data), save=False)
    release.save()
    for model in models:
        ReleaseModel.objects.create(
            release=release, kind=kind, firmware_type=firmware_type, model=model, version=version
        )
    return release


@pytest.fixture(name="upfleet")
def upgrade_fleet(tenants):
    """SunFix's "Casa Sole" (granted to the owner) with 12 WiFi gateways GWUP0000..GWUP0011 on
    firmware 9.02 (the last two offline), one ECH10K inverter on the first gateway, a 4G
    gateway, and releases: WiFi 10.00, 4G 8.00, ECH10K DSP 01.95 and LCD 02.10."""
    site = SiteFactory(company=tenants.sunfix, name="Casa Sole")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    other = SiteFactory(company=tenants.sunfix, name="Villa Luna")
    gateways = [
        GatewayFactory(
            serial_number=f"GWUP{n:04d}",
            site=site if n % 2 == 0 else other,
            model=WIFI,
            firmware_version="9.02",
            status=GatewayStatus.ONLINE if n < 10 else GatewayStatus.OFFLINE,
        )
        for n in range(12)
    ]
    g4 = GatewayFactory(
        serial_number="GWUP4G0001", site=site, model=GatewayModel.G4, firmware_version="7.00"
    )
    inverter = InverterFactory(
        serial_number="INVUP00001",
        model=TH,
        gateway=gateways[0],
        modbus_address=3,
        status=InverterStatus.RUNNING,
        firmware_versions={"DSP": "01.90.06", "LCD": "01.56"},
    )
    return SimpleNamespace(
        t=tenants,
        site=site,
        other=other,
        gateways=gateways,
        g4=g4,
        inverter=inverter,
        wifi=make_release(DeviceKind.GATEWAY, FirmwareType.GATEWAY, "10.00", (WIFI,)),
        g4_release=make_release(
            DeviceKind.GATEWAY, FirmwareType.GATEWAY, "8.00", (GatewayModel.G4,)
        ),
        dsp=make_release(DeviceKind.INVERTER, FirmwareType.DSP, "01.95", (TH,)),
        lcd=make_release(DeviceKind.INVERTER, FirmwareType.LCD, "02.10", (TH,)),
    )


def gateway_task(user, fleet, devices=None, **options):
    """A WiFi gateway task made through the service (every gateway unless `devices`)."""
    return task_services.create_task(
        user,
        kind=DeviceKind.GATEWAY,
        release=fleet.wifi,
        model=WIFI,
        devices=devices if devices is not None else fleet.gateways,
        **options,
    )


def add_form(fleet, **overrides) -> dict:
    """The POST of "Add upgrade" for WiFi gateways, before the devices."""
    data = {
        "kind": "gateway",
        "model": WIFI,
        "release": str(fleet.wifi.pk),
        "reservation": "no",
        "waves": "10, 50, 100",
        "wave_success_pct": "90",
        "error_threshold_pct": "20",
        "max_parallel": "5",
        "require_online": "on",
        "require_no_urgent_alarm": "on",
        "require_grid_mode": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
