"""Filters over users and the account activity log; every choice is scoped to the viewer."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import AuditAction, AuditEvent, User
from ui.filters import DateRangeFilterForm, DateRangeFilterSet


class UserEmailChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.email


class UserEmailFilter(django_filters.ModelChoiceFilter):
    """A user chosen by email among the users the viewer may see."""

    field_class = UserEmailChoiceField


def visible_users(request) -> QuerySet:
    if request is None:
        return User.objects.none()
    return User.objects.visible_to(request.user).order_by("email")


OBJECT_TYPES = [
    ("accounts.company", _("Company")),
    ("accounts.user", _("User")),
    ("pv_sites.site", _("Site")),
    ("fleet.commissioningreport", _("Commissioning report")),
]


class ActivityFilter(DateRangeFilterSet):
    """Account → Activity log: by actor, action, object and time range."""

    date_field = "occurred_at"

    actor = UserEmailFilter(label=_("User"), queryset=visible_users, empty_label=_("All users"))
    action = django_filters.ChoiceFilter(
        label=_("Action"), choices=AuditAction.choices, empty_label=_("All actions")
    )
    object_type = django_filters.ChoiceFilter(
        label=_("Object type"), choices=OBJECT_TYPES, empty_label=_("All objects")
    )
    object = django_filters.CharFilter(
        label=_("Object"),
        method="filter_object",
        max_length=120,
        widget=forms.TextInput(attrs={"placeholder": _("Name or email"), "autocomplete": "off"}),
    )

    class Meta:
        model = AuditEvent
        fields = ("actor", "action", "object_type", "object", "date_from", "date_to")
        form = DateRangeFilterForm

    def filter_object(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(object_label__icontains=value) | Q(object_id=value))
