"""The list block: a table of rows visible to the user, with filters and search in the query
string, sorting, pagination, the column chooser, downloads and an empty state that says why.

A page declares it in a few lines (see docs/architecture.md, "The list block"):

    class SiteListView(ObjectListView):          # from accounts.views.generic
        action = "site.view"
        model = Site
        table_class = SiteTable                  # a ui.tables.BaseTable
        filterset_class = SiteFilter             # optional (django-filter)
        search_fields = ("name", "address")      # optional: ?q= over these fields
        template_name = "sites/list.html"        # {% extends "ui/list.html" %}
        htmx_target = "site-table"

GET renders the page, or only `ui/_list_block.html` when htmx swaps `#htmx_target`;
`?export=csv|xlsx` downloads every row the filters, search and sort select (all pages); POST
saves the user's column choice and answers with the block again (or a redirect without htmx).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.paginator import EmptyPage, Page, Paginator
from django.db.models import Count, Q, QuerySet, Window
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.generic import TemplateView
from django_tables2 import RequestConfig

from ui import export
from ui.query import SearchForm, positive_int
from ui.tables import BaseTable, choose_columns, forget_columns, visible_columns
from ui.views import ActionRequiredMixin, HtmxPartialMixin, htmx_partial

MAX_PAGE_SIZE = 100
EXPORT_PARAMETER = "export"


class ColumnChoiceForm(forms.Form):
    """The chooser's POST: the optional columns to show, or `reset` to the table's defaults."""

    columns = forms.MultipleChoiceField(required=False)
    reset = forms.BooleanField(required=False)

    def __init__(self, *args: Any, table_class: type[BaseTable], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["columns"].choices = [(name, name) for name in table_class.optional_columns()]


def stable_order(queryset: QuerySet) -> QuerySet:
    """`queryset` with the primary key as the last sort key, so that rows with equal sort
    values keep their places from one page (or download chunk) to the next."""
    query = queryset.query
    ordering = list(query.order_by) or (
        list(queryset.model._meta.ordering) if query.default_ordering else []
    )
    names = {str(key).lstrip("-") for key in ordering if isinstance(key, str)}
    if names & {"pk", "id"}:
        return queryset
    return queryset.order_by(*ordering, "pk")


class ObjectListView(HtmxPartialMixin, ActionRequiredMixin, TemplateView):
    """A django-tables2 table of `model` rows visible to the user (see the module docstring).

    A search the form refuses (a null byte, too long) answers 400 with the page, its error and
    no rows; invalid filters show their errors and no rows; a download of either answers 400.
    A plain django-tables2 table (not a BaseTable) gets neither chooser nor downloads, and htmx
    swaps the page's own `{% partialdef table %}`.
    """

    model: type[Any]
    table_class: type[BaseTable]
    filterset_class: type | None = None
    search_fields: tuple[str, ...] = ()
    search_form_class: type[forms.Form] = SearchForm
    paginate_by: int | None = 25
    htmx_target = "object-table"
    # The element htmx swaps; set `partial_name` instead to render a partial of the page.
    partial_template_name = "ui/_list_block.html"
    export_formats: tuple[str, ...] = ("csv", "xlsx")
    # Set on a view that only downloads (its own URL), in this format.
    export_format: str | None = None
    export_chunk_size = export.CHUNK_SIZE
    export_filename = ""
    empty_icon = "inbox"
    empty_text = _("There is nothing here yet.")
    empty_search_text = _("Nothing matches “%(query)s”.")
    empty_filtered_text = _("Nothing matches these filters.")
    reset_label = _("Clear search and filters")
    create_action = ""
    create_label = ""
    create_url = ""
    # Small action buttons, for a list whose actions sit beside its search box.
    compact_actions = False

    _search_form: forms.Form | None = None
    _filterset: Any = None
    _can_create: bool | None = None

    # --- Requests -----------------------------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        fmt = self.requested_export()
        if fmt:
            return self.export(fmt)
        return super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The column chooser: remember the choice, then show the table with it."""
        if not self.shared_table():
            return HttpResponseNotAllowed(["GET", "HEAD"])
        form = ColumnChoiceForm(request.POST, table_class=self.table_class)
        if not form.is_valid():
            return HttpResponseBadRequest(
                gettext("Unknown column."), content_type="text/plain; charset=utf-8"
            )
        if form.cleaned_data["reset"]:
            forget_columns(request.user, self.table_class)
        else:
            choose_columns(request.user, self.table_class, form.cleaned_data["columns"])
        if htmx_partial(request, self.htmx_target):
            return super().get(request, *args, **kwargs)
        return HttpResponseRedirect(request.get_full_path())

    def partial_template_names(self, names: list[str]) -> list[str] | None:
        if not htmx_partial(self.request, self.htmx_target):
            return super().partial_template_names(names)
        if self.partial_name:
            return [f"{name}#{self.partial_name}" for name in names]
        if not self.shared_table():  # a plain django-tables2 table: the page's own partial
            return [f"{name}#table" for name in names]
        return [self.partial_template_name]

    def shared_table(self) -> bool:
        return issubclass(self.table_class, BaseTable)

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        if self.search_refused():
            kwargs["status"] = 400
        return super().render_to_response(context, **kwargs)

    # --- Rows -----------------------------------------------------------------------------------

    def get_queryset(self) -> QuerySet:
        return self.model._default_manager.visible_to(self.request.user)

    def get_search_form(self) -> forms.Form:
        if self._search_form is None:
            self._search_form = self.search_form_class(self.request.GET or None)
        return self._search_form

    def search_refused(self) -> bool:
        form = self.get_search_form()
        return form.is_bound and not form.is_valid()

    def search_query(self) -> str:
        form = self.get_search_form()
        if not form.is_bound or not form.is_valid():
            return ""
        return (form.cleaned_data.get("q") or "").strip()

    def search(self, queryset: QuerySet, query: str) -> QuerySet:
        condition = Q()
        for field in self.search_fields:
            condition |= Q(**{f"{field}__icontains": query})
        return queryset.filter(condition)

    def get_filterset(self) -> Any:
        """The FilterSet over the user's rows, or None for a list without filters."""
        if self.filterset_class is None:
            return None
        if self._filterset is None:
            self._filterset = self.filterset_class(
                self.request.GET or None, queryset=self.get_queryset(), request=self.request
            )
        return self._filterset

    def filters_refused(self) -> bool:
        filterset = self.get_filterset()
        return filterset is not None and filterset.is_bound and not filterset.is_valid()

    def is_filtered(self) -> bool:
        """Does the query string narrow the rows (a search or any filter)?"""
        filterset = self.get_filterset()
        names = filterset.form.fields if filterset is not None else ()
        return bool(self.search_query()) or any(self.request.GET.get(name) for name in names)

    def get_filtered_queryset(self) -> QuerySet:
        """Exactly the rows the query string selects, in no particular order."""
        filterset = self.get_filterset()
        queryset = filterset.queryset if filterset is not None else self.get_queryset()
        if self.search_refused() or self.filters_refused():
            return queryset.none()
        if filterset is not None:
            queryset = filterset.qs
        query = self.search_query()
        if query and self.search_fields:
            queryset = self.search(queryset, query)
        return queryset

    def get_table(self, paginate: bool = True) -> BaseTable:
        """The table of the selected rows, sorted by `?sort=`, with the user's columns."""
        if self.shared_table():
            table = self.table_class(
                self.get_filtered_queryset(),
                htmx_target=self.htmx_target,
                columns=visible_columns(self.request.user, self.table_class),
            )
        else:
            table = self.table_class(self.get_filtered_queryset())
        RequestConfig(self.request, paginate=False).configure(table)  # sorting
        if isinstance(table.data.data, QuerySet):
            table.data.data = stable_order(table.data.data)
        if paginate and self.paginate_by:
            self.paginate(table)
        return table

    def paginate(self, table: BaseTable) -> None:
        params = self.request.GET
        per_page = positive_int(
            params.get(table.prefixed_per_page_field), self.paginate_by, MAX_PAGE_SIZE
        )
        page = positive_int(params.get(table.prefixed_page_field), 1)
        try:
            table.paginate(page=page, per_page=per_page)
        except EmptyPage:  # past the end, e.g. after a search: show the last page
            table.paginate(page=table.paginator.num_pages, per_page=per_page)

    # --- Downloads ------------------------------------------------------------------------------

    def requested_export(self) -> str:
        if not self.shared_table():
            return ""
        return self.export_format or self.request.GET.get(EXPORT_PARAMETER, "")

    def export(self, fmt: str) -> HttpResponse:
        """The selected rows of every page as a streamed CSV or XLSX file."""
        if fmt not in self.export_formats or fmt not in export.FORMATS:
            return _bad_request(gettext("Unknown download format."))
        if self.search_refused() or self.filters_refused():
            return _bad_request(
                gettext("Invalid filter: %(errors)s") % {"errors": self.refusal_text()}
            )
        table = self.get_table(paginate=False)
        table.request = self.request
        rows = table.data.data

        def produce() -> Any:
            return export.table_rows(table, rows, self.export_chunk_size)

        return export.download_response(
            produce, fmt, self.get_export_filename(), title=self.get_export_title()
        )

    def refusal_text(self) -> str:
        errors = []
        for form in (self.get_search_form(), getattr(self.get_filterset(), "form", None)):
            if form is not None and form.is_bound:
                errors += [str(error) for field in form.errors.values() for error in field]
        return "; ".join(errors)

    def get_export_title(self) -> str:
        return str(self.model._meta.verbose_name_plural).capitalize()

    def get_export_filename(self) -> str:
        name = self.export_filename or slugify(str(self.model._meta.verbose_name_plural))
        return f"{name}-{timezone.localdate():%Y%m%d}"

    def export_links(self) -> list[dict[str, str]]:
        """Download links: the current query string (filters, search, sort), every page."""
        links = []
        for fmt in self.export_formats:
            params = self.request.GET.copy()
            for name in ("page", "per_page"):
                params.pop(name, None)
            params[EXPORT_PARAMETER] = fmt
            links.append(
                {
                    "format": fmt,
                    "label": export.FORMATS[fmt][1],
                    "url": f"{self.request.path}?{params.urlencode()}",
                }
            )
        return links

    # --- Page -----------------------------------------------------------------------------------

    def get_create_url(self) -> str:
        return self.create_url

    def can_create(self) -> bool:
        if not self.create_action:
            return False
        if self._can_create is None:
            self._can_create = self.permits(self.request.user, self.create_action, self.object)
        return self._can_create

    def get_empty_state(self) -> dict[str, Any]:
        """Why the list is empty, and the next step: clear the filters, or create a row."""
        query = self.search_query()
        if self.is_filtered():
            filters = self.get_filterset()
            only_search = not any(
                self.request.GET.get(name) for name in (filters.form.fields if filters else ())
            )
            text = self.empty_search_text if query and only_search else self.empty_filtered_text
            return {
                "icon": "search",
                "text": str(text) % {"query": query} if "%(query)s" in str(text) else text,
                "action_url": self.request.path,
                "action_label": self.reset_label,
                "primary": False,
            }
        creatable = self.can_create()
        return {
            "icon": self.empty_icon,
            "text": self.empty_text,
            "action_url": self.get_create_url() if creatable else "",
            "action_label": self.create_label,
            "primary": True,
        }

    def get_poll_interval(self, table: BaseTable) -> str:
        """e.g. "2s" while some row is still changing: the block then refreshes itself."""
        return ""

    def is_poll(self) -> bool:
        """Is this the block fetching itself again (htmx names the polling element)?"""
        htmx = getattr(self.request, "htmx", None)
        return bool(htmx) and htmx.trigger == self.htmx_target

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        table = kwargs.pop("table", None) or self.get_table()
        filterset = self.get_filterset()
        shared = self.shared_table()
        visible = set(table.visible_columns) if shared else set()
        kwargs.setdefault("table", table)
        kwargs.setdefault("query", self.search_query())
        kwargs.setdefault("search_form", self.get_search_form())
        kwargs.setdefault("filter_form", filterset.form if filterset is not None else None)
        kwargs.setdefault("filtered", self.is_filtered())
        kwargs.setdefault("htmx_target", self.htmx_target)
        kwargs.setdefault("list_url", self.request.path)
        kwargs.setdefault("sort", self.request.GET.get(table.prefixed_order_by_field, ""))
        kwargs.setdefault(
            "export_links", self.export_links() if shared and not self.export_format else []
        )
        kwargs.setdefault(
            "column_options",
            [
                {"option": option, "checked": option.name in visible}
                for option in self.table_class.column_options()
            ]
            if shared and self.table_class.optional_columns()
            else [],
        )
        kwargs.setdefault("searchable", bool(self.search_fields))
        kwargs.setdefault("compact_actions", self.compact_actions)
        kwargs.setdefault("empty", self.get_empty_state())
        kwargs.setdefault("poll_interval", self.get_poll_interval(table))
        # A poll asks the same query, so the actions stay: swapping them out of band every
        # second would close an open column chooser or Download menu under the user's pointer.
        kwargs.setdefault(
            "is_partial", htmx_partial(self.request, self.htmx_target) and not self.is_poll()
        )
        if self.create_action:
            creatable = self.can_create()
            kwargs.setdefault("can_create", creatable)
            kwargs.setdefault("create_url", self.get_create_url() if creatable else "")
            kwargs.setdefault("create_label", self.create_label)
        return super().get_context_data(**kwargs)


