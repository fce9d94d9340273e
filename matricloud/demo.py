"""The demo fleet's devices for `make run`: secrets, broker files, the simulator's fleet file
and its arguments.

A real gateway keeps its broker password in its own flash; the simulated ones keep theirs in
`.matricloud/gateway-credentials.json`, written when a gateway is provisioned. The portal
stores only hashes. The embedded broker enforces the same password and ACL files Mosquitto
reads, so the demo runs with per-gateway credentials too.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

PORTAL_USER = "portal"
# History on first start: 30 days at a coarse interval, caught up in about 80 seconds.
BACKFILL_DAYS = 30
BACKFILL_INTERVAL_S = 1800
BACKFILL_SPEED = 32400


@dataclass(frozen=True)
class DemoDevices:
    mqtt_url: str
    credentials_file: Path
    simulator_args: list[str]


def prepare_demo_devices(data: Path, mqtt_url: str, *, enforce_acl: bool) -> DemoDevices:
    """Provision every gateway without a secret, write the broker files when the broker is
    ours, and return the portal's broker URL and the simulator's command-line arguments."""
    from gateways.credentials import (
        ServiceAccount,
        provision_gateway,
        verify_mosquitto_hash,
        write_broker_files,
    )
    from gateways.models import Gateway
    from inverters.models import Inverter
    from matricloud.demo_fleet import ensure_demo_fleet, ensure_spare_gateways
    from matricloud.fleet_file import write_fleet_file

    # Unbound gateways for Create site in the browser; provisioned and simulated like the rest.
    ensure_spare_gateways()
    credentials_file = data / "gateway-credentials.json"
    known = json.loads(credentials_file.read_text()) if credentials_file.exists() else {}
    for gateway in Gateway.objects.order_by("serial_number"):
        secret = known.get(gateway.serial_number)
        # A gateway provisioned again beside the run (`mqtt_credentials provision`) has a new
        # hash: the simulated gateway gets a fresh secret rather than being locked out.
        if (
            secret is None
            or not gateway.mqtt_password_hash
            or not verify_mosquitto_hash(secret, gateway.mqtt_password_hash)
        ):
            known[gateway.serial_number] = provision_gateway(gateway)
    credentials_file.write_text(json.dumps(known, indent=1, sort_keys=True))
    credentials_file.chmod(0o600)

    if enforce_acl:
        secret_file = data / "portal-mqtt.secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(24))
            secret_file.chmod(0o600)
        secret = secret_file.read_text().strip()
        # The portal's own account also reaches the simulator's control topic (mcsim/…).
        # The same writer as `mqtt_credentials write`: service accounts added there are kept.
        account = ServiceAccount(PORTAL_USER, secret, topic="#")
        auth_dir = data / "mosquitto"  # where the embedded broker reads them (matricloud.stack)
        write_broker_files(auth_dir / "passwd", auth_dir / "acl", [account])
        mqtt_url = _with_credentials(mqtt_url, PORTAL_USER, secret)

    fleet_file = data / "fleet.json"
    write_fleet_file(fleet_file)
    args = ["--fleet", str(fleet_file), "--credentials", str(credentials_file)]
    for fault in ensure_demo_fleet()["faults"]:
        args += ["--fault", fault]
    if not Inverter.objects.filter(last_seen_at__isnull=False).exists():
        args += [
            "--backfill-days", str(BACKFILL_DAYS),
            "--backfill-interval", str(BACKFILL_INTERVAL_S),
            "--speed", str(BACKFILL_SPEED),
        ]  # fmt: skip
    return DemoDevices(mqtt_url, credentials_file, args)


def _with_credentials(url: str, user: str, password: str) -> str:
    parsed = urlparse(url)
    netloc = f"{quote(user)}:{quote(password, safe='')}@{parsed.hostname}:{parsed.port}"
    query = parsed.query or "version=311"  # the embedded broker speaks MQTT 3.1.1
    return urlunparse(parsed._replace(netloc=netloc, query=query))
