"""Site → Overview (guide §6.2, §6.2.1, §6.2.2): the site's information and picture, its
live values, the gateway and inverter lists, the map and the weather forecast; Edit, Add
gateway, Unbind and Delete inverter.

The live part (values and device lists, `#site-live`) refreshes itself every minute; the rest of
the panel stays, so an open dialog, the map and the forecast are not reloaded with it. The map
and the forecast come from outside providers (fleet/geo.py) and are loaded after the page
(`hx-trigger="load"`), so a slow provider never delays it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from statistics import mean
from typing import Any

from babel.numbers import format_currency
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_lazy, ngettext, pgettext
from django.views import View
from django.views.generic import TemplateView
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import User
from accounts.permissions import can
from accounts.tables import local_time
from accounts.views.generic import (
    HtmxPartialMixin,
    ObjectConfirmView,
    ObjectFormView,
    ObjectMixin,
    htmx_partial,
)
from fleet import geo, services
from fleet.device_tables import (
    SiteGatewayTable,
    SiteInverterTable,
    latest_of,
    site_gateways,
    site_inverters,
)
from fleet.overview_forms import GatewayAddForm, SiteEditForm
from fleet.queries import ANSWERING
from fleet.views.site_base import SiteTabView, site_local_today
from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site
from ui import units

LIVE_TARGET = "site-live"
DIALOG_TARGET = "action-dialog"
EDIT_TARGET = "site-edit-dialog"
LIVE_POLL = "60s"
DEVICE_LISTS = ("gateways", "inverters")


# --- What the panel shows -------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveFigures:
    """The site's inverters right now (guide §6.2: power, today's yield, battery SOC)."""

    power_w: float | None
    day_kwh: float | None
    soc: float | None
    inverter_count: int
    answering_count: int
    updated_at: dt.datetime | None

    @property
    def updated_text(self) -> str:
        return local_time(self.updated_at)


def live_figures(inverters: list[Inverter]) -> LiveFigures:
    latest = [row for row in (latest_of(inverter) for inverter in inverters) if row is not None]
    powers = [row.pv_power for row in latest if row.pv_power is not None]
    yields = [inverter.day_kwh for inverter in inverters if inverter.day_kwh is not None]
    socs = [row.batt_soc for row in latest if row.batt_soc is not None]
    return LiveFigures(
        power_w=sum(powers) if powers else None,
        day_kwh=sum(yields) if yields else None,
        soc=mean(socs) if socs else None,
        inverter_count=len(inverters),
        answering_count=sum(1 for inverter in inverters if inverter.status in ANSWERING),
        updated_at=max((row.ts for row in latest), default=None),
    )


def coordinates_text(latitude: Decimal, longitude: Decimal) -> str:
    """45.46° N, 9.19° E — in the reader's number format."""
    north = pgettext("compass", "N") if latitude >= 0 else pgettext("compass", "S")
    east = pgettext("compass", "E") if longitude >= 0 else pgettext("compass", "W")
    return f"{units.number(abs(latitude), 6)}° {north}, {units.number(abs(longitude), 6)}° {east}"


def time_zone_text(name: str) -> str:
    """Europe/Rome (UTC+01:00): the zone and its offset now."""
    try:
        offset = timezone.now().astimezone(zoneinfo.ZoneInfo(name)).strftime("%z")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return name
    return f"{name} (UTC{offset[:3]}:{offset[3:]})"


def tariff_text(amount: Decimal, currency: str) -> str:
    """€0.085/kWh: a tariff keeps its decimals (up to four), which money amounts round away."""
    locale = (translation.get_language() or "en").replace("-", "_")
    text = format_currency(amount.normalize(), currency, locale=locale, decimal_quantization=False)
    return f"{text}/kWh"


def basic_information(request: HttpRequest, site: Site) -> dict[str, Any]:
    owners = (
        services.site_owners(site)
        .filter(pk__in=User.objects.visible_to(request.user).values("pk"))
        .order_by("username")
    )
    return {
        "owners": list(owners.values_list("username", flat=True)),
        "coordinates": coordinates_text(site.latitude, site.longitude),
        "time_zone_text": time_zone_text(site.time_zone),
        "tariff": tariff_text(site.tariff_per_kwh, site.currency),
        "created": local_time(site.created_at),
        "can_view_company": can(request.user, "company.view", site.company),
    }


def live_context(request: HttpRequest, site: Site, device_list: str) -> dict[str, Any]:
    user = request.user
    can_manage = can(user, "site.manage", site)
    inverters = list(site_inverters(site, user, site_local_today(site)))
    gateways = list(site_gateways(site, user))
    return {
        "live": live_figures(inverters),
        "device_list": device_list,
        "gateway_count": len(gateways),
        "gateway_table": SiteGatewayTable(gateways, site=site, can_manage=can_manage),
        "inverter_table": SiteInverterTable(
            inverters,
            site=site,
            can_manage=can_manage and can(user, "device.manage"),
        ),
        "can_manage": can_manage,
        "live_target": LIVE_TARGET,
        "live_poll": LIVE_POLL,
    }