def _bad_request(text: str) -> HttpResponse:
    return HttpResponseBadRequest(text, content_type="text/plain; charset=utf-8")


# --- One page in two queries (lists whose rows carry costly annotations) ---------------------


def page_ids(ordered: QuerySet, number: int, per_page: int) -> tuple[list[int], int | None]:
    """The ids of page `number` of `ordered` and how many rows it has in all (None when the
    page is past the end)."""
    start = (number - 1) * per_page
    rows = list(
        ordered.annotate(_total=Window(Count("*"))).values_list("pk", "_total")[
            start : start + per_page
        ]
    )
    return [pk for pk, _total in rows], (rows[0][1] if rows else None)


class CountedPaginator(Paginator):
    """A paginator for rows that already are one page, with the total counted beforehand."""

    def __init__(self, object_list: Any, per_page: int, *, count: int, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self._count = count

    @property
    def count(self) -> int:
        return self._count

    def page(self, number: Any) -> Page:
        return self._get_page(self.object_list, self.validate_number(number), self)


class PageByIdsMixin:
    """For an `ObjectListView` whose rows carry costly annotations: one page in two queries —
    the page's ids and the total (a window count) with only what the filters and the sort
    need, then the rows of those ids alone (`page_rows`) — so page 300 of 10,000 rows costs
    what page 1 does."""

    def page_rows(self, ids: list[int], ordered: QuerySet) -> QuerySet:
        """The rows of `ids`, in the order of `ordered`, with everything the table shows."""
        raise NotImplementedError

    def paginate(self, table: BaseTable) -> None:
        params = self.request.GET
        per_page = positive_int(
            params.get(table.prefixed_per_page_field), self.paginate_by, MAX_PAGE_SIZE
        )
        number = positive_int(params.get(table.prefixed_page_field), 1)
        ordered: QuerySet = table.data.data
        ids, total = page_ids(ordered, number, per_page)
        if not ids and number > 1:  # past the end, e.g. after a filter: the last page
            total = ordered.order_by().count()
            number = max(1, -(-total // per_page))
            ids, total = page_ids(ordered, number, per_page)
        table.data.data = self.page_rows(ids, ordered)
        table.paginate(
            paginator_class=CountedPaginator, per_page=per_page, page=number, count=total or 0
        )
