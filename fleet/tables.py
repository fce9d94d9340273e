"""The site list's table (guide §6.1.1, figure 6-2), its columns and downloads.

The live columns (status, power, today's yield, online rate) and the owners come from
annotations (`annotate_site_rows`): correlated subqueries that PostgreSQL evaluates for the
rows of one page only, unless a filter or the sort needs them for every row.
"""

from __future__ import annotations

from functools import partial

import django_tables2 as tables
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.aggregates import StringAgg
from django.db.models import CharField, DateField, F, Func, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from guardian.models import UserObjectPermission

from accounts import permissions
from accounts.models import User
from accounts.tables import local_time
from fleet.queries import STATUS_TONE, SiteStatus, online_rate, with_figures
from inverters.models import SiteEnergyDaily
from sites.models import Site, SiteType
from ui import units
from ui.tables import (
    BaseTable,
    MenuAction,
    country_flag,
    figure_column,
    operations_column,
    row_menu,
    status_pill,
    truncated_text,
)

OWNER_SEPARATOR = ", "


def _site_local_today() -> Func:
    """Today's date where the outer site is (energy days are the site's local days)."""
    return Func(
        OuterRef("time_zone"),
        template="(now() AT TIME ZONE %(expressions)s)::date",
        output_field=DateField(),
    )


def annotate_site_rows(sites: QuerySet, viewer: User) -> QuerySet:
    """The list's annotations: `status`, `power_w`, `day_kwh` (the site's local today),
    `inverter_count`, `answering_count` and `owner_names` (the accounts the site is granted
    to, among the users `viewer` may see)."""
    site_type = ContentType.objects.get_for_model(Site)
    grants = (
        UserObjectPermission.objects.filter(
            content_type=site_type,
            permission__codename="view_site",
            object_pk=Cast(OuterRef("pk"), CharField()),
            user__in=User.objects.visible_to(viewer),
        )
        .order_by()
        .values("content_type")
        .annotate(names=StringAgg("user__username", OWNER_SEPARATOR, order_by="user__username"))
        .values("names")
    )
    day_kwh = (
        SiteEnergyDaily.objects.filter(site=OuterRef("pk"), day=_site_local_today())
        .order_by()
        .values("pv_kwh")[:1]
    )
    return (
        with_figures(sites)
        .annotate(day_kwh=Subquery(day_kwh))
        .annotate(owner_names=Subquery(grants, output_field=CharField()))
    )


SITE_TYPE_LABELS = dict(SiteType.choices)


def _site_url(pk: int, name: str) -> str:
    return reverse(f"sites:{name}", args=[pk])


