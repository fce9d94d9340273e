"""Maintenance → Parameters (guide §6.2.6, §6.4.2.6): an inverter's register parameters found by
Quick Search or Group Search, read and written remotely.

Reads and writes go through `maintenance.remote`; the page never waits for the device. A Value
cell that shows a pending operation fetches itself again every second until the operation has
finished; a table with pending rows (after "Read group") does the same as a whole.

The panel (`maintenance/parameters/_panel.html`) is mounted by other pages too: a site's Settings
tab subclasses `ParameterPageView` with `selectable_inverters` narrowed to the site and
`parameters_page_url` set to the tab. Read and Write stay these views; the panel's requests
carry the hosting page in `return_to` (a local path), so that the table polls it and a request
without JavaScript returns to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views import View
from django.views.generic import TemplateView
from django_htmx.http import reswap, retarget, trigger_client_event

from accounts.permissions import can
from accounts.views.generic import (
    ActionRequiredMixin,
    HtmxPartialMixin,
    ObjectMixin,
    htmx_partial,
)
from devices.registermap import PointSpec, RegisterMap, UnknownModelError
from inverters.models import Inverter
from maintenance.models import PENDING_STATES, OperationKind, OperationState, RemoteOperation
from maintenance.parameter_forms import (
    InverterSearchForm,
    ParameterReadForm,
    ParameterSearchForm,
    ParameterWriteForm,
    initial_value,
    search_mode,
)
from maintenance.remote import OperationRefused, read_registers, write_registers
from maintenance.tables import value_items
from ui.query import ascii_int, positive_int

PAGE_TEMPLATE = "maintenance/parameters/page.html"
# The inverters, the register table and the Write dialog: included by every page that shows them.
PANEL_TEMPLATE = "maintenance/parameters/_panel.html"
VALUE_TEMPLATE = "maintenance/parameters/_value.html"
TABLE_TARGET = "parameter-table"
INVERTER_TARGET = "inverter-list"
DIALOG_TARGET = "parameter-dialog"
# Sent with a successful write, so the page closes the dialog.
WRITTEN_EVENT = "parameter-written"
PARAMETERS_PER_PAGE = 25
INVERTERS_PER_PAGE = 10
# The query parameter naming the page that hosts the panel, when it is not this one.
RETURN_PARAMETER = "return_to"


@dataclass
class ValueCell:
    """What the Value column shows for one point: the newest value known and, while one is
    running, the operation that will bring a newer one."""

    key: str
    text: str = ""
    value: Any = None
    at: datetime | None = None
    source: RemoteOperation | None = None  # the operation the value comes from
    operation: RemoteOperation | None = None  # a running operation, or the finished one shown
    error: str = ""
    polls: bool = False

    @property
    def polls_with_table(self) -> bool:
        """Pending in a table render: the table, not the cell, fetches itself again."""
        return self.operation is not None and self.operation.is_pending and not self.polls


# Per point of one inverter, one row for each outcome, newest first: the succeeded operation
# that brought its value (the values a read returned, or those read back after a write), the
# pending operation that will read or write it, and the operation that last failed on it. One
# query for the whole table, whatever the number of operations.
_KNOWN_VALUES_SQL = """
SELECT DISTINCT ON (p.point_key, p.outcome)
       op.id, op.state, op.kind, op.created_at, op.finished_at, op.error,
       p.point_key, p.entry::text AS entry_json, p.outcome
FROM {table} AS op
CROSS JOIN LATERAL (
    SELECT e.key, e.value, 'value'
    FROM jsonb_each(
        CASE
            WHEN op.state <> %(succeeded)s THEN '{{}}'::jsonb
            WHEN op.kind = %(read)s AND jsonb_typeof(op.result -> 'values') = 'object'
                THEN op.result -> 'values'
            WHEN op.kind <> %(read)s AND jsonb_typeof(op.after -> 'values') = 'object'
                THEN op.after -> 'values'
            ELSE '{{}}'::jsonb
        END
    ) AS e
    UNION ALL
    SELECT k.value, NULL::jsonb,
           CASE WHEN op.state = ANY(%(pending)s) THEN 'pending' ELSE 'failed' END
    FROM jsonb_array_elements_text(
        CASE
            WHEN op.state <> %(succeeded)s AND jsonb_typeof(op.request -> 'keys') = 'array'
                THEN op.request -> 'keys'
            ELSE '[]'::jsonb
        END
    ) AS k(value)
    UNION ALL
    SELECT k.key, NULL::jsonb,
           CASE WHEN op.state = ANY(%(pending)s) THEN 'pending' ELSE 'failed' END
    FROM jsonb_object_keys(
        CASE
            WHEN op.state <> %(succeeded)s AND jsonb_typeof(op.request -> 'values') = 'object'
                THEN op.request -> 'values'
            ELSE '{{}}'::jsonb
        END
    ) AS k(key)
) AS p(point_key, entry, outcome)
WHERE op.inverter_id = %(inverter)s
  AND p.point_key = ANY(%(keys)s)
