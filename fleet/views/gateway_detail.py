"""A gateway's page (guide §6.3.2): the header with Upgrade, the tabs (Overview, Settings),
the Overview tab (basic information and the device list with Delete) and the Upgrade dialog
(a one-device upgrade task).

Each tab is its own view and URL (ui.tabs), like the site pages (fleet/views/site_base.py);
its template extends `fleet/gateways/detail_base.html` and fills `{% block panel %}`. The
gateway comes through `Gateway.objects.visible_to(user)` (404 otherwise); the Settings tab is
for who may operate devices, so owners see the Overview only.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.permissions import can
from accounts.tables import local_time
from accounts.views.generic import ObjectConfirmView, Tab
from fleet import gateway_services
from fleet.gateway_filters import MODEL_LABELS, GatewayListStatus, with_list_status
from fleet.gateway_tables import GatewayDeviceTable, gateway_devices, interval_text
from fleet.views.detail_tabs import DetailTabView
from fleet.views.upgrade_dialog import DeviceUpgradeDialog
from gateways.models import Gateway
from inverters.models import Inverter
from upgrades.models import DeviceKind

GATEWAY_TABS = (
    Tab("overview", gettext_lazy("Overview"), "gateways:detail", "device.view", icon="info-circle"),
    Tab(
        "settings",
        gettext_lazy("Settings"),
        "gateways:settings",
        "device.operate",
        icon="sliders",
    ),
)


def gateway_header_context(request: HttpRequest, gateway: Gateway) -> dict[str, Any]:
    """The header of every gateway page: status (online / offline / faulty), model, firmware,
    site, last seen; Upgrade for who may manage upgrades."""
    status = (
        with_list_status(Gateway.objects.filter(pk=gateway.pk))
        .values_list("list_status", flat=True)
        .first()
    ) or GatewayListStatus.OFFLINE
    return {
        "gateway_status": GatewayListStatus.labels[status],
        "gateway_status_tone": GatewayListStatus.tones[status],
        "gateway_model": MODEL_LABELS.get(gateway.model, gateway.model),
        "can_upgrade_gateway": can(request.user, "upgrade.manage", gateway),
    }


class GatewayTabView(DetailTabView):
    """A tab of a gateway page."""

    model = Gateway
    tabs = GATEWAY_TABS
    context_object_name = "gateway"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "company")

    def header_context(self) -> dict[str, Any]:
        return gateway_header_context(self.request, self.object)


class GatewayOverviewView(GatewayTabView):
    """Overview (§6.3.2.1): basic information and the devices on the gateway's bus."""

    tab = "overview"
    template_name = "fleet/gateways/overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        gateway = self.object
        can_manage = can(self.request.user, "device.manage", gateway)
        table = GatewayDeviceTable(
            gateway_devices(gateway, self.request.user), gateway=gateway, can_manage=can_manage
        )
        return super().get_context_data(
            device_table=table,
            upload_interval=interval_text(gateway.upload_interval_s),
            last_seen=local_time(gateway.last_seen_at),
            created=local_time(gateway.created_at),
            **kwargs,
        )


class GatewayDeviceDeleteView(ObjectConfirmView):
    """Delete a device of the gateway's device list: a confirmation naming it."""

    model = Gateway
    action = "device.manage"
    template_name = "fleet/gateways/device_delete.html"
    device: Inverter

    def get_object(self) -> Gateway:
        gateway = super().get_object()
        devices = Inverter.objects.visible_to(self.request.user).filter(gateway=gateway)
        self.device = get_object_or_404(devices, pk=self.kwargs["device_pk"])
        return gateway

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(gateway=self.object, device=self.device, **kwargs)

    def get_success_message(self) -> str:
        return _("Device %(sn)s has been deleted from gateway %(gateway)s.") % {
            "sn": self.device.serial_number,
            "gateway": self.object.serial_number,
        }

    def get_success_url(self) -> str:
        return reverse("gateways:detail", args=[self.object.pk])

    def perform(self, obj: Gateway) -> None:
        gateway_services.delete_gateway_device(obj, self.device, acting_user=self.request.user)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError as error:
            context = self.get_context_data(error=" ".join(error.messages))
            return self.render_to_response(context)


class GatewayUpgradeView(DeviceUpgradeDialog):
    """Upgrade (§6.3.2.3): Firmware (the releases for the gateway's model), Reservation and
    Time; Confirm creates a one-device upgrade task and opens it."""

    model = Gateway
    kind = DeviceKind.GATEWAY
    template_name = "fleet/gateways/upgrade.html"

    def dialog_context(self) -> dict[str, Any]:
        return {
            "gateway": self.object,
            "next_url": reverse("gateways:detail", args=[self.object.pk]),
        }


urlpatterns = [
    path("<int:pk>/", GatewayOverviewView.as_view(), name="detail"),
    path(
        "<int:pk>/devices/<int:device_pk>/delete/",
        GatewayDeviceDeleteView.as_view(),
        name="device_delete",
    ),
    path("<int:pk>/upgrade/", GatewayUpgradeView.as_view(), name="upgrade"),
]
