"""Site → Settings (guide §6.2.6): the Parameters panel of Maintenance (maintenance/
parameter_views.py) for the inverters of one site. Pick an inverter on the left, find its
registers by Quick or Group Search, Read and Write them through the remote-operations engine;
administrators and O&M engineers only (the tab's action, `device.operate`).

The view is `ParameterPageView` with the inverter list narrowed to the site and the tab as the
page hosting the panel; Read, Write and the live Value cells are Maintenance's own endpoints.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import path, reverse

from fleet.views.site_base import SiteTabView
from inverters.models import Inverter
from maintenance.parameter_views import ParameterPageView
from sites.models import Site
from ui.tabs import TabMixin


class SettingsTabView(SiteTabView, ParameterPageView):
    tab = "settings"
    action = ""  # the tab's: device.operate
    template_name = "fleet/sites/settings.html"

    def selectable_inverters(self) -> QuerySet:
        return (
            Inverter.objects.visible_to(self.request.user)
            .filter(site=self.object)
            .select_related("site", "gateway")
        )

    def parameters_page_url(self) -> str:
        return reverse("sites:settings", args=[self.object.pk])

    def get_object(self) -> Site:
        # The page's object is the site (the tabs and the checks need it); the inverter the
        # panel shows is ParameterPageView.selected_inverter().
        return TabMixin.get_object(self)

    def site_has_inverters(self) -> bool:
        return self.selectable_inverters().exists()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # `site_has_inverters` is asked by the whole tab only, not by the table's refreshes.
        return super().get_context_data(
            one_site=True, site_has_inverters=self.site_has_inverters, **kwargs
        )


urlpatterns = [
    path("<int:pk>/settings/", SettingsTabView.as_view(), name="settings"),
]
