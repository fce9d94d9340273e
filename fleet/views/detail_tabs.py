"""What the tabbed pages of a site, a gateway and an inverter share.

Each tab is its own view and URL (ui.tabs). Its template extends the object's
`detail_base.html` and fills `{% block panel %}`; when htmx asks for the panel alone (a tab
switch, a poll), the same template renders on `PANEL_LAYOUT`, which outputs only the content
block (a partial of the base template could not render a child's `panel` block). The full page
also gets the object's header (`header_context`).
"""

from __future__ import annotations

from typing import Any

from django.views.generic import TemplateView

from accounts.views.generic import ObjectMixin, TabMixin

PANEL_LAYOUT = "fleet/sites/panel_layout.html"


class DetailTabView(TabMixin, ObjectMixin, TemplateView):
    """A tab of an object's page; the object comes through `visible_to(user)` (404 otherwise)
    and the tab's action is checked (403). Subclasses name `model`, `tabs`,
    `context_object_name` and `header_context`."""

    context_object_name = "object"

    def header_context(self) -> dict[str, Any]:
        """What the page's header shows (not needed for the panel alone)."""
        return {}

    def partial_template_names(self, names: list[str]) -> list[str] | None:
        if self.tab_partial():
            return names
        return super().partial_template_names(names)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = {self.context_object_name: self.object, "object": self.object}
        if self.tab_partial():
            context.update(detail_layout=PANEL_LAYOUT, panel_only=True)
        else:
            context.update(self.header_context())
        return super().get_context_data(**context, **kwargs)


__all__ = ["PANEL_LAYOUT", "DetailTabView"]
