"""What the gateway page tests share (test_gateway_pages.py, test_gateway_settings_tab.py):
a SunFix site granted to the owner with a gateway and two inverters (fixture `fleet`), a
simulated gateway with broker, worker and ingest (fixture `live`), URL names, htmx headers.
Import the fixture functions (`gateway_fleet`, `live_gateway`, `settings_broker`,
`settings_worker`) into a test module to use them there."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.urls import reverse
from guardian.shortcuts import assign_perm

from gateways.models import GatewayModel, GatewayStatus
from inverters.models import InverterStatus
from tests.factories import GatewayFactory, InverterFactory, SiteFactory

HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "action-dialog"}
HTMX_PANEL = {"HX-Request": "true", "HX-Target": "gateway-settings-panel"}
HTMX_TABLE = {"HX-Request": "true", "HX-Target": "gateway-table"}


def url(name: str, *args) -> str:
    return reverse(f"gateways:{name}", args=args)


@pytest.fixture(name="fleet")
def gateway_fleet(tenants):
    """SunFix's "Casa Sole" (granted to the owner) with gateway GWPAGE0001 (online, 4G,
    firmware 2.1.0) and two inverters, and a second SunFix site to distribute to."""
    site = SiteFactory(company=tenants.sunfix, name="Casa Sole", address="Via Roma 1")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    other = SiteFactory(company=tenants.sunfix, name="Villa Luna", address="Via Po 2")
    gateway = GatewayFactory(
        serial_number="GWPAGE0001",
        name="Roof kit",
        site=site,
        model=GatewayModel.G4,
        firmware_version="2.1.0",
        status=GatewayStatus.ONLINE,
    )
    first = InverterFactory(
        serial_number="INVPAGE001",
        gateway=gateway,
        modbus_address=1,
        status=InverterStatus.RUNNING,
        firmware_versions={"dsp": "01.02.00", "lcd": "02.00"},
    )
    second = InverterFactory(
        serial_number="INVPAGE002",
        gateway=gateway,
        modbus_address=2,
        status=InverterStatus.RUNNING,
    )
    return SimpleNamespace(site=site, other=other, gateway=gateway, first=first, second=second)


# --- a simulated gateway with a worker and ingest (test_gateway_settings_tab.py) -----------------

LIVE_GATEWAY = "GWSETTAB01"
LIVE_INVERTER = "GWSETTAB01I1"


@pytest.fixture(name="broker", scope="module")
def settings_broker(tmp_path_factory):
    from tests.services import Mosquitto

    mosquitto = Mosquitto(tmp_path_factory.mktemp("gateway-settings-broker")).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(name="worker", scope="module")
def settings_worker(django_db_setup, broker, tmp_path_factory):
    import uuid

    from tests.device_rig import start_worker, stop_process

    queue = f"gateway-settings-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path_factory.mktemp("gateway-settings-worker") / "worker.log"
    proc = start_worker(queue, broker.url, log_path)
    yield SimpleNamespace(queue=queue, proc=proc, log=log_path)
    stop_process(proc)


@pytest.fixture(name="live")
def live_gateway(tenants, broker, worker, settings):
    """SunFix's site with gateway GWSETTAB01 and one ECH10K inverter, simulated and online:
    uploads every hour of simulated time, the clock 60 times faster than real time (so a new
    upload interval shows in the samples within seconds), restarts in well under a second."""
    import uuid

    from maintenance.dispatch import close_reply_waiter
    from simulator.clock import SimClock
    from simulator.environment import Site as SimSite
    from simulator.fleet import FleetThread
    from simulator.gateway import GatewayOptions
    from simulator.sources import GatewaySpec, InverterSpec
    from tests.device_rig import gateway_status, tasks_to, yesterday_noon_in_rome
    from tests.ingest_helpers import TH, running_ingest
    from tests.services import wait_for

    settings.MQTT_URL = broker.url
    site = SiteFactory(company=tenants.sunfix, name="Live site")
    assign_perm("pv_sites.view_site", tenants.owner, site)
    gateway = GatewayFactory(serial_number=LIVE_GATEWAY, site=site, upload_interval_s=3600)
    inverter = InverterFactory(serial_number=LIVE_INVERTER, model=TH, gateway=gateway)
    spec = GatewaySpec(
        serial=LIVE_GATEWAY,
        inverters=(InverterSpec(LIVE_INVERTER, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(45.46, 9.19, "Europe/Rome"),
    )
    clock = SimClock(speed=60, start=yesterday_noon_in_rome())
    with (
        tasks_to(worker.queue),
        running_ingest(broker.broker, client_id=f"gw-ingest-{uuid.uuid4().hex[:6]}") as ingest,
        FleetThread(
            [spec],
            mqtt_url=broker.url,
            clock=clock,
            options=GatewayOptions(restart_scale=0.05),
        ) as sim,
    ):
        wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 15, "gateway online")
        try:
            yield SimpleNamespace(
                t=tenants, site=site, gateway=gateway, inverter=inverter, sim=sim, ingest=ingest
            )
        finally:
            close_reply_waiter()


def simulated_config(live) -> dict:
    return live.sim.call(lambda: dict(live.sim.fleet.gateway(LIVE_GATEWAY).config))
