"""Where a fleet comes from: a synthetic fleet of N gateways, the portal's database, and the
gateways' broker passwords.

Credentials file (written by provisioning): JSON mapping gateway serial → MQTT password, either
flat `{"GW0001": "secret", ...}` or wrapped `{"gateways": {"GW0001": "secret", ...}}`. Each
gateway connects with username = its serial number and that password; a gateway without an
entry connects with the broker URL's credentials, or anonymously.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateways.protocol import SERIAL_RE
from inverters.registermap import list_models
from simulator.environment import Site

log = logging.getLogger("simulator.sources")

GATEWAY_MODELS = ("CPS WiFi Kit", "CPS 4G Kit", "CPS ETH Kit")
INVERTER_MODELS = ("ECH6K-SML-EU", "ECH10K-TH-EU", "ECH20K-TH-EU")

#: Places for synthetic fleets: (name, latitude, longitude, time zone).
PLACES = (
    ("Munich", 48.137, 11.575, "Europe/Berlin"),
    ("Hamburg", 53.551, 9.994, "Europe/Berlin"),
    ("Rome", 41.903, 12.496, "Europe/Rome"),
    ("Milan", 45.464, 9.190, "Europe/Rome"),
    ("Madrid", 40.417, -3.704, "Europe/Madrid"),
    ("Lyon", 45.764, 4.836, "Europe/Paris"),
    ("Vienna", 48.208, 16.373, "Europe/Vienna"),
    ("Zurich", 47.377, 8.541, "Europe/Zurich"),
    ("Utrecht", 52.091, 5.122, "Europe/Amsterdam"),
    ("Gothenburg", 57.709, 11.975, "Europe/Stockholm"),
    ("Krakow", 50.065, 19.945, "Europe/Warsaw"),
    ("Bristol", 51.455, -2.588, "Europe/London"),
    ("Sacramento", 38.582, -121.494, "America/Los_Angeles"),
    ("Austin", 30.267, -97.743, "America/Chicago"),
    ("Toronto", 43.653, -79.383, "America/Toronto"),
    ("Vancouver", 49.283, -123.121, "America/Vancouver"),
)


@dataclass(frozen=True)
class InverterSpec:
    serial: str
    model: str
    address: int = 1
    firmware: dict = field(default_factory=dict)
    pv_kwp: float | None = None


@dataclass(frozen=True)
class GatewaySpec:
    serial: str
    inverters: tuple[InverterSpec, ...]
    model: str = "CPS WiFi Kit"
    firmware: str = "10.00"
    upload_interval_s: int = 60
    settings: dict | None = None
    site: Site = field(default_factory=Site)


def synthetic_specs(
    count: int, *, seed: int = 0, prefix: str = "SIM", upload_interval_s: int = 60
) -> list[GatewaySpec]:
    """N gateways with 1–3 inverters each; same arguments → same fleet, serials included."""
    specs = []
    for i in range(1, count + 1):
        rng = random.Random(seed * 1_000_003 + i)
        name, lat, lon, tz = rng.choice(PLACES)
        site = Site(lat + rng.uniform(-0.3, 0.3), lon + rng.uniform(-0.3, 0.3), tz, name)
        inverters = tuple(
            InverterSpec(
                serial=f"{prefix}INV{i:07d}{k}",
                model=rng.choice(INVERTER_MODELS),
                address=k,
                firmware={"DSP": f"01.{rng.randint(10, 30):02d}", "LCD": "02.00", "ARC": "00.84"},
            )
            for k in range(1, rng.randint(1, 3) + 1)
        )
        specs.append(
            GatewaySpec(
                serial=f"{prefix}GW{i:07d}",
                inverters=inverters,
                model=rng.choice(GATEWAY_MODELS),
                firmware=f"10.{rng.randint(0, 9):02d}",
                upload_interval_s=upload_interval_s,
                site=site,
            )
        )
    return specs


def specs_from_db(gateways: Iterable | None = None) -> list[GatewaySpec]:
    """The portal's gateways with their inverters (Django must be set up)."""
    from gateways.models import Gateway

    known = {m.upper() for m in list_models()}
    queryset = gateways if gateways is not None else Gateway.objects.all()
    queryset = queryset.select_related("site").prefetch_related("inverters")
    specs = []
    for gw in queryset:
        if not SERIAL_RE.match(gw.serial_number):
            log.warning("gateway %r skipped: not a valid MQTT serial", gw.serial_number)
            continue
        inverters = sorted(gw.inverters.all(), key=lambda inv: inv.modbus_address)
        for inv in inverters:
            if inv.model.upper() not in known:
                log.warning("inverter %s skipped: no register map for %s", inv, inv.model)
        inverters = [inv for inv in inverters if inv.model.upper() in known]
        if not inverters:
            continue
        site = gw.site
        rated = {inv.serial_number: float(inv.rated_power_kw or 0) or None for inv in inverters}
        total_rated = sum(r or 0 for r in rated.values())
        inv_specs = []
        for inv in inverters:
            kwp = None
            if site is not None and site.capacity_kwp and total_rated and rated[inv.serial_number]:
                kwp = float(site.capacity_kwp) * rated[inv.serial_number] / total_rated
            elif site is not None and site.capacity_kwp:
                kwp = float(site.capacity_kwp) / len(inverters)
            inv_specs.append(
                InverterSpec(
                    inv.serial_number,
                    inv.model,
                    inv.modbus_address,
                    dict(inv.firmware_versions or {}),
                    kwp,
                )
            )
        sim_site = (
            Site(float(site.latitude), float(site.longitude), site.time_zone, site.name)
            if site is not None
            else Site()
        )
        settings = gw.settings if isinstance(gw.settings, dict) and gw.settings else None
        specs.append(
            GatewaySpec(
                serial=gw.serial_number,
                inverters=tuple(inv_specs),
                model=gw.model,
                firmware=gw.firmware_version or "10.00",
                upload_interval_s=gw.upload_interval_s or 60,
                settings=settings,
                site=sim_site,
            )
        )
    return specs


def load_credentials(source: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """Gateway serial → password from a JSON file path or a mapping (None → no passwords)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("gateways"), dict):
        data = data["gateways"]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("credentials must map gateway serial numbers to password strings")
    return data
