"""What every tab of a site page shares: the tabs in the guide's order (§6.2, figure 6-28),
the header with the site's name, status and key figures, and the base view.

Each tab is its own view and URL (ui.tabs); its template extends
`fleet/sites/detail_base.html` and fills `{% block panel %}` (the tab's content).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.permissions import can
from accounts.views.generic import Tab
from fleet.queries import STATUS_TONE, SiteStatus, online_rate, with_figures
from fleet.views.detail_tabs import DetailTabView
from sites.models import Site

#: Countries whose sites have the Commissioning tab (guide §6.2.7: North America only).
NORTH_AMERICA = frozenset({"US", "CA", "MX", "PR"})


def is_north_american(site: Site) -> bool:
    return str(site.country) in NORTH_AMERICA


SITE_TABS = (
    Tab("overview", gettext_lazy("Overview"), "sites:detail", "site.view", icon="house"),
    Tab("chart", gettext_lazy("Chart"), "sites:chart", "site.view", icon="graph-up"),
    Tab("energy", gettext_lazy("Energy"), "sites:energy", "site.view", icon="bar-chart"),
    Tab("alarm", gettext_lazy("Alarm"), "sites:alarm", "site.view", icon="bell"),
    Tab("settings", gettext_lazy("Settings"), "sites:settings", "device.operate", icon="sliders"),
    Tab(
        "commissioning",
        gettext_lazy("Commissioning"),
        "sites:commissioning",
        "site.manage",
        icon="file-earmark-check",
        applies=is_north_american,
    ),
)


def site_local_today(site: Site):
    """The current date where the site is (energy days are the site's local days)."""
    from zoneinfo import ZoneInfo

    try:
        return timezone.now().astimezone(ZoneInfo(site.time_zone)).date()
    except (KeyError, ValueError):
        return timezone.localdate()


def site_header_context(request, site: Site) -> dict[str, Any]:
    """The header of every site page: status, live power, today's yield, online rate."""
    figures: QuerySet = with_figures(Site.objects.filter(pk=site.pk), today=site_local_today(site))
    row = figures.values("status", "power_w", "day_kwh", "inverter_count", "answering_count")[0]
    status = SiteStatus(row["status"])

    class _Figures:
        inverter_count = row["inverter_count"]
        answering_count = row["answering_count"]

    return {
        "site_status": status,
        "site_status_tone": STATUS_TONE[status],
        "site_power_w": row["power_w"],
        "site_day_kwh": row["day_kwh"],
        "site_online_rate": online_rate(_Figures),
        "can_manage_site": can(request.user, "site.manage", site),
    }


class SiteTabView(DetailTabView):
    """A tab of a site page."""

    model = Site
    tabs = SITE_TABS
    context_object_name = "site"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("company")

    def header_context(self) -> dict[str, Any]:
        return site_header_context(self.request, self.object)
