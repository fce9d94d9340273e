"""Time zones a user can choose, and a new user's default one, from their country.

The default comes from the tz database's country table (`zone.tab`: one row per country and
zone, named after a city of that country), read from the system's tz database or the `tzdata`
package. A country with one zone gets it (Germany → Europe/Berlin). A country with several gets
its principal zone: the first the table lists (United States → America/New_York, Spain →
Europe/Madrid rather than the Canary Islands), or the most populous where the table starts
elsewhere (Canada → America/Toronto). Companies and users carry no state or province, so that is
as close as a default gets; the user picks another zone in their profile.
Without a tz database, or for a country without a zone the profile offers, it is UTC.
"""

from __future__ import annotations

import importlib.resources
import logging
import zoneinfo
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TIME_ZONE = "UTC"
# The areas of the profile's time zone list (accounts/profile_forms.py); Arctic for Svalbard,
# which registration offers with the European countries.
TIME_ZONE_AREAS = (
    "Europe",
    "America",
    "Atlantic",
    "Arctic",
    "Africa",
    "Asia",
    "Australia",
    "Pacific",
)
# zone.tab orders a country's zones geographically (east to west, islands first). Where its
# first zone is not where most of the country lives, the most populous one instead.
PRINCIPAL_ZONES = {
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "CA": "America/Toronto",
    "RU": "Europe/Moscow",
    "UA": "Europe/Kyiv",
    "UZ": "Asia/Tashkent",
}


def default_time_zone(country: str) -> str:
    """The time zone a new user of `country` (ISO 3166 code) starts with."""
    candidates = [zone for zone in country_zones().get(country.upper(), ()) if is_offered(zone)]
    if not candidates:
        return DEFAULT_TIME_ZONE
    principal = PRINCIPAL_ZONES.get(country.upper())
    return principal if principal in candidates else candidates[0]


def is_offered(zone: str) -> bool:
    """Is `zone` one of the profile's choices (UTC, or a known zone of the listed areas)?"""
    if zone == DEFAULT_TIME_ZONE:
        return True
    return zone.split("/", 1)[0] in TIME_ZONE_AREAS and zone in _available_zones()


@cache
def _available_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@cache
def country_zones() -> dict[str, tuple[str, ...]]:
    """Country code → its zones, in the order of the tz database's zone.tab."""
    text = _zone_table()
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) >= 3:
            zones.setdefault(columns[0], []).append(columns[2])
    return {country: tuple(names) for country, names in zones.items()}


def _zone_table() -> str:
    """zone.tab from the tz database the zoneinfo module uses, else from `tzdata`."""
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / "zone.tab"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    try:
        return (
            importlib.resources.files("tzdata")
            .joinpath("zoneinfo", "zone.tab")
            .read_text(encoding="utf-8")
        )
    except (ModuleNotFoundError, FileNotFoundError):
        logger.warning("no tz database zone.tab found: new users start in %s", DEFAULT_TIME_ZONE)
        return ""
