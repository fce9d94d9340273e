"""Upgrade (guide §7): the firmware catalogue and the upgrade tasks."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import include, path

from accounts.permissions import can

app_name = "upgrades"


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """The menu's Upgrade: the catalogue for those who may read it, else the task list (staff
    of owner companies manage their tasks but get no firmware files)."""
    if can(request.user, "firmware.view"):
        return redirect("upgrades:releases")
    if can(request.user, "upgrade.manage"):
        return redirect("upgrades:tasks")
    raise PermissionDenied


urlpatterns = [
    path("", index, name="index"),
    path("", include("upgrades.release_urls")),
    path("", include("upgrades.task_urls")),
]
