"""What every action dialog of a list or detail page shares (ui/_dialog.html): whether a request
asks for the dialog's content, how it is rendered, and where the page goes afterwards."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django_htmx.http import HttpResponseClientRedirect


def is_dialog_request(request: HttpRequest) -> bool:
    """A request for a dialog's content (htmx, not a boosted page or a history restore);
    without JavaScript the same URL is a page of its own."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def dialog_done(request: HttpRequest, url: str) -> HttpResponse:
    """After a dialog's action: the whole page goes to `url` (htmx) or is redirected."""
    if is_dialog_request(request):
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def render_dialog(request: HttpRequest, template_name: str, context: dict) -> HttpResponse:
    """The dialog's `dialog` partial for htmx, the whole page without JavaScript."""
    in_modal = is_dialog_request(request)
    template = f"{template_name}#dialog" if in_modal else template_name
    return render(request, template, {"in_modal": in_modal, **context})


def back_to(request: HttpRequest, root: str) -> str:
    """Where a dialog returns: the page it was opened from (`next`, else the page htmx was on)
    when that page lies under `root` (a list with its filters, or an object's page), else
    `root` — never another site."""
    back = request.POST.get("next") or request.GET.get("next") or ""
    htmx = getattr(request, "htmx", None)
    if not back and htmx and htmx.current_url:
        current = urlsplit(htmx.current_url)
        back = f"{current.path}?{current.query}" if current.query else current.path
    if back.startswith(root) and "//" not in back:
        return back
    return root


__all__ = ["back_to", "dialog_done", "is_dialog_request", "render_dialog"]
