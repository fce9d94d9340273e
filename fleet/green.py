"""Green efficiency (guide §4.6): what the fleet's total yield spared, with configurable factors.

Standard coal not burnt and CO₂ not emitted are total yield (kWh) × a factor; equivalent trees
are the trees that would take that CO₂ out of the air in a year. The factors, their sources and
how to set them are in docs/home.md (setting `GREEN_FACTORS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from ui import units

FACTOR_NAMES = ("coal_kg_per_kwh", "co2_kg_per_kwh", "co2_kg_per_tree_year")
KG_PER_TONNE = 1000


@dataclass(frozen=True)
class GreenFigures:
    coal_kg: float | None
    co2_kg: float | None
    trees: float | None


def factors() -> dict[str, float | None]:
    """The configured factors (settings.GREEN_FACTORS); a factor left out is None."""
    configured = getattr(settings, "GREEN_FACTORS", {}) or {}
    return {
        name: float(configured[name]) if configured.get(name) is not None else None
        for name in FACTOR_NAMES
    }


def green_figures(total_kwh: float | None) -> GreenFigures:
    """Coal saved and CO₂ avoided (kg) and equivalent trees for `total_kwh`; a figure whose
    factor is not configured, or of a fleet without a total yield, is None ("–")."""
    f = factors()
    coal = _times(total_kwh, f["coal_kg_per_kwh"])
    co2 = _times(total_kwh, f["co2_kg_per_kwh"])
    per_tree = f["co2_kg_per_tree_year"]
    return GreenFigures(
        coal_kg=coal,
        co2_kg=co2,
        trees=co2 / per_tree if co2 is not None and per_tree else None,
    )


def _times(kwh: float | None, factor: float | None) -> float | None:
    return None if kwh is None or factor is None else kwh * factor


def mass(kg: float | None) -> str:
    """A mass given in kg: kg below one tonne, t from there on."""
    if kg is None:
        return units.MISSING
    if abs(kg) >= KG_PER_TONNE:
        return f"{units.number(kg / KG_PER_TONNE, 2)} t"
    return f"{units.number(kg, 1)} kg"


def trees(count: float | None) -> str:
    """A number of trees: whole trees from ten on, one decimal below."""
    if count is None:
        return units.MISSING
    return units.number(count, 0 if abs(count) >= 10 else 1)


__all__ = ["FACTOR_NAMES", "GreenFigures", "factors", "green_figures", "mass", "trees"]