ORDER BY p.point_key, p.outcome, COALESCE(op.finished_at, op.created_at) DESC, op.id DESC
"""


def known_values(inverter_id: int, keys: list[str]) -> dict[str, ValueCell]:
    """The Value cell of every key, from the inverter's operations, in one query: the newest
    value, and a running or failed operation newer than it."""
    cells = {key: ValueCell(key) for key in keys}
    if not keys:
        return cells
    sql = _KNOWN_VALUES_SQL.format(table=RemoteOperation._meta.db_table)
    params = {
        "inverter": inverter_id,
        "keys": list(keys),
        "read": OperationKind.READ.value,
        "succeeded": OperationState.SUCCEEDED.value,
        "pending": [state.value for state in PENDING_STATES],
    }
    newer: dict[str, dict[str, RemoteOperation]] = {key: {} for key in keys}
    for operation in RemoteOperation.objects.raw(sql, params):
        if operation.outcome != "value":
            newer[operation.point_key][operation.outcome] = operation
            continue
        cell = cells[operation.point_key]
        cell.text, cell.value = entry_text(cell.key, json.loads(operation.entry_json))
        cell.at = operation.finished_at or operation.created_at
        cell.source = operation
    for key, outcomes in newer.items():
        cell = cells[key]
        for outcome in ("pending", "failed"):
            operation = outcomes.get(outcome)
            if operation and (cell.source is None or operation.created_at > cell.source.created_at):
                cell.operation = operation
                if outcome == "failed":
                    cell.error = operation.error or operation.get_state_display()
                break
    return cells


def entry_text(key: str, entry: Any) -> tuple[str, Any]:
    """(text, raw value) of one stored register value, whatever its JSON shape."""
    items = value_items({"values": {key: entry}})
    text = items[0][2] if items else ""
    value = entry.get("value") if isinstance(entry, dict) else entry
    return text, value


def operation_cell(operation: RemoteOperation, key: str) -> ValueCell:
    """The Value cell while `operation` runs (with the value known before it), then with what
    it brought for `key`, or why it failed."""
    if operation.state == OperationState.SUCCEEDED:
        cell = ValueCell(key, operation=operation)
        data = operation.result if operation.kind == OperationKind.READ else operation.after
        values = data.get("values") if isinstance(data, dict) else None
        if isinstance(values, dict) and key in values:
            cell.text, cell.value = entry_text(key, values[key])
            cell.at = operation.finished_at or operation.created_at
            cell.source = operation
        else:
            cell.error = _("The gateway's answer holds no value for this register.")
        return cell
    cell = known_values(operation.inverter_id, [key])[key]
    cell.operation = operation
    cell.polls = operation.is_pending
    cell.error = "" if operation.is_pending else operation.error or operation.get_state_display()
    return cell


def selectable_inverters(request: HttpRequest) -> QuerySet:
    return Inverter.objects.visible_to(request.user).select_related("site", "gateway")


def host_page(request: HttpRequest) -> str:
    """The page that shows the panel: the one `return_to` names (only a path of this site),
    else Maintenance → Parameters."""
    path = request.GET.get(RETURN_PARAMETER, "")
    if (
        path.startswith("/")
        and not any(c in path for c in "?#\\")
        and url_has_allowed_host_and_scheme(path, allowed_hosts=None)
    ):
        return path
    return reverse("maintenance:parameters")


def parameters_url(request: HttpRequest, page: str | None = None) -> str:
    """The parameters page (or `page`, the page hosting the panel) with the search state of
    the current query string."""
    params = request.GET.copy()
    params.pop(RETURN_PARAMETER, None)
    query = params.urlencode()
    return (page or host_page(request)) + (f"?{query}" if query else "")


def panel_query(request: HttpRequest, page: str) -> str:
    """The query string the panel's Read and Write requests carry: the search state, and
    the hosting page unless it is Maintenance → Parameters."""
    params = request.GET.copy()
    params.pop(RETURN_PARAMETER, None)
    if page != reverse("maintenance:parameters"):
        params[RETURN_PARAMETER] = page
    return params.urlencode()


def table_context(
    request: HttpRequest, inverter: Inverter, page: str | None = None
) -> dict[str, Any]:
    """Everything the right-hand panel shows for one inverter; `page` hosts the panel (by
    default the one the request names, see `host_page`)."""
    page = page or host_page(request)
    context: dict[str, Any] = {
        "inverter": inverter,
        "connected": inverter.gateway_id is not None,
        "can_operate": can(request.user, "device.operate"),
        "table_url": parameters_url(request, page),
        "table_only": htmx_partial(request, TABLE_TARGET),
        "query": panel_query(request, page),
    }
    try:
        register_map = RegisterMap.for_model(inverter.model)
    except UnknownModelError:
        context["model_error"] = _("There is no register map for the model %(model)s.") % {
            "model": inverter.model
        }
        return context
    mode = search_mode(request.GET)
    form = ParameterSearchForm(request.GET, register_map=register_map, mode=mode)
    page = Paginator(form.points(), PARAMETERS_PER_PAGE).get_page(
        positive_int(request.GET.get("page"), 1)
    )
    cells = known_values(inverter.pk, [point.key for point in page])
    rows = [(point, cells[point.key]) for point in page]
    context.update(
        register_map=register_map,
        mode=mode,
        search_form=form,
        page_obj=page,
        rows=rows,
        read_group=form.selected_group,
        pending=any(cell.polls_with_table for _point, cell in rows),
    )
    return context


class ParameterPageView(ActionRequiredMixin, TemplateView):
    """Left: the inverters the user may see. Right: the selected inverter's registers.

    A page that mounts the panel elsewhere subclasses this view and overrides
    `selectable_inverters` and `parameters_page_url` (and its template includes the panel)."""

    action = "maintenance.view"
    template_name = PAGE_TEMPLATE
    _inverter: Inverter | None = None

    def get_object(self) -> Inverter | None:
        return self.selected_inverter()

    def selectable_inverters(self) -> QuerySet:
        """The inverters of the left panel; `?inverter=` picks one of them (else 404)."""
        return selectable_inverters(self.request)

    def parameters_page_url(self) -> str:
        """The page hosting the panel: its searches load it, its table polls it."""
        return reverse("maintenance:parameters")

    def selected_inverter(self) -> Inverter | None:
        value = self.request.GET.get("inverter", "")
        if not value:
            return None
        if self._inverter is None:
            pk = ascii_int(value)
            if pk is None:
                raise Http404
            self._inverter = get_object_or_404(self.selectable_inverters(), pk=pk)
        return self._inverter

    def get_template_names(self) -> list[str]:
        for target, partial in ((TABLE_TARGET, "table"), (INVERTER_TARGET, "inverters")):
            if htmx_partial(self.request, target):
                return [f"{PANEL_TEMPLATE}#{partial}"]
        return super().get_template_names()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        inverter = self.selected_inverter()
        page = self.parameters_page_url()
        context["inverter"] = inverter
        context["parameters_page_url"] = page
        if not htmx_partial(self.request, TABLE_TARGET):
            context.update(self.inverter_list())
        if inverter is not None and not htmx_partial(self.request, INVERTER_TARGET):
            context.update(table_context(self.request, inverter, page))
        return context

    def inverter_list(self) -> dict[str, Any]:
        inverters = self.selectable_inverters().order_by("serial_number")
        form = self.inverter_search_form()
        search = form.cleaned_data["iq"] if form.is_valid() else ""
        if not form.is_valid():
            inverters = inverters.none()
        elif search:
            inverters = inverters.filter(
                Q(serial_number__icontains=search)
                | Q(name__icontains=search)
                | Q(site__name__icontains=search)
            )
        page = Paginator(inverters, INVERTERS_PER_PAGE).get_page(
            positive_int(self.request.GET.get("ipage"), 1)
        )
        return {
            "inverter_page": page,
            "inverter_search": search,
            "inverter_search_error": " ".join(form.errors.get("iq", [])),
        }

    def inverter_search_form(self) -> InverterSearchForm:
        if not hasattr(self, "_inverter_search_form"):
            self._inverter_search_form = InverterSearchForm(self.request.GET)
        return self._inverter_search_form

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        if not self.inverter_search_form().is_valid():
            kwargs["status"] = 400  # e.g. a null byte: the page says why, the list is empty
        response = super().render_to_response(context, **kwargs)
        patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response


class InverterOperationMixin(ObjectMixin):
    """A Read or Write on an inverter in the user's scope (else 404), by a role that may
    operate devices (else 403)."""

    action = "device.operate"
    model = Inverter

    def get_object_queryset(self) -> QuerySet:
        return selectable_inverters(self.request)

    def register_map(self) -> RegisterMap:
        try:
            return RegisterMap.for_model(self.object.model)
        except UnknownModelError:
            raise Http404(
                _("There is no register map for the model %(model)s.")
                % {"model": self.object.model}
            ) from None

    def back_to_page(self) -> HttpResponse:
        """Without htmx: back to the page the request came from, with its search."""
        return HttpResponseRedirect(parameters_url(self.request))


class ParameterReadView(InverterOperationMixin, View):
    """Read: one point (`key`) or a whole group (`group`). The answer is the Value cell (or,
    for a group, the table) showing the queued operation; the worker does the reading."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        inverter = self.object
        form = ParameterReadForm(request.POST, register_map=self.register_map())
        if not form.is_valid():
            errors = " ".join(str(error) for error in form.non_field_errors()) or _("Bad request.")
            return HttpResponseBadRequest(errors, content_type="text/plain; charset=utf-8")
        key, group = form.cleaned_data["key"], form.cleaned_data["group"]
        try:
            operation = read_registers(
                inverter, [key] if key else None, group=group or None, acting_user=request.user
            )
        except OperationRefused as refused:
            if not request.htmx:
                messages.error(request, refused.message)
                return self.back_to_page()
            if group:
                return self.render_table(read_error=refused.message)
            cell = known_values(inverter.pk, [key])[key]
            cell.error = refused.message
            return render_cell(request, inverter, cell)
        if not request.htmx:
            messages.success(
                request,
                _("Read requested: %(summary)s. The value appears when the gateway answers.")
                % {"summary": operation.summary},
            )
            return self.back_to_page()
        if group:
            return self.render_table()
        return render_cell(request, inverter, operation_cell(operation, key))

    def render_table(self, **extra: Any) -> HttpResponse:
        context = table_context(self.request, self.object)
        context.update(extra)
        return TemplateResponse(self.request, f"{PANEL_TEMPLATE}#table", context)


