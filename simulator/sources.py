"""Where a fleet comes from: a synthetic fleet of N gateways or a fleet file (which the
portal writes from its database), and the gateways' broker passwords.

Credentials file (written by provisioning): JSON mapping gateway serial → MQTT password, either
flat `{"GW0001": "secret", ...}` or wrapped `{"gateways": {"GW0001": "secret", ...}}`. Each
gateway connects with username = its serial number and that password; a gateway without an
entry connects with the broker URL's credentials, or anonymously.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devices.protocol import SERIAL_RE
from devices.registermap import list_models
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


def specs_from_file(path: str | Path) -> list[GatewaySpec]:
    """The gateways of a fleet file (JSON; format in simulator/README.md, "Fleet file").

    A gateway with an invalid serial, or an inverter whose model has no register map, is
    skipped with a warning, so one bad row does not stop the rest of the fleet.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = data.get("gateways") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a fleet file is an object with a list under 'gateways'")
    known = {m.upper() for m in list_models()}
    specs = []
    for row in rows:
        serial = str(row.get("serial", ""))
        if not SERIAL_RE.match(serial):
            log.warning("gateway %r skipped: not a valid MQTT serial", serial)
            continue
        inverters = []
        for inv in row.get("inverters", []):
            if str(inv.get("model", "")).upper() not in known:
                log.warning(
                    "inverter %s skipped: no register map for %s",
                    inv.get("serial"),
                    inv.get("model"),
                )
                continue
            inverters.append(
                InverterSpec(
                    serial=str(inv["serial"]),
                    model=str(inv["model"]),
                    address=int(inv.get("address", 1)),
                    firmware=dict(inv.get("firmware") or {}),
                    pv_kwp=float(inv["pv_kwp"]) if inv.get("pv_kwp") else None,
                )
            )
        if not inverters:
            continue
        place = row.get("site") or {}
        site = Site(
            float(place.get("latitude", Site.latitude)),
            float(place.get("longitude", Site.longitude)),
            str(place.get("time_zone", Site.time_zone)),
            str(place.get("name", "")),
        )
        settings = row.get("settings")
        specs.append(
            GatewaySpec(
                serial=serial,
                inverters=tuple(sorted(inverters, key=lambda i: i.address)),
                model=str(row.get("model") or GATEWAY_MODELS[0]),
                firmware=str(row.get("firmware") or "10.00"),
                upload_interval_s=int(row.get("upload_interval_s") or 60),
                settings=settings if isinstance(settings, dict) and settings else None,
                site=site,
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
