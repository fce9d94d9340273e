"""Account → Activity log: the audited account changes administrators may see."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.filters import ActivityFilter
from accounts.models import AuditEvent
from accounts.tables import ActivityTable
from accounts.views.generic import ObjectListView


class ActivityLogView(ObjectListView):
    action = "audit.view"
    model = AuditEvent
    table_class = ActivityTable
    filterset_class = ActivityFilter
    template_name = "accounts/activity/list.html"
    htmx_target = "activity-table"
    export_filename = "account-activity"
    empty_icon = "journal-text"
    empty_text = _("No account changes yet. Adding or editing a company or a user shows here.")
    empty_filtered_text = _("No account changes match these filters.")

    def get_queryset(self) -> QuerySet:
        return super().get_queryset().select_related("company")
