"""What every tab of an inverter page shares (guide §6.4.2, figure 6-47): the tabs in the
guide's order, the header with the inverter's name, status, site and live power, and the base
view.

Each tab is its own view and URL (ui.tabs) in its own module; its template extends
`fleet/inverters/detail_base.html` and fills `{% block panel %}`. The inverter comes through
`Inverter.objects.visible_to(user)` (404 otherwise) and each tab's action is checked (403):
owners see the read-only tabs, the tabs that operate the device are for staff.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy

from accounts.permissions import can
from accounts.views.generic import Tab
from fleet.queries import INVERTER_TONE
from fleet.views.detail_tabs import DetailTabView
from inverters.models import Inverter, InverterStatus

#: Countries whose inverters have the AutoTest tab (guide §6.4.2.7: Italy only).
AUTOTEST_COUNTRIES = frozenset({"IT"})


def has_autotest(inverter: Inverter) -> bool:
    """AutoTest (CEI 0-21) is for inverters of Italian sites."""
    return inverter.site_id is not None and str(inverter.site.country) in AUTOTEST_COUNTRIES


INVERTER_TABS = (
    Tab("details", gettext_lazy("Details"), "inverters:detail", "device.view", icon="info-circle"),
    Tab("chart", gettext_lazy("Chart"), "inverters:chart", "device.view", icon="graph-up"),
    Tab("energy", gettext_lazy("Energy"), "inverters:energy", "device.view", icon="bar-chart"),
    Tab("alarm", gettext_lazy("Alarm"), "inverters:alarm", "device.view", icon="bell"),
    Tab("data", gettext_lazy("Data"), "inverters:data", "device.view", icon="table"),
    Tab(
        "settings", gettext_lazy("Settings"), "inverters:settings", "device.operate", icon="sliders"
    ),
    Tab(
        "autotest",
        gettext_lazy("AutoTest"),
        "inverters:autotest",
        "device.operate",
        icon="clipboard-check",
        applies=has_autotest,
    ),
    Tab("mode", gettext_lazy("Mode"), "inverters:mode", "device.view", icon="toggles"),
    Tab("load", gettext_lazy("Intelligent Load"), "inverters:load", "device.view", icon="plug"),
    Tab(
        "upgrade",
        gettext_lazy("Upgrade"),
        "inverters:upgrade",
        "device.view",
        icon="cloud-arrow-up",
    ),
    Tab(
        "operations",
        gettext_lazy("Operations"),
        "inverters:operations",
        "device.operate",
        icon="journal-text",
    ),
)


def inverter_header_context(request, inverter: Inverter) -> dict[str, Any]:
    """The header of every inverter page: status, model, serial, site, gateway, power now."""
    try:
        latest = inverter.latest
    except Inverter.latest.RelatedObjectDoesNotExist:
        latest = None
    status = InverterStatus(inverter.status)
    return {
        "inverter_status": status,
        "inverter_status_tone": INVERTER_TONE[status],
        "inverter_latest": latest,
        "inverter_power_w": latest.pv_power if latest else None,
        "can_manage_inverter": can(request.user, "device.manage", inverter),
        "can_operate_inverter": can(request.user, "device.operate", inverter),
    }


class InverterTabView(DetailTabView):
    """A tab of an inverter page."""

    model = Inverter
    tabs = INVERTER_TABS
    context_object_name = "inverter"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "gateway", "company")

    def header_context(self) -> dict[str, Any]:
        return inverter_header_context(self.request, self.object)
