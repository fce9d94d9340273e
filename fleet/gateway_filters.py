"""Filters of the gateway list (guide §6.3.1.1): model, status, firmware version and SN.

Every filter is a query-string parameter, so a filtered list can be bookmarked, and the
dashboard's counts link to `/gateway/?status=faulty` and the like.

Status is the guide's online / offline / faulty, derived from what the portal knows:
online — the gateway is connected and every device on its bus answers without a fault;
faulty — the gateway is connected but a device on its bus reports a fault or does not answer;
offline — the gateway is not connected (or has never connected: status "unknown").
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Case, CharField, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils.translation import gettext_lazy as _

from gateways.models import Gateway, GatewayModel, GatewayStatus
from inverters.models import Inverter, InverterStatus
from ui.filters import ContainsFilter, search_input
from ui.forms import StyledFormMixin


class GatewayListStatus:
    """The guide's three gateway states (see the module docstring)."""

    ONLINE, OFFLINE, FAULTY = "online", "offline", "faulty"
    choices = [(ONLINE, _("Online")), (OFFLINE, _("Offline")), (FAULTY, _("Faulty"))]
    labels = dict(choices)
    tones = {ONLINE: "success", OFFLINE: "secondary", FAULTY: "danger"}


#: The guide's model names (4G, WiFi, ETH) for the kits.
MODEL_CHOICES = [
    (GatewayModel.G4, "4G"),
    (GatewayModel.WIFI, "WiFi"),
    (GatewayModel.ETH, "ETH"),
]
MODEL_LABELS = dict(MODEL_CHOICES)


def with_list_status(gateways: QuerySet) -> QuerySet:
    """`gateways` annotated with `list_status` (online / offline / faulty)."""
    troubled = Inverter.objects.filter(
        gateway=OuterRef("pk"), status__in=(InverterStatus.FAULT, InverterStatus.OFFLINE)
    )
    return gateways.annotate(
        list_status=Case(
            When(~Q(status=GatewayStatus.ONLINE), then=Value(GatewayListStatus.OFFLINE)),
            When(Exists(troubled), then=Value(GatewayListStatus.FAULTY)),
            default=Value(GatewayListStatus.ONLINE),
            output_field=CharField(),
        )
    )


class GatewayFilterForm(StyledFormMixin, forms.Form):
    pass


class GatewayFilter(django_filters.FilterSet):
    model = django_filters.ChoiceFilter(
        label=_("Model"), choices=MODEL_CHOICES, empty_label=_("All models")
    )
    status = django_filters.ChoiceFilter(
        label=_("Status"),
        choices=GatewayListStatus.choices,
        empty_label=_("All status"),
        field_name="list_status",
    )
    version = ContainsFilter(
        label=_("Version"),
        field_name="firmware_version",
        max_length=32,
        widget=search_input(_("Firmware version")),
    )
    sn = ContainsFilter(
        label=_("Gateway SN"),
        field_name="serial_number",
        max_length=32,
        widget=search_input(_("Search by gateway SN")),
    )

    class Meta:
        model = Gateway
        fields = ("model", "status", "version", "sn")
        form = GatewayFilterForm
