"""Home, the site, gateway and inverter pages (guide §4, §6.1–6.4); each module owns its
routes."""

from django.urls import include, path

from fleet.views import (
    commissioning,
    gateway_detail,
    gateway_list,
    gateway_settings,
    home,
    inverter_autotest,
    inverter_details,
    inverter_list,
    inverter_modes,
    inverter_operations,
    inverter_settings,
    inverter_upgrade,
    site_alarms,
    site_charts,
    site_list,
    site_overview,
    site_settings,
)

site_patterns = (
    site_list.urlpatterns
    + site_overview.urlpatterns
    + site_charts.urlpatterns
    + site_alarms.urlpatterns
    + site_settings.urlpatterns
    + commissioning.urlpatterns
)

gateway_patterns = (
    gateway_list.urlpatterns + gateway_detail.urlpatterns + gateway_settings.urlpatterns
)

inverter_patterns = (
    inverter_list.urlpatterns
    + inverter_details.urlpatterns
    + inverter_settings.urlpatterns
    + inverter_autotest.urlpatterns
    + inverter_modes.urlpatterns
    + inverter_upgrade.urlpatterns
    + inverter_operations.urlpatterns
)

urlpatterns = [
    path("", home.home, name="home"),
    path("home/", include((home.urlpatterns, "home"))),
    path("site/", include((site_patterns, "sites"))),
    path("gateway/", include((gateway_patterns, "gateways"))),
    path("inverter/", include((inverter_patterns, "inverters"))),
]
