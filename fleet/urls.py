"""Home and the site pages (guide §4, §6.1–6.2); each module owns its routes."""

from django.urls import include, path

from fleet.views import (
    commissioning,
    home,
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

urlpatterns = [
    path("", home.home, name="home"),
    path("home/", include((home.urlpatterns, "home"))),
    path("site/", include((site_patterns, "sites"))),
]
