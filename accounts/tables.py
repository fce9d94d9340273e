"""Tables of Account → User management (guide §5.2)."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts import permissions
from accounts.models import Role, User

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


class UserTable(tables.Table):
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
    operations = tables.TemplateColumn(
        template_name="accounts/users/_operations.html",
        extra_context=_operations_context,
        verbose_name=_("Operation"),
        orderable=False,
        attrs={"th": {"class": "text-end"}, "td": {"class": "text-end"}},
    )

    class Meta:
        model = User
        fields = (
            "username",
            "email",
            "role",
            "supervisor",
            "country",
            "description",
            "date_joined",
            "operations",
        )
        template_name = "accounts/users/_table.html"
        attrs = {
            "class": "table table-hover align-middle mb-0",
            # Sorting swaps only the table (see templates/accounts/users/_table.html).
            "thead": {
                "hx-boost": "true",
                "hx-target": "#user-table",
                "hx-swap": "outerHTML",
            },
        }
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
