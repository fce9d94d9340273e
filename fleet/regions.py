"""What a site's region (country) suggests when a site is created (guide §6.1.2): time zone,
currency unit, temperature unit, a default tariff per kWh and the country's centre for
coordinates left blank. Every value is only a suggestion the form shows and the user may
override.

Tariffs are rounded typical household prices per kWh in the local currency; a region without
a row here gets its time zone from the tz database, euros, °C and no tariff (the user enters
one).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from accounts.models import Currency
from accounts.time_zones import default_time_zone
from sites.models import TemperatureUnit

C, F = TemperatureUnit.CELSIUS.value, TemperatureUnit.FAHRENHEIT.value


@dataclass(frozen=True)
class RegionDefaults:
    time_zone: str
    currency: str
    temperature_unit: str
    tariff_per_kwh: Decimal | None
    latitude: Decimal | None = None
    longitude: Decimal | None = None


def _row(tz: str, currency: str, unit: str, tariff: str, lat: str, lon: str) -> RegionDefaults:
    return RegionDefaults(tz, currency, unit, Decimal(tariff), Decimal(lat), Decimal(lon))


#: Country code → defaults. Centres are approximate geographic centres.
REGION_DEFAULTS: dict[str, RegionDefaults] = {
    "AT": _row("Europe/Vienna", Currency.EUR, C, "0.25", "47.516231", "14.550072"),
    "BE": _row("Europe/Brussels", Currency.EUR, C, "0.30", "50.503887", "4.469936"),
    "CA": _row("America/Toronto", Currency.CAD, C, "0.13", "56.130366", "-106.346771"),
    "CH": _row("Europe/Zurich", Currency.CHF, C, "0.27", "46.818188", "8.227512"),
    "DE": _row("Europe/Berlin", Currency.EUR, C, "0.30", "51.165691", "10.451526"),
    "ES": _row("Europe/Madrid", Currency.EUR, C, "0.20", "40.463667", "-3.749220"),
    "FR": _row("Europe/Paris", Currency.EUR, C, "0.21", "46.227638", "2.213749"),
    "GB": _row("Europe/London", Currency.GBP, C, "0.25", "55.378051", "-3.435973"),
    "GR": _row("Europe/Athens", Currency.EUR, C, "0.20", "39.074208", "21.824312"),
    "IE": _row("Europe/Dublin", Currency.EUR, C, "0.35", "53.412910", "-8.243890"),
    "IT": _row("Europe/Rome", Currency.EUR, C, "0.25", "41.871940", "12.567380"),
    "LU": _row("Europe/Luxembourg", Currency.EUR, C, "0.22", "49.815273", "6.129583"),
    "MX": _row("America/Mexico_City", Currency.USD, C, "0.10", "23.634501", "-102.552784"),
    "NL": _row("Europe/Amsterdam", Currency.EUR, C, "0.28", "52.132633", "5.291266"),
    "PL": _row("Europe/Warsaw", Currency.PLN, C, "0.80", "51.919438", "19.145136"),
    "PR": _row("America/Puerto_Rico", Currency.USD, F, "0.25", "18.220833", "-66.590149"),
    "PT": _row("Europe/Lisbon", Currency.EUR, C, "0.22", "39.399872", "-8.224454"),
    "SE": _row("Europe/Stockholm", Currency.SEK, C, "1.50", "60.128161", "18.643501"),
    "US": _row("America/New_York", Currency.USD, F, "0.16", "39.828300", "-98.579500"),
}


def region_defaults(country: str) -> RegionDefaults:
    """The suggestions for `country` (an ISO 3166 code), a fallback for unlisted ones."""
    code = (country or "").upper()
    known = REGION_DEFAULTS.get(code)
    if known is not None:
        return known
    return RegionDefaults(default_time_zone(code) if code else "UTC", Currency.EUR, C, None)
