"""Tables of Account → User management (guide §5.2)."""

from __future__ import annotations

import functools

import django_tables2 as tables
from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from accounts import permissions
from accounts.filters import OBJECT_TYPES
from accounts.models import AuditEvent, Company, Role, User
from ui.tables import BaseTable

OBJECT_TYPE_LABELS = dict(OBJECT_TYPES)

ROLE_BADGES = {
    Role.ADMIN: "text-bg-primary",
    Role.OM: "text-bg-info",
    Role.OWNER: "text-bg-secondary",
}


def _allowed(user: User, action: str, record: User) -> bool:
    """`can(user, action, record)` for a row that already came from `visible_to(user)`.

    Asking `can` with the object would re-check visibility with one query per row; the rows are
    visible by construction, so only the role and the object rules are left to ask.
    """
    return permissions.can_on_visible(user, action, record)


def _operations_context(record: User, table: UserTable) -> dict:
    user = table.request.user
    return {
        "can_edit": _allowed(user, "user.change", record),
        "can_change_role": _allowed(user, "user.change_role", record),
        "can_reset_password": _allowed(user, "user.reset_password", record),
        "is_self": record.pk == user.pk,
    }


def local_time(value) -> str:
    """A timestamp in the user's time zone, as the guide writes it: 2025-03-05 01:10:22+08:00."""
    if value is None:
        return ""
    return timezone.localtime(value).isoformat(sep=" ", timespec="seconds")


class UserTable(BaseTable):
    username = tables.Column(verbose_name=_("Username"), attrs={"td": {"class": "text-nowrap"}})
    email = tables.Column(verbose_name=_("Email"), attrs={"td": {"class": "text-nowrap"}})
    role = tables.Column(verbose_name=_("Role"))
    supervisor = tables.Column(verbose_name=_("Supervisor"), order_by=("supervisor__username",))
    country = tables.Column(verbose_name=_("Country"))
    description = tables.Column(verbose_name=_("Description"), orderable=False)
    date_joined = tables.DateTimeColumn(
        verbose_name=_("Created"),
        format="SHORT_DATE_FORMAT",
        attrs={"td": {"class": "text-nowrap"}},
    )
    language = tables.Column(verbose_name=_("Language"))
    time_zone = tables.Column(verbose_name=_("Time zone"))
    last_login = tables.DateTimeColumn(
        verbose_name=_("Last sign-in"),
        format="SHORT_DATETIME_FORMAT",
        attrs={"td": {"class": "text-nowrap"}},
    )
    operations = tables.TemplateColumn(
        template_name="accounts/users/_operations.html",
        extra_context=_operations_context,
        verbose_name=_("Operation"),
        orderable=False,
        exclude_from_export=True,
        attrs={"th": {"class": "text-end"}, "td": {"class": "text-end"}},
    )

    class Meta(BaseTable.Meta):
        model = User
        fields = (
            "username",
            "email",
            "role",
            "supervisor",
            "country",
            "description",
            "language",
            "time_zone",
            "date_joined",
            "last_login",
            "operations",
        )
        default_columns = (
            "email",
            "role",
            "supervisor",
            "country",
            "description",
            "date_joined",
        )
        required_columns = ("username", "operations")
        empty_text = _("No users match.")
        order_by = ("username",)

    def render_username(self, record: User) -> str:
        if _allowed(self.request.user, "user.change", record):
            return format_html(
                '<a href="{}" class="fw-semibold text-decoration-none">{}</a>',
                reverse("accounts:user_edit", args=[record.pk]),
                record.username,
            )
        return record.username

    def render_role(self, record: User) -> str:
        return format_html(
            '<span class="badge {}">{}</span>',
            ROLE_BADGES.get(record.role, "text-bg-secondary"),
            record.get_role_display(),
        )

    def render_country(self, record: User) -> str:
        country = record.country  # `value` would be the display name, not the Country
        return format_html(
            '<span title="{}"><img src="{}" alt="" class="flag me-1">{}</span>',
            country.name,
            country.flag,
            country.code,
        )

    def render_description(self, value: str) -> str:
        return format_html(
            '<span class="d-inline-block text-truncate align-bottom mw-14rem" title="{}">{}</span>',
            value,
            value,
        )

    def value_supervisor(self, value: User) -> str:
        return value.username

    def value_country(self, record: User) -> str:
        return record.country.code

    def value_date_joined(self, value) -> str:
        return local_time(value)

    def value_last_login(self, value) -> str:
        return local_time(value)


