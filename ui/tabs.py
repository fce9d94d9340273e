"""Detail pages with tabs: each tab has its own URL and view, and an htmx partial.

    COMPANY_TABS = (
        Tab("info", _("Company information"), "accounts:company_detail", "company.view",
            icon="info-circle"),
        Tab("users", _("User management"), "accounts:company_users", "user.view", icon="people"),
    )

    class CompanyUsersView(TabMixin, ObjectListView):
        tabs = COMPANY_TABS
        tab = "users"          # the view's action is the tab's: a refused tab answers 403

The page template includes `ui/_tabs.html` (the tab bar: only the tabs the user may use) and
defines the tab's panel as a partial:

    {% partialdef tab inline %}
    {% if tab_switched %}{% include "ui/_tabs.html" with oob=True %}{% endif %}
    <div id="{{ tab_target }}"{% include "ui/_tab_poll.html" %}> … the tab's content … </div>
    {% endpartialdef %}

A click on a tab swaps only the panel (the tab bar follows out of band) and pushes the tab's
URL; a tab with `poll` (e.g. "10s") re-fetches only its own panel, without the tab bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import Http404, HttpRequest
from django.urls import reverse

from ui.views import HtmxPartialMixin, htmx_partial

TAB_TARGET = "tab-panel"


@dataclass(frozen=True)
class Tab:
    """One tab of a detail page, in the guide's order."""

    name: str
    label: str
    url_name: str
    action: str
    icon: str = ""
    poll: str = ""
    # For tabs that only some objects have (e.g. Commissioning for North-American sites): the
    # tab is hidden for the others and its URL answers 404 for them.
    applies: Callable[[Any], bool] | None = None

    def applies_to(self, obj: Any) -> bool:
        return self.applies is None or obj is None or bool(self.applies(obj))


class TabMixin(HtmxPartialMixin):
    """A view that shows one tab (`tab`) of the tabs in `tabs`, checked like any view.

    Mix it in before the generic view (it needs `permits` and `self.object`).
    """

    tabs: tuple[Tab, ...] = ()
    tab: str = ""
    tab_target = TAB_TARGET
    #: htmx targets inside the panel that get only a part of the tab (element id → partial of
    #: the tab's template), e.g. a chart's figure without its controls.
    partials: dict[str, str] = {}

    def current_tab(self) -> Tab:
        for tab in self.tabs:
            if tab.name == self.tab:
                return tab
        raise LookupError(f"{type(self).__name__}: no tab named {self.tab!r}")

    def get_action(self) -> str:
        """The tab's action, unless the view names its own: a tab the role may not use is
        hidden from the tab bar and its URL answers 403."""
        if not self.action:
            self.action = self.current_tab().action
        return super().get_action()

    def tab_url(self, tab: Tab) -> str:
        """The tab's URL; tabs of an object take its primary key."""
        obj = getattr(self, "object", None)
        return reverse(tab.url_name, args=[obj.pk] if obj is not None else [])

    def visible_tabs(self) -> list[dict[str, Any]]:
        """The tabs the user may use (the others are not shown), with their URLs."""
        user = self.request.user
        obj = getattr(self, "object", None)
        return [
            {"tab": tab, "url": self.tab_url(tab), "active": tab.name == self.tab}
            for tab in self.tabs
            if tab.applies_to(obj) and self.permits(user, tab.action, obj)
        ]

    def get_object(self) -> Any:
        obj = super().get_object()
        if not self.current_tab().applies_to(obj):
            raise Http404("this tab does not apply to this object")
        return obj

    def tab_partial(self) -> bool:
        return htmx_partial(self.request, self.tab_target)

    def partial_template_names(self, names: list[str]) -> list[str] | None:
        for target, partial in self.partials.items():
            if htmx_partial(self.request, target):
                return [f"{name}#{partial}" for name in names]
        if self.tab_partial():
            return [f"{name}#tab" for name in names]
        return super().partial_template_names(names)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        current = self.current_tab()
        kwargs.setdefault("tabs", self.visible_tabs())
        kwargs.setdefault("tab", current)
        kwargs.setdefault("tab_url", self.tab_url(current))
        kwargs.setdefault("tab_target", self.tab_target)
        # The tab bar comes along (out of band) when a click switched tabs, not on a poll.
        kwargs.setdefault(
            "tab_switched", self.tab_partial() and not _polled(self.request, self.tab_target)
        )
        return super().get_context_data(**kwargs)


def _polled(request: HttpRequest, target: str) -> bool:
    """Did the panel itself trigger the request (its polling), rather than a tab link?"""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and htmx.trigger == target
