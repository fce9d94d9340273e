"""Filters of Maintenance → Operations log: every choice is scoped to what the user may see."""

from __future__ import annotations

import datetime

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from gateways.models import OperationKind, OperationState, RemoteOperation
from matricloud.forms import StyledFormMixin
from sites.models import Site

# Dates outside this range cannot be turned into a time range on every time zone.
EARLIEST_DATE = datetime.date(1970, 1, 1)
LATEST_DATE = datetime.date(2999, 12, 31)


class OperationFilterForm(StyledFormMixin, forms.Form):
    def clean(self) -> dict:
        data = super().clean()
        for name in ("date_from", "date_to"):
            day = data.get(name)
            if day and not EARLIEST_DATE <= day <= LATEST_DATE:
                self.add_error(
                    name,
                    _("Enter a date between %(first)s and %(last)s.")
                    % {"first": EARLIEST_DATE.isoformat(), "last": LATEST_DATE.isoformat()},
                )
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise ValidationError(_("The start date must not be after the end date."))
        return data


class UserEmailChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.email


class UserEmailFilter(django_filters.ModelChoiceFilter):
    field_class = UserEmailChoiceField


def _visible_sites(request) -> QuerySet:
    return Site.objects.visible_to(request.user) if request else Site.objects.none()


def _visible_users(request) -> QuerySet:
    if request is None:
        return User.objects.none()
    return User.objects.visible_to(request.user).order_by("email")


def _start_of_day(day: datetime.date) -> datetime.datetime:
    """Midnight of `day` in the user's time zone (activated for the request)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


class OperationFilter(django_filters.FilterSet):
    site = django_filters.ModelChoiceFilter(
        label=_("Site"), queryset=_visible_sites, empty_label=_("All sites")
    )
    sn = django_filters.CharFilter(
        label=_("Device SN"),
        method="filter_serial",
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": _("Search SN"), "autocomplete": "off"}),
    )
    user = UserEmailFilter(label=_("User"), queryset=_visible_users, empty_label=_("All users"))
    kind = django_filters.ChoiceFilter(
        label=_("Type"), choices=OperationKind.choices, empty_label=_("All types")
    )
    state = django_filters.ChoiceFilter(
        label=_("State"), choices=OperationState.choices, empty_label=_("All states")
    )
    date_from = django_filters.DateFilter(
        label=_("From"),
        method="filter_from",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    date_to = django_filters.DateFilter(
        label=_("To"),
        method="filter_to",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    class Meta:
        model = RemoteOperation
        fields = ("site", "sn", "user", "kind", "state", "date_from", "date_to")
        form = OperationFilterForm

    def filter_serial(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(device_serial__icontains=value) | Q(gateway__serial_number__icontains=value)
        )

    def filter_from(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        return queryset.filter(created_at__gte=_start_of_day(value))

    def filter_to(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        # Inclusive: everything before the next day's midnight.
        return queryset.filter(created_at__lt=_start_of_day(value + datetime.timedelta(days=1)))
