"""`{% load units %}`: the filters of ui.units for templates (`{{ site.power_w|power }}`)."""

from __future__ import annotations

from django import template

from ui import units

register = template.Library()

register.filter("power", units.power_kw)
register.filter("power_fine", units.power_fine)
register.filter("energy", units.energy)
register.filter("kwp", units.kwp)
register.filter("percent", units.percent)
register.filter("number", units.number)


@register.filter
def money(amount, currency: str) -> str:
    return units.money(amount, currency)


@register.filter
def temperature(celsius, unit: str = "C") -> str:
    return units.temperature(celsius, unit)
