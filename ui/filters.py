"""Filter pieces every list shares: a date range in the user's time zone, validated.

A list's FilterSet subclasses `DateRangeFilterSet` and names the timestamp it filters
(`date_field`); its Meta uses `DateRangeFilterForm` (or a subclass) as `form`.
"""

from __future__ import annotations

import datetime

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ui.forms import StyledFormMixin

# Dates outside this range cannot be turned into a time range on every time zone.
EARLIEST_DATE = datetime.date(1970, 1, 1)
LATEST_DATE = datetime.date(2999, 12, 31)


class DateRangeFilterForm(StyledFormMixin, forms.Form):
    """Refuses dates no time zone can hold and a start after the end, with messages."""

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


def start_of_day(day: datetime.date) -> datetime.datetime:
    """Midnight of `day` in the user's time zone (activated for the request)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


class DateRangeFilterSet(django_filters.FilterSet):
    """`date_from` and `date_to` (inclusive days in the user's time zone) on `date_field`."""

    date_field = "created_at"

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

    def filter_from(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        return queryset.filter(**{f"{self.date_field}__gte": start_of_day(value)})

    def filter_to(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        # Inclusive: everything before the next day's midnight.
        end = start_of_day(value + datetime.timedelta(days=1))
        return queryset.filter(**{f"{self.date_field}__lt": end})


# --- Text search -----------------------------------------------------------------------------


def search_input(placeholder: str) -> forms.TextInput:
    """A search box's input: type "search" (a clear button), no autocomplete."""
    return forms.TextInput(
        attrs={"type": "search", "placeholder": placeholder, "autocomplete": "off"}
    )


class ContainsFilter(django_filters.CharFilter):
    """The rows whose `fields` (default: `field_name`) contain the typed text, ignoring case
    and the spaces around it; blank keeps every row."""

    def __init__(self, *args, fields: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.search_fields = fields

    def filter(self, qs: QuerySet, value: str | None) -> QuerySet:
        value = (value or "").strip()
        if not value:
            return qs
        matches = Q()
        for field in self.search_fields or (self.field_name,):
            matches |= Q(**{f"{field}__icontains": value})
        return qs.filter(matches)
