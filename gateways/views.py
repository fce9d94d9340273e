"""Maintenance → Operations log: every remote operation on the user's devices, one operation's
details, and its live state."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views import View
from django.views.generic import TemplateView

from accounts.views.generic import (
    ActionRequiredMixin,
    HtmxPartialMixin,
    ObjectListView,
    ObjectMixin,
    htmx_partial,
)
from gateways.filters import OperationFilter
from gateways.models import RemoteOperation
from gateways.tables import (
    OperationTable,
    compare_values,
    local_time,
    outcome_values,
    value_items,
    values_text,
)

# Sent by the state block when it shows a finished operation, so the page around it can
# refresh what depends on the outcome (e.g. the values after).
FINISHED_EVENT = "operation-finished"
CSV_CHUNK_SIZE = 2000


def visible_operations(request: HttpRequest) -> QuerySet:
    return RemoteOperation.objects.visible_to(request.user).select_related(
        "site", "gateway", "user"
    )


def filter_operations(request: HttpRequest) -> OperationFilter:
    """The filters of the query string over the user's operations; `qs` is empty when they
    are invalid (the form carries the errors)."""
    return OperationFilter(request.GET or None, visible_operations(request), request=request)


def filtered_queryset(filterset: OperationFilter) -> QuerySet:
    if filterset.is_bound and not filterset.is_valid():
        return filterset.queryset.none()
    return filterset.qs


class OperationListView(ObjectListView):
    """The operations log: newest first, filtered, paginated; pending rows refresh live."""

    action = "maintenance.view"
    model = RemoteOperation
    table_class = OperationTable
    template_name = "gateways/operations/list.html"
    htmx_target = "operation-table"

    def get_queryset(self) -> QuerySet:
        self.filterset = filter_operations(self.request)
        return filtered_queryset(self.filterset)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        table = context["table"]
        context["filter_form"] = self.filterset.form
        context["filtered"] = any(self.request.GET.get(name) for name in self.filterset.form.fields)
        context["pending"] = any(row.record.is_pending for row in table.paginated_rows)
        context["is_partial"] = htmx_partial(self.request, self.htmx_target)
        return context


class OperationCSVView(ActionRequiredMixin, View):
    """Download: the filtered operations (all pages) as CSV, streamed."""

    action = "maintenance.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        filterset = filter_operations(request)
        if filterset.is_bound and not filterset.is_valid():
            errors = "; ".join(
                str(error) for field_errors in filterset.errors.values() for error in field_errors
            )
            return HttpResponseBadRequest(
                _("Invalid filter: %(errors)s") % {"errors": errors},
                content_type="text/plain; charset=utf-8",
            )
        header = [
            _("Time"),
            _("Type"),
            _("Device SN"),
            _("Site"),
            _("Gateway"),
            _("User"),
            pgettext("remote operation", "Operation"),
            _("Before"),
            _("After"),
            _("State"),
            _("Error"),
            _("Command ID"),
            _("Sent"),
            _("Finished"),
        ]
        rows = _csv_rows(filterset.qs, header)
        writer = csv.writer(_Echo())
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
        )
        day = timezone.localdate().strftime("%Y%m%d")
        response["Content-Disposition"] = f'attachment; filename="operations-{day}.csv"'
        return response


class OperationDetailView(HtmxPartialMixin, ObjectMixin, TemplateView):
    """Everything about one operation. The values and result re-render (partial "values")
    when the live state block reports that the operation has finished."""

    action = "maintenance.view"
    model = RemoteOperation
    template_name = "gateways/operations/detail.html"
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
    """The state block alone (`gateways/operations/_state.html`): polled while pending."""

    action = "maintenance.view"
    model = RemoteOperation
    template_name = "gateways/operations/_state.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(operation=self.object, **kwargs)

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        if self.object.is_finished:
            response["HX-Trigger"] = json.dumps({FINISHED_EVENT: {"id": self.object.pk}})
        return response


class _Echo:
    """A file-like object for csv.writer that hands each written line back."""

    def write(self, value: str) -> str:
        return value


_FORMULA_START = ("=", "+", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """Text for a CSV cell; a leading formula character is escaped so spreadsheets show it."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) or (text.startswith("-") and not _is_number(text)):
        return f"'{text}"
    return text


def _is_number(text: str) -> bool:
    try:
        float(text.split(" ", 1)[0])
    except ValueError:
        return False
    return True


def _csv_rows(queryset: QuerySet, header: list[str]) -> Iterator[list[str]]:
    """The header, then one row per operation. The rows are produced while the response
    streams, after the view has returned: the request's time zone and language are taken now
    and re-activated then."""
    tz = timezone.get_current_timezone()
    language = translation.get_language()

    def rows() -> Iterator[list[str]]:
        yield header
        with timezone.override(tz), translation.override(language):
            for operation in queryset.iterator(chunk_size=CSV_CHUNK_SIZE):
                yield [_cell(value) for value in _csv_values(operation)]

    return rows()


def _csv_values(operation: RemoteOperation) -> tuple:
    user_email = operation.user_email or (operation.user.email if operation.user else "")
    return (
        local_time(operation.created_at),
        operation.get_kind_display(),
        operation.device_serial,
        operation.site.name if operation.site else "",
        operation.gateway.serial_number,
        user_email,
        operation.summary,
        values_text(operation.before),
        values_text(outcome_values(operation)),
        operation.get_state_display(),
        operation.error,
        operation.command_id,
        local_time(operation.sent_at),
        local_time(operation.finished_at),
    )
