"""Inverter → Settings (guide §6.4.2.6): the Parameters panel of Maintenance (maintenance/
parameter_views.py) with the inverter fixed to this one. Quick Search and Group Search over its
register map (group, `[0X0700/1792]` address, name, value with unit, description), Read, and
Write for holding registers within the range shown; administrators and O&M engineers only (the
tab's action, `device.operate`).

The view is `ParameterPageView` with the selectable inverters narrowed to this one and the tab
as the page hosting the panel (as a site's Settings tab mounts it); Read, Write and the live
Value cells are Maintenance's own endpoints.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import path, reverse

from fleet.views.inverter_base import InverterTabView
from inverters.models import Inverter
from maintenance.parameter_views import ParameterPageView
from ui.tabs import TabMixin


class SettingsTabView(InverterTabView, ParameterPageView):
    tab = "settings"
    action = ""  # the tab's: device.operate
    template_name = "fleet/inverters/settings.html"

    def get_object(self) -> Inverter:
        # The page's object is the inverter of the URL; the panel shows that one only.
        return TabMixin.get_object(self)

    def selectable_inverters(self) -> QuerySet:
        return (
            Inverter.objects.visible_to(self.request.user)
            .filter(pk=self.object.pk)
            .select_related("site", "gateway")
        )

    def selected_inverter(self) -> Inverter:
        return self.object

    def parameters_page_url(self) -> str:
        return reverse("inverters:settings", args=[self.object.pk])

    def inverter_list(self) -> dict[str, Any]:
        return {}  # no inverter list: the page is this inverter's

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(fixed_inverter=True, **kwargs)


urlpatterns = [
    path("<int:pk>/settings/", SettingsTabView.as_view(), name="settings"),
]
