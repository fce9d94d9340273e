"""Filters of the inverter list (guide §6.4.1): All Status, All Models and a keyword (device
SN or name); and, from the firmware catalogue's Upgrade statistics, the inverters that run a
board's version (`firmware=DSP:01.22`, not shown in the filter bar).

Every filter is a query-string parameter, so a filtered list can be bookmarked. The models are
those that have a register map (devices/registermaps): no query is needed to offer them.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _

from devices.registermap import list_models
from inverters.models import Inverter, InverterStatus
from ui.filters import ContainsFilter, search_input
from ui.forms import StyledFormMixin


class InverterFilterForm(StyledFormMixin, forms.Form):
    pass


def model_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in list_models()]


class InverterFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        label=_("Status"), choices=InverterStatus.choices, empty_label=_("All status")
    )
    model = django_filters.ChoiceFilter(
        label=_("Model"), choices=model_choices, empty_label=_("All models"), lookup_expr="iexact"
    )
    q = ContainsFilter(
        label=_("Keyword"),
        max_length=64,
        fields=("serial_number", "name"),
        widget=search_input(_("Device SN or name")),
    )

    firmware = django_filters.CharFilter(
        method="running_firmware", widget=forms.HiddenInput, max_length=80
    )

    class Meta:
        model = Inverter
        fields = ("status", "model", "q", "firmware")
        form = InverterFilterForm

    def running_firmware(self, queryset, name: str, value: str):
        """`BOARD:VERSION`: the board as uploads name it (DSP, SLAVE_DSP…), any case."""
        board, sep, version = value.partition(":")
        board = board.strip().upper()
        if not sep or not board.replace("_", "").isalnum():
            return queryset.none()
        return queryset.filter(**{f"firmware_versions__{board}": version.strip()})