class SiteTable(BaseTable):
    status = tables.Column(verbose_name=_("Site status"), order_by=("status",))
    name = tables.Column(verbose_name=_("Site name"), attrs={"td": {"class": "text-nowrap"}})
    site_type = tables.Column(
        verbose_name=_("Site type"),
        accessor="pk",
        order_by=("site_type",),
        empty_values=(),
        attrs={"td": {"class": "text-nowrap"}},
    )
    # Read through `record`: the column's value would be the country's display name, which
    # normalises the whole country list once per cell.
    country = tables.Column(
        verbose_name=_("Region"), accessor="pk", order_by=("country",), empty_values=()
    )
    online_rate = tables.Column(
        verbose_name=_("Online rate"), accessor="pk", orderable=False, empty_values=()
    )
    capacity_kwp = figure_column(_("Capacity"))
    power_w = figure_column(_("Power generation"), empty_values=())
    day_kwh = figure_column(_("Power generation day"), empty_values=())
    owner_names = tables.Column(verbose_name=_("Account"), orderable=False)
    company = tables.Column(verbose_name=_("Company"), order_by=("company__name",))
    address = tables.Column(verbose_name=_("Address"), orderable=False)
    tariff_per_kwh = figure_column(_("Tariff per kWh"))
    created_at = tables.Column(verbose_name=_("Created"), attrs={"td": {"class": "text-nowrap"}})
    operations = operations_column()

    class Meta(BaseTable.Meta):
        model = Site
        fields = (
            "status",
            "name",
            "site_type",
            "country",
            "online_rate",
            "capacity_kwp",
            "power_w",
            "day_kwh",
            "owner_names",
            "company",
            "address",
            "tariff_per_kwh",
            "created_at",
            "operations",
        )
        default_columns = (
            "status",
            "site_type",
            "country",
            "online_rate",
            "capacity_kwp",
            "power_w",
            "day_kwh",
            "owner_names",
        )
        required_columns = ("name", "operations")
        order_by = ("name",)
        preference_key = "SiteTable"
        default = units.MISSING

    # --- Sorting: sites without a value last, whichever the direction ---------------------------

    def order_power_w(self, queryset: QuerySet, is_descending: bool) -> tuple[QuerySet, bool]:
        return _nulls_last(queryset, "power_w", is_descending), True

    def order_day_kwh(self, queryset: QuerySet, is_descending: bool) -> tuple[QuerySet, bool]:
        return _nulls_last(queryset, "day_kwh", is_descending), True

    # --- Cells on the page ----------------------------------------------------------------------

    def render_status(self, value: str) -> str:
        status = SiteStatus(value)
        return status_pill(status.label, STATUS_TONE[status])

    def render_site_type(self, record: Site) -> str:
        return SITE_TYPE_LABELS.get(record.site_type, record.site_type)

    def render_operations(self, record: Site) -> str:
        """The row's "…" menu for those who manage sites."""
        if not permissions.can_on_visible(self.request.user, "site.manage", record):
            return mark_safe('<span class="text-secondary" aria-hidden="true">–</span>')
        url = partial(_site_url, record.pk)
        return row_menu(
            record.name,
            [
                MenuAction(url("distribute"), "person-plus", _("Distribute")),
                MenuAction(url("rename"), "pencil", _("Rename")),
                MenuAction(url("delete"), "trash", _("Delete"), danger=True, separated=True),
            ],
        )

    def render_name(self, record: Site) -> str:
        return format_html(
            '<a href="{}" class="fw-semibold text-decoration-none">{}</a>',
            reverse("sites:detail", args=[record.pk]),
            record.name,
        )

    def render_country(self, record: Site) -> str:
        return country_flag(record.country)

    def render_online_rate(self, record: Site) -> str:
        return units.percent(online_rate(record))

    def render_capacity_kwp(self, value) -> str:
        return units.kwp(value)

    def render_power_w(self, value) -> str:
        return units.power_kw(value)

    def render_day_kwh(self, value) -> str:
        return units.energy(value)

    def render_owner_names(self, value: str) -> str:
        return truncated_text(value)

    def render_company(self, value) -> str:
        return value.name

    def render_address(self, value: str) -> str:
        return truncated_text(value)

    def render_tariff_per_kwh(self, record: Site) -> str:
        return units.money(record.tariff_per_kwh, record.currency)

    def render_created_at(self, value) -> str:
        return local_time(value)

    # --- Cells of a download --------------------------------------------------------------------

    def value_status(self, value: str) -> str:
        return str(SiteStatus(value).label)

    def value_name(self, record: Site) -> str:
        return record.name

    def value_country(self, record: Site) -> str:
        return record.country.code

    def value_site_type(self, record: Site) -> str:
        return str(SITE_TYPE_LABELS.get(record.site_type, record.site_type))

    def value_owner_names(self, value: str) -> str:
        return value or ""

    def value_company(self, value) -> str:
        return value.name

    def value_created_at(self, value) -> str:
        return local_time(value)


def _nulls_last(queryset: QuerySet, name: str, descending: bool) -> QuerySet:
    field = F(name)
    return queryset.order_by(
        field.desc(nulls_last=True) if descending else field.asc(nulls_last=True)
    )
