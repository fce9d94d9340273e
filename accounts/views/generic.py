"""The portal's generic views: those of `ui` bound to the roles of `accounts.permissions`.

Every app imports its base views from here. The views themselves (checks in the order
sign-in → scope (404) → role (403), htmx partials, service forms, confirmations, the list
block, tabs) live in `ui`; this module only tells them who may do what.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from accounts.permissions import can, require
from ui import lists, tabs, views
from ui.lists import MAX_PAGE_SIZE
from ui.tabs import Tab
from ui.views import HtmxPartialMixin, htmx_partial, too_many_requests

__all__ = [
    "MAX_PAGE_SIZE",
    "ActionRequiredMixin",
    "HtmxPartialMixin",
    "ObjectConfirmView",
    "ObjectFormView",
    "ObjectListView",
    "ObjectMixin",
    "ServiceFormView",
    "Tab",
    "TabMixin",
    "htmx_partial",
    "too_many_requests",
]


class PortalPermissions:
    """`permits` and `check_permission` of the ui views, answered by accounts.permissions."""

    def permits(self, user: Any, action: str, obj: models.Model | None = None) -> bool:
        return can(user, action, obj)

    def check_permission(self, user: Any, action: str, obj: models.Model | None = None) -> None:
        require(user, action, obj)


class ActionRequiredMixin(PortalPermissions, views.ActionRequiredMixin):
    pass


class ObjectMixin(PortalPermissions, views.ObjectMixin):
    pass


class ServiceFormView(PortalPermissions, views.ServiceFormView):
    pass


class ObjectFormView(PortalPermissions, views.ObjectFormView):
    pass


class ObjectConfirmView(PortalPermissions, views.ObjectConfirmView):
    pass


class ObjectListView(PortalPermissions, lists.ObjectListView):
    pass


class TabMixin(PortalPermissions, tabs.TabMixin):
    pass