class OverviewTabView(SiteTabView):
    """The Overview tab; `?devices=inverters` opens the inverter list instead of the
    gateways'. htmx may ask for the live part alone (`#site-live`)."""

    tab = "overview"
    template_name = "fleet/sites/overview.html"

    def live_only(self) -> bool:
        return not self.tab_partial() and htmx_partial(self.request, LIVE_TARGET)

    def partial_template_names(self, names: list[str]) -> list[str] | None:
        if self.live_only():
            return [f"{name}#live" for name in names]
        return super().partial_template_names(names)

    def device_list(self) -> str:
        chosen = self.request.GET.get("devices", "")
        return chosen if chosen in DEVICE_LISTS else DEVICE_LISTS[0]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        site = self.object
        context.update(live_context(self.request, site, self.device_list()))
        if not self.live_only():
            context.update(basic_information(self.request, site))
            context.update(
                geocoding_enabled=geo.is_enabled("GEOCODING_URL"),
                weather_enabled=geo.is_enabled("WEATHER_URL"),
                map_enabled=geo.is_enabled("MAP_TILE_URL"),
                edit_target=EDIT_TARGET,
            )
        return context


# --- Outside providers: map, weather, geocoding ---------------------------------------------------


class SiteFragmentView(ObjectMixin, TemplateView):
    """A piece of the Overview that htmx loads after the page."""

    model = Site
    action = "site.view"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(site=self.object, **kwargs)


class WeatherView(SiteFragmentView):
    """The 7-day forecast at the site's coordinates, in its temperature unit."""

    template_name = "fleet/sites/_weather.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        site = self.object
        forecast = geo.forecast(site.latitude, site.longitude, site.time_zone)
        return super().get_context_data(
            forecast=forecast, attribution=settings.WEATHER_ATTRIBUTION, **kwargs
        )


class MapCardView(SiteFragmentView):
    """The satellite view around the site, or why it is missing."""

    template_name = "fleet/sites/_map.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        site = self.object
        return super().get_context_data(
            site_map=geo.site_map(site.latitude, site.longitude),
            coordinates=coordinates_text(site.latitude, site.longitude),
            attribution=settings.MAP_ATTRIBUTION,
            **kwargs,
        )


class MapImageView(ObjectMixin, View):
    """The map picture itself (PNG), composed and cached by fleet/geo.py."""

    model = Site
    action = "site.view"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        site_map = geo.site_map(self.object.latitude, self.object.longitude)
        if site_map.status == geo.Status.DISABLED:
            raise Http404("the map is turned off")
        if not site_map.available:
            return HttpResponse(status=503, headers={"Retry-After": "300"})
        response = HttpResponse(site_map.png, content_type="image/png")
        # The URL carries the picture's version, so a browser may keep it; only the browser,
        # because the answer depends on who asks.
        response["Cache-Control"] = "private, max-age=86400"
        response["X-Content-Type-Options"] = "nosniff"
        return response


class GeocodeView(ObjectMixin, TemplateView):
    """ "Locate address" in the edit dialog: the coordinate fields again, filled with what the
    address search found (or as they were, with the reason)."""

    model = Site
    action = "site.manage"
    template_name = "fleet/sites/_coordinates.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        query = self.request.GET
        address = query.get("address", "")[:255]
        result = geo.geocode(address, query.get("country", "")[:2])
        if result.found:
            initial = {"latitude": result.latitude, "longitude": result.longitude}
        else:
            initial = {name: query.get(name, "")[:32] for name in ("latitude", "longitude")}
        form = SiteEditForm(site=self.object, initial=initial)
        return super().get_context_data(form=form, result=result, site=self.object, **kwargs)


# --- Edit, add gateway ------------------------------------------------------------------------


def client_redirect(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A dialog posted by htmx reloads the page it sits on instead of swapping the page into
    the dialog."""
    if request.htmx and isinstance(response, HttpResponseRedirect):
        return HttpResponseClientRedirect(response.url)
    return response


class SiteDialogFormView(HtmxPartialMixin, ObjectFormView):
    """A form about the site in the page's dialog (or on its own page without JavaScript)."""

    model = Site
    action = "site.manage"
    partial_name = "dialog"
    htmx_target = DIALOG_TARGET

    def form_valid(self, form: Any) -> HttpResponse:
        return client_redirect(self.request, super().form_valid(form))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(site=self.object, **kwargs)


class SiteEditView(SiteDialogFormView):
    """Edit the site's information and picture (guide §6.2.1)."""

    form_class = SiteEditForm
    template_name = "fleet/sites/_dialog_edit.html"
    htmx_target = EDIT_TARGET
    success_message = gettext_lazy("Site “%(object)s” has been saved.")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "site": self.object}

    def save(self, form: SiteEditForm) -> Site:
        return services.update_site(self.object, acting_user=self.request.user, **form.changes())

    def get_success_url(self) -> str:
        return self.object.get_absolute_url()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(geocoding_enabled=geo.is_enabled("GEOCODING_URL"), **kwargs)


