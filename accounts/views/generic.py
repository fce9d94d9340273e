"""Generic views that the portal's pages subclass in a few declarative lines (NetBox's way).

Every view checks, in this order:

1. signed in, else → the login page;
2. the object (if any) is fetched through `Model.objects.visible_to(user)`, else 404 — a
   foreign object is never acknowledged, whatever the user's role;
3. `can(user, action, obj)`: the role may do `action`, and the object rules hold (e.g. "not
   your own role"), else 403.

`action` guards safe methods; `post_action` (when set) guards POST. Writes go through service
functions; ValidationError raised by a service lands on the form, PermissionDenied becomes 403,
MailRateLimited (too many emails, accounts/throttle.py) becomes 429 with Retry-After.
List and confirmation views render only a template partial (django-template-partials,
"page.html#name") when htmx asks to swap the element whose id is `htmx_target`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.paginator import EmptyPage
from django.db import models
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils.cache import patch_vary_headers
from django.views.generic import FormView, TemplateView
from django_tables2 import RequestConfig

from accounts.permissions import require
from accounts.query import SearchForm, positive_int
from accounts.throttle import MailRateLimited

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PAGE_SIZE = 100


def htmx_partial(request: HttpRequest, target: str) -> bool:
    """Does htmx ask to swap only the element with id `target`?

    Checking the target (not only `request.htmx`) keeps a boosted page navigation, or a
    history restore, from receiving a fragment.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target


class ActionRequiredMixin(LoginRequiredMixin):
    """The checks above; subclasses that work on one object define `get_object`."""

    action: str = ""
    post_action: str | None = None
    object: models.Model | None = None

    def get_action(self) -> str:
        if self.request.method not in SAFE_METHODS and self.post_action:
            return self.post_action
        if not self.action:
            raise ImproperlyConfigured(f"{type(self).__name__} needs an `action`")
        return self.action

    def get_object(self) -> models.Model | None:
        return None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        action = self.get_action()
        self.object = self.get_object()
        require(request.user, action, self.object)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("object", self.object)
        return super().get_context_data(**kwargs)


class ObjectMixin(ActionRequiredMixin):
    """`self.object` is the `model` row with the URL's `pk`, within the user's scope."""

    model: type[models.Model]
    pk_url_kwarg = "pk"

    def get_object_queryset(self) -> models.QuerySet:
        return self.model._default_manager.visible_to(self.request.user)

    def get_object(self) -> models.Model:
        return get_object_or_404(self.get_object_queryset(), pk=self.kwargs[self.pk_url_kwarg])


class HtmxPartialMixin:
    """Render `template#partial_name` when htmx swaps `#htmx_target`, the whole page else."""

    partial_name: str = ""
    htmx_target: str = ""

    def get_template_names(self) -> list[str]:
        names = super().get_template_names()
        if self.partial_name and htmx_partial(self.request, self.htmx_target):
            return [f"{name}#{self.partial_name}" for name in names]
        return names

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response


class ObjectListView(HtmxPartialMixin, ActionRequiredMixin, TemplateView):
    """A django-tables2 table of `model` rows visible to the user, searchable with `?q=`.

    The page template defines `{% partialdef table %}` wrapping `<div id="{htmx_target}">`;
    search, sorting and pagination swap only that element. A search the form refuses (a null
    byte, too long) answers 400 with the page, its error and no rows.
    """

    model: type[models.Model]
    table_class: type
    search_fields: tuple[str, ...] = ()
    search_form_class: type[forms.Form] = SearchForm
    paginate_by = 25
    partial_name = "table"
    htmx_target = "object-table"
    _search_form: forms.Form | None = None

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

    def get_queryset(self) -> models.QuerySet:
        return self.model._default_manager.visible_to(self.request.user)

    def search(self, queryset: models.QuerySet, query: str) -> models.QuerySet:
        condition = Q()
        for field in self.search_fields:
            condition |= Q(**{f"{field}__icontains": query})
        return queryset.filter(condition)

    def get_table(self) -> Any:
        queryset = self.get_queryset()
        query = self.search_query()
        if self.search_refused():
            queryset = queryset.none()
        elif query and self.search_fields:
            queryset = self.search(queryset, query)
        table = self.table_class(queryset)
        RequestConfig(self.request, paginate=False).configure(table)  # sorting
        per_page = positive_int(
            self.request.GET.get(table.prefixed_per_page_field), self.paginate_by, MAX_PAGE_SIZE
        )
        page = positive_int(self.request.GET.get(table.prefixed_page_field), 1)
        try:
            table.paginate(page=page, per_page=per_page)
        except EmptyPage:  # past the end, e.g. after a search: show the last page
            table.paginate(page=table.paginator.num_pages, per_page=per_page)
        return table

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("table", self.get_table())
        kwargs.setdefault("query", self.search_query())
        kwargs.setdefault("search_form", self.get_search_form())
        kwargs.setdefault("htmx_target", self.htmx_target)
        return super().get_context_data(**kwargs)

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        if self.search_refused():
            kwargs["status"] = 400
        return super().render_to_response(context, **kwargs)


class ServiceFormView(ActionRequiredMixin, FormView):
    """A form whose valid data goes to one service call (`save`), then a message and redirect.

    `save(form)` returns what was created or changed; it is kept as `self.result` for
    `get_success_url` and `get_success_message`.
    """

    success_message: str = ""
    result: Any = None

    def save(self, form) -> Any:
        raise NotImplementedError

    def get_success_message(self) -> str:
        return self.success_message % {"object": self.result} if self.success_message else ""

    def form_valid(self, form) -> HttpResponse:
        try:
            self.result = self.save(form)
        except ValidationError as error:
            form.add_error(None, error)
            return self.form_invalid(form)
        except MailRateLimited as limited:
            form.add_error(None, limited.message)
            return too_many_emails(self.form_invalid(form), limited)
        message = self.get_success_message()
        if message:
            messages.success(self.request, message)
        return HttpResponseRedirect(self.get_success_url())


class ObjectFormView(ObjectMixin, ServiceFormView):
    """ServiceFormView on one object fetched within the user's scope."""


class ObjectConfirmView(HtmxPartialMixin, ObjectMixin, TemplateView):
    """ "Are you sure?" on GET (a page, or a Bootstrap modal body for htmx), the action on POST.

    The page template defines `{% partialdef dialog %}` with the modal's content; a portal page
    opens it with `hx-get` into `#action-dialog` inside `.modal` `#action-modal`.
    """

    partial_name = "dialog"
    htmx_target = "action-dialog"
    success_message: str = ""

    def perform(self, obj: models.Model) -> None:
        raise NotImplementedError

    def get_success_url(self) -> str:
        raise NotImplementedError

    def get_success_message(self) -> str:
        return self.success_message % {"object": self.object} if self.success_message else ""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        message = self.get_success_message()  # before perform: the object may be gone after
        url = self.get_success_url()
        try:
            self.perform(self.object)
        except MailRateLimited as limited:
            context = self.get_context_data(error=limited.message)
            return too_many_emails(self.render_to_response(context), limited)
        if message:
            messages.success(request, message)
        return HttpResponseRedirect(url)


def too_many_emails(response: HttpResponse, limited: MailRateLimited) -> HttpResponse:
    """`response` (the page with the reason) as a 429 that says when to try again."""
    response.status_code = 429
    response["Retry-After"] = str(limited.wait_seconds)
    return response
