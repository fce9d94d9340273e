"""Revenue: each site's energy at its own tariff, converted into the reader's currency.

A site sells at `tariff_per_kwh` in its own `currency`. SQL sums energy × tariff per site
currency (a handful of rows however many sites there are); Python converts those sums with
the `CURRENCY_RATES` setting (units of each currency per 1 EUR, docs/home.md) and adds them up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.conf import settings
from django.db.models import ExpressionWrapper, F, FloatField


def revenue_of(energy_column: str, tariff_path: str = "site__tariff_per_kwh"):
    """energy × the site's current tariff, as a float (money of the site's currency)."""
    return ExpressionWrapper(F(energy_column) * F(tariff_path), output_field=FloatField())


def rates() -> dict[str, float]:
    """Units of each currency per 1 EUR."""
    return {code.upper(): float(rate) for code, rate in settings.CURRENCY_RATES.items()}


def convert(amount: float, source: str, target: str, table: Mapping[str, float]) -> float | None:
    """`amount` of `source` in `target`, or None when either rate is unknown (or not positive)."""
    if source == target:
        return amount
    source_rate, target_rate = table.get(source), table.get(target)
    if not source_rate or not target_rate or source_rate <= 0 or target_rate <= 0:
        return None
    return amount / source_rate * target_rate


def total_in(amounts: Mapping[str, float | None] | Iterable, target: str) -> float | None:
    """The sum of amounts given per currency ({"EUR": 12.0, "CHF": 3.5}), in `target`.

    None when there is nothing to add (no energy recorded: "–", not 0) or when one currency
    has no rate: a total that silently left a currency out would be wrong.
    """
    items = amounts.items() if isinstance(amounts, Mapping) else amounts
    table = rates()
    total: float | None = None
    for currency, amount in items:
        if amount is None:
            continue
        converted = convert(float(amount), currency, target, table)
        if converted is None:
            return None
        total = (total or 0.0) + converted
    return total


__all__ = ["convert", "rates", "revenue_of", "total_in"]
