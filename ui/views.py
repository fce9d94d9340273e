"""Generic views that the portal's pages subclass in a few declarative lines (NetBox's way).

Every view checks, in this order:

1. signed in, else → the login page;
2. the object (if any) is fetched through `Model.objects.visible_to(user)`, else 404 — a
   foreign object is never acknowledged, whatever the user's role;
3. `check_permission(user, action, obj)`: the role may do `action`, and the object rules hold
   (e.g. "not your own role"), else 403.

The permission rules belong to the apps: `permits` (a yes/no question, e.g. whether to offer a
button) and `check_permission` (raises PermissionDenied) are hooks that an app binds to its own
rules in a thin subclass (accounts/views/generic.py). Unbound, every action is refused.

`action` guards safe methods; `post_action` (when set) guards POST. Writes go through service
functions; ValidationError raised by a service lands on the form, PermissionDenied becomes 403,
`ui.errors.RateLimited` becomes 429 with Retry-After. Views render only a template partial
(django-template-partials, "page.html#name") when htmx asks to swap the element whose id is
`htmx_target`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils.cache import patch_vary_headers
from django.views.generic import FormView, TemplateView

from ui.errors import RateLimited

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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

    def permits(self, user: Any, action: str, obj: models.Model | None = None) -> bool:
        """May `user` do `action` (on `obj`)? Bound by the app that owns the roles."""
        raise ImproperlyConfigured(
            f"{type(self).__name__} needs `permits` bound to the portal's permission rules"
        )

    def check_permission(self, user: Any, action: str, obj: models.Model | None = None) -> None:
        """Raise PermissionDenied unless `permits(user, action, obj)`."""
        if not self.permits(user, action, obj):
            raise PermissionDenied

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
        self.check_permission(request.user, action, self.object)
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
    """Render `template#partial_name` when htmx swaps `#htmx_target`, the whole page else.

    Subclasses with more than one swappable element extend `partial_template_names`.
    """

    partial_name: str = ""
    htmx_target: str = ""

    def partial_template_names(self, names: list[str]) -> list[str] | None:
        """The templates of the fragment htmx asked for, or None for the whole page."""
        if self.partial_name and htmx_partial(self.request, self.htmx_target):
            return [f"{name}#{self.partial_name}" for name in names]
        return None

    def get_template_names(self) -> list[str]:
        names = super().get_template_names()
        return self.partial_template_names(names) or names

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response


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
        except RateLimited as limited:
            form.add_error(None, limited.message)
            return too_many_requests(self.form_invalid(form), limited)
        message = self.get_success_message()
        if message:
            messages.success(self.request, message)
        return HttpResponseRedirect(self.get_success_url())


class ObjectFormView(ObjectMixin, ServiceFormView):
    """ServiceFormView on one object fetched within the user's scope."""


class ObjectConfirmView(HtmxPartialMixin, ObjectMixin, TemplateView):
    """ "Are you sure?" on GET (a page, or a Bootstrap modal body for htmx), the action on POST.

    The page template defines `{% partialdef dialog %}` with the modal's content (usually
    `{% include "ui/_confirm.html" %}`); a portal page opens it with `hx-get` into
    `#action-dialog` inside the modal of `ui/_dialog.html`.
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
        except RateLimited as limited:
            context = self.get_context_data(error=limited.message)
            return too_many_requests(self.render_to_response(context), limited)
        if message:
            messages.success(request, message)
        return HttpResponseRedirect(url)


def too_many_requests(response: HttpResponse, limited: RateLimited) -> HttpResponse:
    """`response` (the page with the reason) as a 429 that says when to try again."""
    response.status_code = 429
    response["Retry-After"] = str(limited.retry_after)
    return response
