"""Health check and the menu entries whose pages come with later features."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext_lazy as _

from accounts.permissions import can


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for the load balancer and docker-compose: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_required
def maintenance(request: HttpRequest) -> HttpResponse:
    """The menu's Maintenance: staff land on the operations log; owners have no maintenance
    pages yet."""
    if can(request.user, "maintenance.view"):
        return redirect("maintenance:operations")
    return render(request, "placeholder.html", {"section_title": _("Maintenance")})


placeholder_patterns = [path("maintenance/", maintenance, name="maintenance")]
