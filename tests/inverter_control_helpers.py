"""What the tests of the inverter tabs that operate the device share (test_inverter_control.py:
Settings, Intelligent Load, Upgrade, Operations; test_inverter_mode.py: Mode and TOU): a small
fleet, the tabs' URLs, a TOU dialog's form data, and a simulated inverter the tabs' operations
reach through a private Mosquitto."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from django.urls import reverse
from guardian.shortcuts import assign_perm

from maintenance.dispatch import close_reply_waiter, execute
from maintenance.models import OperationState, RemoteOperation
from simulator.clock import SimClock
from simulator.environment import Site as SimSite
from simulator.fleet import FleetThread
from simulator.sources import GatewaySpec, InverterSpec
from tests.device_rig import yesterday_noon_in_rome
from tests.factories import GatewayFactory, InverterFactory, SiteFactory

TH = "ECH10K-TH-EU"
HTMX_TAB = {"HX-Request": "true", "HX-Target": "tab-panel"}
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "control-dialog"}
HTMX_CURRENT = {"HX-Request": "true", "HX-Target": "control-current"}
POLLING = 'hx-trigger="every 1s"'
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
EVERY_MONTH = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def make_fleet(tenants) -> SimpleNamespace:
    """SunFix's "Barn" (granted to the owner) with one inverter, another SunFix inverter, and
    a Nordlicht one."""
    barn = SiteFactory(company=tenants.sunfix, name="Barn")
    assign_perm("pv_sites.view_site", tenants.owner, barn)
    gateway = GatewayFactory(serial_number="GWCTL0001", site=barn)
    return SimpleNamespace(
        barn=barn,
        gateway=gateway,
        inverter=InverterFactory(gateway=gateway, serial_number="INVCTL001", name="Barn west"),
        other=InverterFactory(
            gateway=GatewayFactory(serial_number="GWCTL0002", site__company=tenants.sunfix),
            serial_number="INVCTL002",
        ),
        foreign=InverterFactory(
            gateway=GatewayFactory(serial_number="GWNORD001", site__company=tenants.nordlicht),
            serial_number="INVNORD001",
        ),
    )


def url(name: str, device, *args: Any, **params: Any) -> str:
    """`inverters:<name>` of the inverter, with a query string."""
    address = reverse(f"inverters:{name}", args=[device.pk, *args])
    if params:
        address += "?" + "&".join(f"{key}={value}" for key, value in params.items())
    return address


def slot_data(slots: list[dict[str, Any]], prefix: str = "slot") -> dict[str, Any]:
    """The TOU dialog's schedule fields: `slots` first, EMPTY slots up to six."""
    data: dict[str, Any] = {
        f"{prefix}-TOTAL_FORMS": "6",
        f"{prefix}-INITIAL_FORMS": "6",
        f"{prefix}-MIN_NUM_FORMS": "6",
        f"{prefix}-MAX_NUM_FORMS": "6",
    }
    rows = list(slots) + [{"mode": "empty"}] * (6 - len(slots))
    for index, slot in enumerate(rows):
        for name, value in slot.items():
            data[f"{prefix}-{index}-{name}"] = value
    return data


def tou_settings(**overrides: Any) -> dict[str, Any]:
    """The TOU dialog's own settings (guide figure 6-58), valid."""
    data = {
        "settings-tou_bat_from_grid_power": "3",
        "settings-tou_anti_feedback_enable": "disabled",
        "settings-tou_feedback_grid_power": "0",
        "settings-tou_grid_charge_enable": "disabled",
        "settings-tou_bat_from_grid_start": "22:00",
        "settings-tou_bat_from_grid_end": "06:00",
    }
    data.update({f"settings-{key}": value for key, value in overrides.items()})
    return data


def finish(operation: RemoteOperation) -> RemoteOperation:
    """Run the operation as the worker does (here, against the simulator) and expect success."""
    assert execute(operation.pk) == "finished"
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED, operation.error
    return operation


@contextlib.contextmanager
def simulated_inverter(tenants, mosquitto, settings, serial: str) -> Iterator[SimpleNamespace]:
    """A SunFix site (granted to the owner) whose gateway and inverter run in the simulator,
    on a private broker; `settings()` is the simulated inverter's holding registers."""
    settings.MQTT_URL = mosquitto.url
    site = SiteFactory(company=tenants.sunfix, name="Simulated roof")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    gateway_sn = f"{serial}GW"
    gateway = GatewayFactory(
        serial_number=gateway_sn, site=site, status="online", upload_interval_s=3600
    )
    inverter = InverterFactory(serial_number=serial, model=TH, gateway=gateway)
    spec = GatewaySpec(
        serial=gateway_sn,
        inverters=(InverterSpec(serial, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(45.46, 9.19, "Europe/Rome"),
    )
    close_reply_waiter()
    try:
        with FleetThread(
            [spec], mqtt_url=mosquitto.url, clock=SimClock(speed=0, start=yesterday_noon_in_rome())
        ) as sim:
            yield SimpleNamespace(
                site=site,
                gateway=gateway,
                inverter=inverter,
                sim=sim,
                settings=lambda: sim.call(lambda: sim.fleet.inverter(serial).settings()),
            )
    finally:
        close_reply_waiter()
