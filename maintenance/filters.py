"""Filters of Maintenance → Operations log: every choice is scoped to what the user may see."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.filters import UserEmailFilter, visible_users
from maintenance.models import OperationKind, OperationState, RemoteOperation
from sites.models import Site
from ui.filters import DateRangeFilterForm, DateRangeFilterSet


def _visible_sites(request) -> QuerySet:
    return Site.objects.visible_to(request.user) if request else Site.objects.none()


class OperationFilter(DateRangeFilterSet):
    site = django_filters.ModelChoiceFilter(
        label=_("Site"), queryset=_visible_sites, empty_label=_("All sites")
    )
    sn = django_filters.CharFilter(
        label=_("Device SN"),
        method="filter_serial",
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": _("Search SN"), "autocomplete": "off"}),
    )
    user = UserEmailFilter(label=_("User"), queryset=visible_users, empty_label=_("All users"))
    kind = django_filters.ChoiceFilter(
        label=_("Type"), choices=OperationKind.choices, empty_label=_("All types")
    )
    state = django_filters.ChoiceFilter(
        label=_("State"), choices=OperationState.choices, empty_label=_("All states")
    )

    class Meta:
        model = RemoteOperation
        fields = ("site", "sn", "user", "kind", "state", "date_from", "date_to")
        form = DateRangeFilterForm

    def __init__(self, *args, hidden: tuple[str, ...] = (), **kwargs) -> None:
        """`hidden`: filters a page leaves out because its rows share them (e.g. Site and
        Device SN on one inverter's log)."""
        super().__init__(*args, **kwargs)
        for name in hidden:
            self.filters.pop(name, None)

    def filter_serial(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(device_serial__icontains=value) | Q(gateway__serial_number__icontains=value)
        )