class GatewayAddView(SiteDialogFormView):
    """Add a gateway by its SN (guide §6.2.2.1): it and its inverters join the site."""

    form_class = GatewayAddForm
    template_name = "fleet/sites/_dialog_gateway_add.html"

    def save(self, form: GatewayAddForm) -> Gateway:
        try:
            return services.bind_gateway(
                self.object, form.cleaned_data["serial_number"], acting_user=self.request.user
            )
        except ValidationError as error:
            # Every refusal (unknown, foreign, already bound) belongs under the SN field.
            raise ValidationError({"serial_number": error.messages}) from error

    def get_success_message(self) -> str:
        count = self.result.inverters.count()
        return ngettext(
            "Gateway %(sn)s has been added with %(count)d inverter.",
            "Gateway %(sn)s has been added with %(count)d inverters.",
            count,
        ) % {"sn": self.result.serial_number, "count": count}

    def get_success_url(self) -> str:
        return f"{self.object.get_absolute_url()}?devices=gateways"


# --- Unbind a gateway, delete an inverter ---------------------------------------------------------


class SiteDeviceConfirmView(ObjectConfirmView):
    """ "Are you sure?" about one device of the site: both must be visible (404), and the
    device must be on this site."""

    device_model: type[Gateway] | type[Inverter]
    device_list = ""
    site: Site

    def get_object(self) -> Gateway | Inverter:
        user = self.request.user
        self.site = get_object_or_404(Site.objects.visible_to(user), pk=self.kwargs["pk"])
        devices = self.device_model.objects.visible_to(user).filter(site=self.site)
        return get_object_or_404(devices, pk=self.kwargs["device_pk"])

    def get_success_url(self) -> str:
        return f"{self.site.get_absolute_url()}?devices={self.device_list}"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(site=self.site, device=self.object, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError as error:
            context = self.get_context_data(error=" ".join(error.messages))
            return self.render_to_response(context)


class GatewayUnbindView(SiteDeviceConfirmView):
    """Unbind a gateway (guide §6.2.2.2): it and its inverters leave the site."""

    model = device_model = Gateway
    action = "site.manage"
    device_list = "gateways"
    template_name = "fleet/sites/_dialog_gateway_unbind.html"

    def check_permission(self, user: Any, action: str, obj: Any = None) -> None:
        super().check_permission(user, action, self.site)

    def get_success_message(self) -> str:
        return gettext("Gateway %(sn)s has been unbound from the site.") % {
            "sn": self.object.serial_number
        }

    def perform(self, obj: Gateway) -> None:
        services.unbind_gateway(self.site, obj, acting_user=self.request.user)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        count = Inverter.objects.filter(gateway=self.object, site=self.site).count()
        return super().get_context_data(inverter_count=count, **kwargs)


class InverterDeleteView(SiteDeviceConfirmView):
    """Delete an inverter (guide §6.2.2.3): it leaves its gateway and the site's lists."""

    model = device_model = Inverter
    action = "device.manage"
    device_list = "inverters"
    template_name = "fleet/sites/_dialog_inverter_delete.html"

    def get_success_message(self) -> str:
        return gettext("Inverter %(sn)s has been deleted.") % {"sn": self.object.serial_number}

    def perform(self, obj: Inverter) -> None:
        services.delete_inverter(self.site, obj, acting_user=self.request.user)


urlpatterns = [
    path("<int:pk>/", OverviewTabView.as_view(), name="detail"),
    path("<int:pk>/edit/", SiteEditView.as_view(), name="edit"),
    path("<int:pk>/locate/", GeocodeView.as_view(), name="geocode"),
    path("<int:pk>/weather/", WeatherView.as_view(), name="weather"),
    path("<int:pk>/map/", MapCardView.as_view(), name="map_card"),
    path("<int:pk>/map.png", MapImageView.as_view(), name="map"),
    path("<int:pk>/gateways/add/", GatewayAddView.as_view(), name="gateway_add"),
    path(
        "<int:pk>/gateways/<int:device_pk>/unbind/",
        GatewayUnbindView.as_view(),
        name="gateway_unbind",
    ),
    path(
        "<int:pk>/inverters/<int:device_pk>/delete/",
        InverterDeleteView.as_view(),
        name="inverter_delete",
    ),
]
