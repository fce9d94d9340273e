"""Numbers with their units in the reader's language (DESIGN §5): power in kW, energy in kWh
switching to MWh at 10,000 kWh, money in a currency, temperatures in °C or °F; a missing
value is "–", never 0.

Plain functions, so tables, downloads and templates (the `units` tag library) print the same.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import NumberPattern, format_currency, parse_pattern
from django.utils import translation

MISSING = "–"
MWH_FROM_KWH = 10_000


def _locale() -> str:
    return (translation.get_language() or "en").replace("-", "_")


@lru_cache(maxsize=16)
def _decimal_pattern(decimals: int) -> NumberPattern:
    return parse_pattern("#,##0" + ("." + "#" * decimals if decimals else ""))


@lru_cache(maxsize=32)
def _babel_locale(name: str) -> Locale:
    return Locale.parse(name)


def number(value: float | Decimal | None, decimals: int = 2) -> str:
    """A number with the language's separators and at most `decimals` decimals (babel's
    `format_decimal`, with the pattern and the locale parsed once: tables print hundreds)."""
    if value is None:
        return MISSING
    return _decimal_pattern(decimals).apply(value, _babel_locale(_locale()))


def power_kw(watts: float | None, decimals: int = 2) -> str:
    """Power given in W, shown in kW (lists, Home)."""
    if watts is None:
        return MISSING
    return f"{number(watts / 1000, decimals)} kW"


def power_fine(watts: float | None) -> str:
    """Power on a device page: W below 1 kW, kW above."""
    if watts is None:
        return MISSING
    if abs(watts) < 1000:
        return f"{number(watts, 0)} W"
    return power_kw(watts)


def energy(kwh: float | None, decimals: int = 2) -> str:
    """Energy given in kWh; MWh from 10,000 kWh on."""
    if kwh is None:
        return MISSING
    if abs(kwh) >= MWH_FROM_KWH:
        return f"{number(kwh / 1000, decimals)} MWh"
    return f"{number(kwh, decimals)} kWh"


def kwp(value: float | Decimal | None) -> str:
    if value is None:
        return MISSING
    return f"{number(value, 2)} kWp"


def percent(value: float | None, decimals: int = 0) -> str:
    if value is None:
        return MISSING
    return f"{number(value, decimals)} %"


def money(amount: float | Decimal | None, currency: str) -> str:
    """An amount in `currency` as the reader's language writes it (12.345,60 € or €12,345.60)."""
    if amount is None:
        return MISSING
    return format_currency(amount, currency, locale=_locale())


def temperature(celsius: float | None, unit: str = "C") -> str:
    """A temperature measured in °C, shown in the site's or user's unit (C or F)."""
    if celsius is None:
        return MISSING
    if unit == "F":
        return f"{number(celsius * 9 / 5 + 32, 1)} °F"
    return f"{number(celsius, 1)} °C"
