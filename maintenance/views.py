"""Maintenance → Operations log: every remote operation on the user's devices, one operation's
details, and its live state."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.generic import TemplateView

from accounts.views.generic import HtmxPartialMixin, ObjectListView, ObjectMixin
from maintenance.filters import OperationFilter
from maintenance.models import RemoteOperation
from maintenance.tables import OperationTable, compare_values, value_items

# Sent by the state block when it shows a finished operation, so the page around it can
# refresh what depends on the outcome (e.g. the values after).
FINISHED_EVENT = "operation-finished"
POLL_INTERVAL = "1s"


class OperationListView(ObjectListView):
    """The operations log: newest first, filtered, paginated, with the user's columns and
    downloads; while a row of the page is pending the table refreshes itself."""

    action = "maintenance.view"
    model = RemoteOperation
    table_class = OperationTable
    filterset_class = OperationFilter
    template_name = "maintenance/operations/list.html"
    htmx_target = "operation-table"
    export_filename = "operations"
    empty_icon = "journal-text"
    empty_text = _("No remote operation has been carried out on your devices yet.")
    empty_filtered_text = _("No operation matches these filters.")
    reset_label = _("Show all operations")

    def get_queryset(self) -> QuerySet:
        return super().get_queryset().select_related("site", "gateway", "user")

    def get_poll_interval(self, table: OperationTable) -> str:
        pending = any(row.record.is_pending for row in table.paginated_rows)
        return POLL_INTERVAL if pending else ""

    def get_export_title(self) -> str:
        return gettext("Operations log")


class OperationCSVView(OperationListView):
    """The log's CSV download at its own address, which bookmarks and links still use."""

    export_format = "csv"
    http_method_names = ["get", "head", "options"]


class OperationDetailView(HtmxPartialMixin, ObjectMixin, TemplateView):
    """Everything about one operation. The values and result re-render (partial "values")
    when the live state block reports that the operation has finished."""

    action = "maintenance.view"
    model = RemoteOperation
    template_name = "maintenance/operations/detail.html"
    partial_name = "values"
    htmx_target = "operation-values"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "gateway", "inverter", "user")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        operation = self.object
        return super().get_context_data(
            operation=operation,
            request_items=value_items(operation.request),
            value_rows=compare_values(operation.before, operation.after),
            result_items=value_items(operation.result),
            command_json=json.dumps(operation.command, indent=2, ensure_ascii=False, default=str),
            **kwargs,
        )


class OperationStateView(ObjectMixin, TemplateView):
    """The state block alone (`maintenance/operations/_state.html`): polled while pending."""

    action = "maintenance.view"
    model = RemoteOperation
    template_name = "maintenance/operations/_state.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(operation=self.object, **kwargs)

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        if self.object.is_finished:
            response["HX-Trigger"] = json.dumps({FINISHED_EVENT: {"id": self.object.pk}})
        return response