class ParameterWriteView(HtmxPartialMixin, InverterOperationMixin, TemplateView):
    """Write: the dialog with one field built from the point; its submit is the confirmation.
    A refused value is shown under the field and nothing is recorded."""

    template_name = "maintenance/parameters/write.html"
    partial_name = "dialog"
    htmx_target = DIALOG_TARGET

    def writable_point(self) -> PointSpec:
        point = self.register_map().points.get(self.kwargs["key"])
        if point is None or not point.writable:
            raise Http404(_("This register cannot be written."))
        return point

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        point = self.writable_point()
        current = known_values(self.object.pk, [point.key])[point.key]
        initial = initial_value(point, current.value)
        form = ParameterWriteForm(point, initial={"value": initial} if initial is not None else {})
        return self.render_to_response(self.get_context_data(form=form, current=current))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        point = self.writable_point()
        form = ParameterWriteForm(point, data=request.POST)
        if form.is_valid():
            try:
                operation = write_registers(
                    self.object, {point.key: form.register_value()}, acting_user=request.user
                )
            except OperationRefused as refused:
                form.refuse(refused)
            else:
                return self.written(operation, point)
        current = known_values(self.object.pk, [point.key])[point.key]
        return self.render_to_response(self.get_context_data(form=form, current=current))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        point = kwargs["form"].point
        query = self.request.GET.urlencode()
        write_url = reverse("maintenance:parameter_write", args=[self.object.pk, point.key])
        return super().get_context_data(
            inverter=self.object,
            point=point,
            query=query,
            write_url=f"{write_url}?{query}" if query else write_url,
            parameters_url=parameters_url(self.request),
            **kwargs,
        )

    def written(self, operation: RemoteOperation, point: PointSpec) -> HttpResponse:
        if not self.request.htmx:
            messages.success(
                self.request,
                _(
                    "Write requested: %(summary)s. The row shows the value read back when the "
                    "gateway answers."
                )
                % {"summary": operation.summary},
            )
            return self.back_to_page()
        response = render_cell(self.request, self.object, operation_cell(operation, point.key))
        response = retarget(response, f"#value-{point.key}")
        response = reswap(response, "outerHTML")
        return trigger_client_event(response, WRITTEN_EVENT, {"key": point.key})


class ParameterValueView(ObjectMixin, TemplateView):
    """One Value cell for one operation: polled every second while the operation runs."""

    action = "maintenance.view"
    model = RemoteOperation
    template_name = VALUE_TEMPLATE

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().filter(inverter__isnull=False)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            cell=operation_cell(self.object, self.kwargs["key"]), **kwargs
        )


def render_cell(request: HttpRequest, inverter: Inverter, cell: ValueCell) -> HttpResponse:
    return render(request, VALUE_TEMPLATE, {"cell": cell, "inverter": inverter})
