"""Filters of the site list (guide §6.1.1): superior account, status, site name and user.

Every filter is a query-string parameter, so a filtered list can be bookmarked; Home links to
`/site/?status=online` and the like. Choices are scoped to the viewer.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.db.models import BigIntegerField, Q, QuerySet
from django.db.models.functions import Cast
from django.utils.translation import gettext_lazy as _
from guardian.models import UserObjectPermission

from accounts.models import Company, User
from fleet.queries import SiteStatus
from sites.models import Site
from ui.filters import ContainsFilter, search_input
from ui.forms import StyledFormMixin


def visible_companies(request) -> QuerySet:
    if request is None:
        return Company.objects.none()
    return Company.objects.visible_to(request.user).order_by("name")


class CompanyNameChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Company) -> str:
        return obj.name


class CompanyTreeFilter(django_filters.ModelChoiceFilter):
    """A company among the visible ones; the sites of it and of every company below it."""

    field_class = CompanyNameChoiceField

    def filter(self, qs: QuerySet, value: Company | None) -> QuerySet:
        if not value:
            return qs
        return qs.filter(company__path__startswith=value.path)


class SiteFilterForm(StyledFormMixin, forms.Form):
    pass


def granted_site_ids(users: QuerySet) -> QuerySet:
    """The ids of the sites granted (guardian `view_site`) to any of `users`, as a subquery."""
    return (
        UserObjectPermission.objects.filter(
            content_type=ContentType.objects.get_for_model(Site),
            permission__codename="view_site",
            user__in=users,
        )
        .annotate(site_id=Cast("object_pk", BigIntegerField()))
        .values("site_id")
    )


class SiteFilter(django_filters.FilterSet):
    company = CompanyTreeFilter(
        label=_("Superior account"),
        queryset=visible_companies,
        empty_label=_("Select superior account"),
    )
    status = django_filters.ChoiceFilter(
        label=_("Status"),
        choices=SiteStatus.choices,
        empty_label=_("All status"),
        method="filter_status",
    )
    name = ContainsFilter(
        label=_("Site name"), max_length=120, widget=search_input(_("Search by site name"))
    )
    user = django_filters.CharFilter(
        label=_("User"),
        method="filter_user",
        max_length=120,
        widget=search_input(_("Search user")),
    )

    class Meta:
        model = Site
        fields = ("company", "status", "name", "user")
        form = SiteFilterForm

    def filter_status(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(status=value)

    def filter_user(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Sites granted to a user the viewer can see whose username or email matches."""
        value = value.strip()
        if not value:
            return queryset
        users = User.objects.visible_to(self.request.user).filter(
            Q(username__icontains=value) | Q(email__icontains=value)
        )
        return queryset.filter(pk__in=granted_site_ids(users))
