"""The demo fleet in the database: sites, gateways and inverters for the demo tenants.

`ensure_demo_fleet()` is idempotent: objects are found by site name (within the company) and by
serial number; what exists is left as it is. It needs the companies of `manage.py seed_demo`
("Helios Distribution", "SunFix Installers" below it, "Nordlicht Energie").

Helios Distribution: 12 sites (4 of its own in Italy, the US and Canada, 8 of its installer
SunFix in Germany, Switzerland, Austria and Italy); owner@sunfix.example may view one of them.
Nordlicht Energie: 5 sites in Germany, Sweden and Poland. One gateway per site, 1–3 inverters
per gateway on Modbus addresses 1..3. `faults` in the result lists the fault codes the demo
raises at start (`simulate --fault SN:CODE` each).

`ensure_spare_gateways()` adds gateways that are not bound to any site yet, so that a demo user
(om@sunfix.example) can create a site with a real simulated gateway in the browser (guide
§6.1.2): SPARE_GATEWAYS lists their SNs — one in SunFix's stock, one unclaimed (still the
platform operator's). The simulator plays them like the others (a gateway without a site
stands in Munich) and ingest stores their inverters' data without a site until they are bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from django.db import transaction

from devices.gateway_settings import default_config
from devices.registermap import RegisterMap

OWNER_EMAIL = "owner@sunfix.example"


@dataclass(frozen=True)
class DemoSite:
    company: str  # "helios", "sunfix" or "nordlicht"
    name: str
    address: str
    country: str
    latitude: float
    longitude: float
    time_zone: str
    currency: str
    tariff: str
    capacity_kwp: float
    site_type: str
    gateway_model: str
    inverters: tuple[str, ...]
    owner: bool = False


WIFI, G4, ETH = "CPS WiFi Kit", "CPS 4G Kit", "CPS ETH Kit"
SML, TH10, TH20 = "ECH6K-SML-EU", "ECH10K-TH-EU", "ECH20K-TH-EU"

# fmt: off
SITES: tuple[DemoSite, ...] = (
    # Helios Distribution's own sites
    DemoSite("helios", "Villa Aurora", "Via dei Colli 12, 50125 Firenze FI", "IT",
             43.755012, 11.248037, "Europe/Rome", "EUR", "0.2800", 12.0, "residential",
             WIFI, (TH10,)),
    DemoSite("helios", "Cascina Verde Agriturismo", "Strada Provinciale 25, 12051 Alba CN",
             "IT", 44.700214, 8.035081, "Europe/Rome", "EUR", "0.2600", 36.0, "commercial",
             ETH, (TH20, TH10)),
    DemoSite("helios", "Sacramento Ridge Residence", "2451 Ridge View Dr, Sacramento, CA 95821",
             "US", 38.626118, -121.382233, "America/Los_Angeles", "USD", "0.3200", 11.5,
             "residential", WIFI, (TH10,)),
    DemoSite("helios", "Lakeshore Family Home", "88 Lakeshore Rd E, Oakville, ON L6J 1H8",
             "CA", 43.447120, -79.666004, "America/Toronto", "CAD", "0.1300", 9.6,
             "residential", G4, (SML, SML)),
    # SunFix Installers (below Helios)
    DemoSite("sunfix", "Haus Sonnenhang", "Sonnenhang 7, 82031 Grünwald", "DE",
             48.042031, 11.525114, "Europe/Berlin", "EUR", "0.3400", 9.8, "residential",
             WIFI, (TH10,), owner=True),
    DemoSite("sunfix", "Bäckerei Huber", "Hauptstraße 41, 85354 Freising", "DE",
             48.401187, 11.744062, "Europe/Berlin", "EUR", "0.3000", 24.0, "commercial",
             ETH, (TH20,)),
    DemoSite("sunfix", "Weingut Rebenhof", "Weinstraße 3, 67146 Deidesheim", "DE",
             49.408020, 8.185012, "Europe/Berlin", "EUR", "0.3100", 48.0, "commercial",
             ETH, (TH20, TH20, TH10)),
    DemoSite("sunfix", "Chalet Alpenblick", "Dorfstrasse 18, 3818 Grindelwald", "CH",
             46.624104, 8.041322, "Europe/Zurich", "CHF", "0.2900", 10.5, "residential",
             G4, (TH10,)),
    DemoSite("sunfix", "Hofladen Maier", "Moosweg 2, 6020 Innsbruck", "AT",
             47.269212, 11.404102, "Europe/Vienna", "EUR", "0.2700", 18.0, "commercial",
             WIFI, (TH10, SML)),
    DemoSite("sunfix", "Reihenhaus Schneider", "Lindenallee 22, 90402 Nürnberg", "DE",
             49.452103, 11.076665, "Europe/Berlin", "EUR", "0.3300", 7.5, "residential",
             WIFI, (SML,)),
    DemoSite("sunfix", "Autohaus Berger", "Industriestraße 9, 86150 Augsburg", "DE",
             48.370545, 10.897790, "Europe/Berlin", "EUR", "0.2900", 36.0, "commercial",
             ETH, (TH20, TH10)),
    DemoSite("sunfix", "Ferienhaus Gardasee", "Via Roma 5, 37016 Garda VR", "IT",
             45.576210, 10.707014, "Europe/Rome", "EUR", "0.2900", 8.2, "residential",
             G4, (SML,)),
    # Nordlicht Energie
    DemoSite("nordlicht", "Strandhaus Warnemünde", "Am Strom 59, 18119 Rostock", "DE",
             54.177012, 12.087110, "Europe/Berlin", "EUR", "0.3500", 8.8, "residential",
             WIFI, (SML,)),
    DemoSite("nordlicht", "Gärtnerei Petersen", "Deichstraße 14, 25813 Husum", "DE",
             54.477160, 9.051220, "Europe/Berlin", "EUR", "0.3100", 28.0, "commercial",
             ETH, (TH20, TH10)),
    DemoSite("nordlicht", "Villa Nordstern", "Elbchaussee 210, 22605 Hamburg", "DE",
             53.548021, 9.892114, "Europe/Berlin", "EUR", "0.3600", 11.0, "residential",
             WIFI, (TH10,)),
    DemoSite("nordlicht", "Solgården Göteborg", "Tornstigen 4, 412 63 Göteborg", "SE",
             57.697011, 12.013240, "Europe/Stockholm", "SEK", "1.4500", 9.2, "residential",
             G4, (SML, SML)),
    DemoSite("nordlicht", "Dom Kowalskich", "ul. Leśna 8, 80-180 Gdańsk", "PL",
             54.352025, 18.646638, "Europe/Warsaw", "PLN", "0.9500", 7.8, "residential",
             WIFI, (SML,)),
)
# fmt: on

#: (site index, inverter index on its gateway, code): raised when the demo simulator starts.
DEMO_FAULTS = (
    (3, 1, "Protect0080"),  # Lakeshore: grid undervoltage (EPS operation)
    (6, 0, "Warn0030"),  # Weingut Rebenhof: ABF meter communication lost
    (11, 0, "Fault0201"),  # Ferienhaus Gardasee: BMS communication fault
    (13, 1, "Fault0108"),  # Gärtnerei Petersen: over-temperature fault (inverter stopped)
)

GATEWAY_FIRMWARE = ("10.04", "10.06", "10.07")


@dataclass(frozen=True)
class SpareGateway:
    serial: str
    company: str  # "sunfix", or "platform" for an unclaimed gateway
    model: str
    inverters: tuple[tuple[str, str], ...]  # (serial, model) on addresses 1, 2, ...


#: Gateways in stock, bound to no site: SNs to type into Create site → Add gateway.
SPARE_GATEWAYS: tuple[SpareGateway, ...] = (
    SpareGateway("MCGWW24099001", "sunfix", WIFI, (("ECH10T24109011", TH10),)),
    SpareGateway(
        "MCGWE24099002",
        "platform",
        ETH,
        (("ECH20T24109021", TH20), ("ECH06S24109022", SML)),
    ),
)
DSP_VERSIONS = ("01.18", "01.20", "01.22")


def gateway_serial(index: int, model: str) -> str:
    kind = {WIFI: "W", G4: "G", ETH: "E"}[model]
    return f"MCGW{kind}2409{index + 1:04d}"


def inverter_serial(index: int, position: int, model: str) -> str:
    code = {SML: "06S", TH10: "10T", TH20: "20T"}[model]
    return f"ECH{code}2410{index + 1:03d}{position + 1}"


def ensure_demo_fleet(stdout: TextIO | None = None) -> dict:
    """Create the demo fleet where missing; returns what exists (serials) and the demo faults."""
    from guardian.shortcuts import assign_perm

    from accounts.models import Company, User
    from gateways.models import Gateway
    from inverters.models import Inverter
    from sites.models import Site

    def say(line: str) -> None:
        if stdout is not None:
            stdout.write(line + "\n")

    helios = Company.objects.filter(name="Helios Distribution").first()
    nordlicht = Company.objects.filter(name="Nordlicht Energie").first()
    if helios is None or nordlicht is None:
        raise LookupError("the demo companies are missing: run `manage.py seed_demo` first")
    sunfix = (
        Company.objects.filter(name="SunFix Installers", superior=helios).first()
        or Company.objects.filter(name="SunFix Installers").first()
    )
    if sunfix is None:
        raise LookupError("the installer 'SunFix Installers' is missing: run seed_demo first")
    companies = {"helios": helios, "sunfix": sunfix, "nordlicht": nordlicht}
    owner = User.objects.filter(email=OWNER_EMAIL).first()
    created = {"sites": 0, "gateways": 0, "inverters": 0}
    result: dict = {"sites": [], "gateways": [], "inverters": [], "created": created}

    with transaction.atomic():
        for index, spec in enumerate(SITES):
            company = companies[spec.company]
            site, new = Site.objects.get_or_create(
                company=company,
                name=spec.name,
                defaults={
                    "address": spec.address,
                    "country": spec.country,
                    "latitude": Decimal(f"{spec.latitude:.6f}"),
                    "longitude": Decimal(f"{spec.longitude:.6f}"),
                    "time_zone": spec.time_zone,
                    "site_type": spec.site_type,
                    "currency": spec.currency,
                    "capacity_kwp": Decimal(f"{spec.capacity_kwp:.2f}"),
                    "tariff_per_kwh": Decimal(spec.tariff),
                },
            )
            if new:
                created["sites"] += 1
                say(f"created site {spec.name} ({company.name})")
            if spec.owner and owner is not None:
                assign_perm("pv_sites.view_site", owner, site)
            result["sites"].append(spec.name)

            gw_serial = gateway_serial(index, spec.gateway_model)
            protocols = [(model, pos + 1) for pos, model in enumerate(spec.inverters)]
            gateway, new = Gateway.objects.get_or_create(
                serial_number=gw_serial,
                defaults={
                    "name": f"{spec.name} gateway",
                    "model": spec.gateway_model,
                    "firmware_version": GATEWAY_FIRMWARE[index % len(GATEWAY_FIRMWARE)],
                    "company": company,
                    "site": site,
                    "upload_interval_s": 60,
                    "settings": default_config(protocols, 60),
                },
            )
            if new:
                created["gateways"] += 1
                say(f"created gateway {gw_serial} ({spec.gateway_model}) at {spec.name}")
            result["gateways"].append(gw_serial)

            for position, model in enumerate(spec.inverters):
                serial = inverter_serial(index, position, model)
                rm = RegisterMap.for_model(model)
                _, new = Inverter.objects.get_or_create(
                    serial_number=serial,
                    defaults={
                        "name": f"{spec.name} #{position + 1}",
                        "model": model,
                        "gateway": gateway,
                        "modbus_address": position + 1,
                        "company": company,
                        "site": site,
                        "rated_power_kw": Decimal(rm.rated_power_w) / 1000,
                        "firmware_versions": {
                            "DSP": DSP_VERSIONS[(index + position) % len(DSP_VERSIONS)],
                            "LCD": "02.00",
                            "ARC": "00.84",
                        },
                    },
                )
                if new:
                    created["inverters"] += 1
                    say(f"created inverter {serial} ({model}) on {gw_serial} @{position + 1}")
                result["inverters"].append(serial)

    result["faults"] = [
        f"{inverter_serial(i, pos, SITES[i].inverters[pos])}:{code}" for i, pos, code in DEMO_FAULTS
    ]
    if owner is None:
        say(f"note: {OWNER_EMAIL} does not exist, no site was granted")
    return result


def ensure_spare_gateways(stdout: TextIO | None = None) -> dict:
    """Create the unbound SPARE_GATEWAYS where missing (found by SN; what exists, bound or
    not, is left as it is). Returns their serials and what was created."""
    from accounts.models import Company, CompanyType
    from gateways.models import Gateway
    from inverters.models import Inverter

    platform = Company.objects.filter(type=CompanyType.PLATFORM, superior=None).first()
    sunfix = Company.objects.filter(name="SunFix Installers").first()
    if platform is None or sunfix is None:
        raise LookupError("the demo companies are missing: run `manage.py seed_demo` first")
    companies = {"platform": platform, "sunfix": sunfix}
    created = {"gateways": 0, "inverters": 0}
    with transaction.atomic():
        for index, spec in enumerate(SPARE_GATEWAYS):
            company = companies[spec.company]
            protocols = [(model, pos + 1) for pos, (_sn, model) in enumerate(spec.inverters)]
            gateway, new = Gateway.objects.get_or_create(
                serial_number=spec.serial,
                defaults={
                    "model": spec.model,
                    "firmware_version": GATEWAY_FIRMWARE[index % len(GATEWAY_FIRMWARE)],
                    "company": company,
                    "site": None,
                    "upload_interval_s": 60,
                    "settings": default_config(protocols, 60),
                },
            )
            if new:
                created["gateways"] += 1
                if stdout is not None:
                    stdout.write(f"created spare gateway {spec.serial} ({company.name})\n")
            for position, (serial, model) in enumerate(spec.inverters):
                rm = RegisterMap.for_model(model)
                _, new = Inverter.objects.get_or_create(
                    serial_number=serial,
                    defaults={
                        "model": model,
                        "gateway": gateway,
                        "modbus_address": position + 1,
                        "company": gateway.company,
                        "site": gateway.site,
                        "rated_power_kw": Decimal(rm.rated_power_w) / 1000,
                        "firmware_versions": {"DSP": "01.22", "LCD": "02.00", "ARC": "00.84"},
                    },
                )
                created["inverters"] += int(new)
    return {"gateways": [spec.serial for spec in SPARE_GATEWAYS], "created": created}
