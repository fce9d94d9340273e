"""Upgrade (guide §7): the firmware catalogue and the upgrade tasks."""

from django.urls import include, path
from django.views.generic import RedirectView

app_name = "upgrades"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="upgrades:releases"), name="index"),
    path("", include("upgrades.release_urls")),
    path("", include("upgrades.task_urls")),
]