class CompanyTable(BaseTable):
    """The companies of Account → Company: the tree on the page shows the visible columns of
    each company; downloads list the companies the search selects."""

    name = tables.Column(verbose_name=_("Company name"))
    type = tables.Column(verbose_name=_("Company type"))
    superior = tables.Column(verbose_name=_("Superior"), order_by=("superior__name",))
    country = tables.Column(verbose_name=_("Country/region"))
    user_count = tables.Column(verbose_name=_("Users"))
    subordinate_count = tables.Column(verbose_name=_("Sub-companies"))
    address = tables.Column(verbose_name=_("Address"))
    description = tables.Column(verbose_name=_("Description"), orderable=False)
    created_at = tables.DateTimeColumn(verbose_name=_("Created"), format="SHORT_DATE_FORMAT")

    class Meta(BaseTable.Meta):
        model = Company
        fields = (
            "name",
            "type",
            "superior",
            "country",
            "user_count",
            "subordinate_count",
            "address",
            "description",
            "created_at",
        )
        default_columns = ("type", "country", "user_count", "subordinate_count")
        required_columns = ("name",)
        # In the tree a company's superior is the company above it; a download names it.
        download_only = ("superior",)

    def value_superior(self, value: Company) -> str:
        return value.name

    def value_country(self, record: Company) -> str:
        return record.country.code

    def value_created_at(self, value) -> str:
        return local_time(value)


def changes_text(object_type: str, before: dict, after: dict) -> str:
    """`Field: old → new; …` for an audit row, with the fields' names and choice labels as the
    forms show them (a field only in one of them shows “–”)."""
    names = list(dict.fromkeys([*before, *after]))
    parts = []
    for name in names:
        label, choices = _field_text(object_type, name)
        old, new = before.get(name, "–"), after.get(name, "–")
        parts.append(f"{label}: {_plain(old, choices)} → {_plain(new, choices)}")
    return "; ".join(parts)


@functools.cache
def _field_text(object_type: str, name: str) -> tuple[str, dict]:
    """(the field's verbose name, its choice labels), or the stored name for a field the model
    no longer has. The labels are lazy: they take the request's language when joined."""
    try:
        field = apps.get_model(object_type)._meta.get_field(name)
    except (LookupError, ValueError, FieldDoesNotExist):
        return name, {}
    choices = {key: label for key, label in getattr(field, "flatchoices", None) or ()}
    return capfirst(field.verbose_name), choices


def _plain(value, choices: dict | None = None) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return str(_("yes") if value else _("no"))
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "–"
    if choices and value in choices:
        return str(choices[value])
    return str(value)


class ActivityTable(BaseTable):
    """Account → Activity log: one row per audited account change."""

    occurred_at = tables.Column(verbose_name=_("Time"), attrs={"td": {"class": "text-nowrap"}})
    actor_label = tables.Column(verbose_name=_("User"), order_by=("actor_label",))
    action = tables.Column(verbose_name=_("Action"))
    object_type = tables.Column(verbose_name=_("Object type"))
    object_label = tables.Column(verbose_name=_("Object"))
    changes = tables.Column(
        verbose_name=_("Changes"), accessor="pk", orderable=False, empty_values=()
    )
    company = tables.Column(verbose_name=_("Company"), order_by=("company__name",))
    client_address = tables.Column(verbose_name=_("IP address"))
    object_id = tables.Column(verbose_name=_("Object id"))

    class Meta(BaseTable.Meta):
        model = AuditEvent
        fields = (
            "occurred_at",
            "actor_label",
            "action",
            "object_type",
            "object_label",
            "changes",
            "company",
            "client_address",
            "object_id",
        )
        default_columns = ("actor_label", "action", "object_label", "changes")
        required_columns = ("occurred_at",)
        empty_text = _("No account changes match.")
        order_by = ("-occurred_at",)

    def render_occurred_at(self, value) -> str:
        return local_time(value)

    def render_object_type(self, value: str) -> str:
        return str(OBJECT_TYPE_LABELS.get(value, value))

    def render_changes(self, record: AuditEvent) -> str:
        text = changes_text(record.object_type, record.before or {}, record.after or {})
        return format_html(
            '<span class="d-inline-block text-truncate align-bottom mw-24rem" title="{}">{}</span>',
            text,
            text or "–",
        )

    def value_occurred_at(self, value) -> str:
        return local_time(value)

    def value_changes(self, record: AuditEvent) -> str:
        return changes_text(record.object_type, record.before or {}, record.after or {})

    def value_company(self, value: Company) -> str:
        return value.name
