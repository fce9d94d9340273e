"""An inverter's read-only tabs (guide §6.4.2.1–§6.4.2.5) and Power On/Off.

- Details: status, the inversion information from the newest values (fleet.inverter_data),
  the active fault codes, and for staff Power On/Off with a confirmation, sent through the
  remote-operations engine (maintenance.remote.set_power); the operation's state shows on the
  tab and polls itself until it succeeded, failed or expired.
- Chart: the site Chart's machinery (fleet.views.site_charts.measurement_chart, ui.charts,
  static/js/charts.js) for one inverter: simplified (a category of §6.4.2.2) or detailed (any
  measurement points), a day or a week, an averaging interval and a refresh interval.
- Energy: the site Energy tab's bars, totals and downloads (fleet.energy) for one inverter.
- Alarm: the shared alarm list (alarms.lists) narrowed to the inverter.
- Data: every decoded point of the stored samples in a time range, paginated, with CSV and
  XLSX downloads streamed from a server-side cursor.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.generic import TemplateView

from accounts.permissions import can
from accounts.tables import local_time
from accounts.views.generic import HtmxPartialMixin, ObjectListView, ObjectMixin
from alarms.lists import AlarmListMixin, valid_zone_name
from alarms.models import Alarm
from fleet import energy
from fleet.device_tables import latest_of
from fleet.energy import Period
from fleet.inverter_data import (
    POINT_CATEGORIES,
    SampleReader,
    category_points,
    data_points,
    download_rows,
    inverter_zone,
    latest_sections,
    local_today,
    point_label,
    register_map,
    sample_rows,
    samples,
    temperature_unit,
)
from fleet.views.inverter_base import InverterTabView
from fleet.views.site_charts import (
    MAX_CHART_POINTS,
    ChartForm,
    EnergyForm,
    SiteInverter,
    energy_chart,
    energy_context,
    energy_download,
    measurement_chart,
)
from inverters.models import Inverter
from maintenance.models import OperationKind, RemoteOperation
from maintenance.remote import OperationRefused, set_power
from ui import export
from ui.charts import chart_error
from ui.lists import EXPORT_PARAMETER, MAX_PAGE_SIZE
from ui.query import positive_int


def as_chart_inverter(inverter: Inverter) -> SiteInverter:
    """The inverter as the chart and energy forms know it."""
    interval = inverter.gateway.upload_interval_s if inverter.gateway_id else None
    return SiteInverter(
        inverter.pk, inverter.serial_number, inverter.name, inverter.model, interval
    )


class InverterDataView(ObjectMixin, View):
    """A JSON endpoint of an inverter page: the inverter within scope (404), device.view."""

    model = Inverter
    action = "device.view"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "gateway")


# ---------------------------------------------------------------------------------------------
# Details (§6.4.2.1) and Power On/Off


class DetailsTabView(InverterTabView):
    tab = "details"
    template_name = "fleet/inverters/details.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        inverter: Inverter = self.object
        latest = latest_of(inverter)
        can_operate = can(self.request.user, "device.operate", inverter)
        context.update(
            latest=latest,
            latest_time=local_time(latest.ts) if latest else "",
            sections=latest_sections(inverter, latest, temperature_unit(inverter)),
            has_register_map=register_map(inverter.model) is not None,
            can_operate=can_operate,
            power_operation=(
                RemoteOperation.objects.filter(inverter=inverter, kind=OperationKind.POWER)
                .order_by("-created_at", "-pk")
                .first()
                if can_operate
                else None
            ),
        )
        return context


class PowerForm(forms.Form):
    on = forms.TypedChoiceField(
        choices=(("1", _("Power on")), ("0", _("Power off"))), coerce=lambda v: v == "1"
    )


class InverterPowerView(HtmxPartialMixin, ObjectMixin, TemplateView):
    """Power On/Off (§6.4.2.1): a confirmation naming the inverter, then one operation
    through the engine; the Details tab shows its state until it ends."""

    model = Inverter
    action = "device.operate"
    template_name = "fleet/inverters/power.html"
    partial_name = "dialog"
    htmx_target = "action-dialog"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "gateway")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = PowerForm(request.GET)
        if not form.is_valid():
            return HttpResponseBadRequest(gettext("Choose Power on or Power off."))
        return self.render_to_response(self.get_context_data(on=form.cleaned_data["on"]))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = PowerForm(request.POST)
        if not form.is_valid():
            return HttpResponseBadRequest(gettext("Choose Power on or Power off."))
        on = form.cleaned_data["on"]
        try:
            set_power(self.object, on, acting_user=request.user)
        except OperationRefused as refused:
            context = self.get_context_data(on=on, error=" ".join(refused.messages))
            return self.render_to_response(context, status=400)
        messages.success(
            request,
            (
                gettext("Power on has been sent to %(sn)s.")
                if on
                else gettext("Power off has been sent to %(sn)s.")
            )
            % {"sn": self.object.serial_number},
        )
        return HttpResponseRedirect(reverse("inverters:detail", args=[self.object.pk]))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(inverter=self.object, **kwargs)


# ---------------------------------------------------------------------------------------------
# Chart (§6.4.2.2)

STYLES = (("simplified", _("Simplified")), ("detailed", _("Detailed")))
DIMENSIONS = (("day", _("Day")), ("week", _("Week")))
DIMENSION_DAYS = {"day": 1, "week": 7}
#: Averaging intervals (seconds); "" draws every stored sample (downsampled past 2,000).
INTERVALS = (
    ("", _("Every sample")),
    ("300", _("5 minutes")),
    ("900", _("15 minutes")),
    ("3600", _("1 hour")),
)
#: How often the figure fetches its data again (seconds); "" never.
REFRESHES = (
    ("", _("Off")),
    ("30", _("30 seconds")),
    ("60", _("1 minute")),
    ("300", _("5 minutes")),
)


class InverterChartForm(ChartForm):
    """The site chart's form, for one inverter, with an averaging interval."""

    interval = forms.TypedChoiceField(
        label=_("Time interval"), choices=INTERVALS, coerce=int, empty_value=None, required=False
    )


class ChartSettingsForm(forms.Form):
    """What the Chart tab's controls hold; anything unknown falls back to the default."""

    style = forms.ChoiceField(choices=STYLES, required=False)
    category = forms.ChoiceField(
        choices=[(k, label) for k, label, _keys in POINT_CATEGORIES], required=False
    )
    dimension = forms.ChoiceField(choices=DIMENSIONS, required=False)
    day = forms.DateField(required=False)
    interval = forms.ChoiceField(choices=INTERVALS, required=False)
    refresh = forms.ChoiceField(choices=REFRESHES, required=False)

    def setting(self, name: str, default: Any) -> Any:
        """The field's clean value, or `default` when it is missing or refused."""
        if name in self.errors:
            return default
        value = self.cleaned_data.get(name) if hasattr(self, "cleaned_data") else None
        return value or default


class ChartTabView(InverterTabView):
    tab = "chart"
    template_name = "fleet/inverters/chart.html"
    #: htmx targets that get only a part of the tab: the controls with the figure, or the figure.
    partials = {"inverter-chart": "chart-block", "chart-figure": "chart-figure"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        inverter: Inverter = self.object
        params = self.request.GET
        settings = ChartSettingsForm(params)
        settings.is_valid()
        zone = inverter_zone(inverter, self.request.user)
        style = settings.setting("style", "simplified")
        category = settings.setting("category", POINT_CATEGORIES[0][0])
        dimension = settings.setting("dimension", "day")
        day = settings.setting("day", local_today(zone))
        last = day + dt.timedelta(days=DIMENSION_DAYS[dimension] - 1)
        points = energy.measurement_points(inverter.model)
        known = {p.key for p in points}
        if style == "detailed":
            chosen = [key for key in params.getlist("points") if key in known]
            if "chart" not in params and not chosen:
                chosen = category_points(inverter.model, category, MAX_CHART_POINTS)
        else:
            chosen = category_points(inverter.model, category, MAX_CHART_POINTS)
        groups: dict[str, list] = {}
        for point in points:
            groups.setdefault(point.group, []).append(point)
        step = DIMENSION_DAYS[dimension]

        def shifted(days: int) -> str:
            query = params.copy()
            query["day"] = (day + dt.timedelta(days=days)).isoformat()
            return f"{self.tab_url(self.current_tab())}?{query.urlencode()}"

        context.update(
            styles=STYLES,
            style=style,
            categories=[(key, label) for key, label, _keys in POINT_CATEGORIES],
            category=category,
            dimensions=DIMENSIONS,
            dimension=dimension,
            day=day,
            last_day=last,
            previous_url=shifted(-step),
            next_url=shifted(step),
            intervals=INTERVALS,
            interval=settings.setting("interval", ""),
            refreshes=REFRESHES,
            refresh=settings.setting("refresh", ""),
            point_groups=list(groups.items()),
            chosen_points=chosen,
            chart_zone=zone,
            chart_url="",
            chart_errors=[],
        )
        if not points:
            context["chart_errors"] = [
                gettext("The register map of this model has no measurement points.")
            ]
            return context
        if not chosen:
            context["chart_errors"] = [gettext("Choose one or more measurement points.")]
            return context
        query: dict[str, Any] = {
            "inverter": inverter.pk,
            "points": chosen,
            "start": day.isoformat(),
            "end": last.isoformat(),
        }
        if context["interval"]:
            query["interval"] = context["interval"]
        form = InverterChartForm(query, inverters=[as_chart_inverter(inverter)])
        if form.is_valid():
            url = reverse("inverters:chart_data", args=[inverter.pk])
            context["chart_url"] = f"{url}?{urlencode(query, doseq=True)}"
        else:
            context["chart_errors"] = [e for errors in form.errors.values() for e in errors]
        return context


class ChartDataView(InverterDataView):
    """The chart document of the inverter's measurement points (ui/charts.py)."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        inverter: Inverter = self.object
        form = InverterChartForm(request.GET, inverters=[as_chart_inverter(inverter)])
        if not form.is_valid():
            return chart_error(form.first_error(), form.errors)
        return measurement_chart(
            form.cleaned_data["site_inverter"],
            form.cleaned_data["measurement_points"],
            form.cleaned_data["start"],
            form.cleaned_data["end"],
            tz=inverter_zone(inverter, request.user),
            temperature_unit=temperature_unit(inverter),
            bucket_s=form.cleaned_data.get("interval"),
        )


# ---------------------------------------------------------------------------------------------
# Energy (§6.4.2.3)


def energy_form(request: HttpRequest, inverter: Inverter, params=None) -> EnergyForm:
    """The site Energy tab's form with this inverter as its only device."""
    params = (params if params is not None else request.GET).copy()
    params["device"] = str(inverter.pk)
    zone = inverter_zone(inverter, request.user)
    return EnergyForm(params, inverters=[as_chart_inverter(inverter)], today=local_today(zone))


def inverter_bars(request: HttpRequest, inverter: Inverter, form: EnergyForm):
    data = form.cleaned_data
    return energy.energy_bars(
        None,
        period=data["period"],
        anchor=data["anchor"],
        inverter_id=inverter.pk,
        tz=inverter_zone(inverter, request.user),
    )


class EnergyTabView(InverterTabView):
    tab = "energy"
    template_name = "fleet/inverters/energy.html"
    partial_name = "energy-block"
    htmx_target = "inverter-energy"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        fmt = request.GET.get(EXPORT_PARAMETER, "")
        if not fmt:
            return super().get(request, *args, **kwargs)
        inverter: Inverter = self.object
        params = request.GET.copy()
        params.pop(EXPORT_PARAMETER)
        form = energy_form(request, inverter, params)
        if not form.is_valid():
            return HttpResponseBadRequest(form.first_error())
        return energy_download(
            form,
            lambda: inverter_bars(request, inverter, form),
            fmt,
            [inverter.serial_number, "energy"],
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        inverter: Inverter = self.object
        form = energy_form(self.request, inverter)
        context.update(
            form=form,
            period_choices=Period.CHOICES,
            energy_url="",
            totals=[],
            energy_zone=inverter_zone(inverter, self.request.user),
        )
        if form.is_valid():
            context.update(
                energy_context(
                    form,
                    inverter_bars(self.request, inverter, form),
                    tab_url=reverse("inverters:energy", args=[inverter.pk]),
                    data_url=reverse("inverters:energy_data", args=[inverter.pk]),
                )
            )
        return context


class EnergyDataView(InverterDataView):
    """Bars in kWh of the inverter's hours, days, months or years."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        inverter: Inverter = self.object
        form = energy_form(request, inverter)
        if not form.is_valid():
            return chart_error(form.first_error(), form.errors)
        return energy_chart(inverter_bars(request, inverter, form))


# ---------------------------------------------------------------------------------------------
# Alarm (§6.4.2.4)


class AlarmTabView(AlarmListMixin, InverterTabView, ObjectListView):
    tab = "alarm"
    template_name = "fleet/inverters/alarm.html"
    # The device is fixed: no site, SN or device choice, no site or device column.
    hidden_alarm_filters = ("site", "sn")
    hidden_alarm_columns = ("site", "inverter")
    empty_text = _("This inverter has no alarms. When it reports a fault, it shows here.")

    def get_object_queryset(self) -> QuerySet:
        # `model` is the list's (Alarm); the page's object is the inverter.
        return Inverter.objects.visible_to(self.request.user).select_related(
            "site", "gateway", "company"
        )

    def alarm_scope(self) -> QuerySet:
        return Alarm.objects.visible_to(self.request.user).filter(inverter=self.object)

    def alarm_default_time_zone(self) -> str:
        return valid_zone_name(
            getattr(self.object.site, "time_zone", None), self.request.user.time_zone
        )

    def get_export_filename(self) -> str:
        return f"alarms-{slugify(self.object.serial_number)}-{timezone.localdate():%Y%m%d}"


# ---------------------------------------------------------------------------------------------
# Data (§6.4.2.5)

#: The longest time range of the Data tab and its downloads.
MAX_DATA_DAYS = 31
DATA_PAGE_SIZE = 50
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"


class DataForm(forms.Form):
    """A time range in the viewer's time zone and, optionally, one group of points."""

    start = forms.DateTimeField(label=_("From"), input_formats=[LOCAL_MINUTE, "%Y-%m-%d"])
    end = forms.DateTimeField(label=_("To"), input_formats=[LOCAL_MINUTE, "%Y-%m-%d"])
    group = forms.ChoiceField(label=_("Points"), required=False)

    def __init__(self, params, *, groups: list[str]) -> None:
        today = timezone.localdate()
        data = {
            "start": dt.datetime.combine(today, dt.time()).strftime(LOCAL_MINUTE),
            "end": dt.datetime.combine(today + dt.timedelta(days=1), dt.time()).strftime(
                LOCAL_MINUTE
            ),
            "group": "",
        }
        data.update({name: params[name] for name in data if params.get(name)})
        super().__init__(data)
        self.fields["group"].choices = [("", _("All points"))] + [(g, g) for g in groups]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end <= start:
                self.add_error("end", gettext("The end must be after the start."))
            elif end - start > dt.timedelta(days=MAX_DATA_DAYS):
                self.add_error(
                    "end",
                    ngettext(
                        "Choose at most %(days)d day.",
                        "Choose at most %(days)d days.",
                        MAX_DATA_DAYS,
                    )
                    % {"days": MAX_DATA_DAYS},
                )
        return data


class DataTabView(InverterTabView):
    tab = "data"
    template_name = "fleet/inverters/data.html"
    partial_name = "data-block"
    htmx_target = "inverter-data"

    def selection(self) -> tuple[DataForm, list]:
        model = self.object.model
        all_points = data_points(model)
        groups = list(dict.fromkeys(p.group for p in all_points))
        form = DataForm(self.request.GET, groups=groups)
        if form.is_valid() and form.cleaned_data["group"]:
            return form, [p for p in all_points if p.group == form.cleaned_data["group"]]
        return form, list(all_points)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        fmt = request.GET.get(EXPORT_PARAMETER, "")
        if not fmt:
            return super().get(request, *args, **kwargs)
        if fmt not in export.FORMATS:
            return HttpResponseBadRequest(gettext("Unknown download format."))
        form, points = self.selection()
        if not form.is_valid():
            errors = [e for errors in form.errors.values() for e in errors]
            return HttpResponseBadRequest(" ".join(errors))
        inverter: Inverter = self.object
        rm = register_map(inverter.model)
        if rm is None:
            return HttpResponseBadRequest(gettext("This model has no register map."))
        reader = SampleReader(inverter.model, points)
        rows = samples(inverter, form.cleaned_data["start"], form.cleaned_data["end"])
        unit = temperature_unit(inverter)

        def produce():
            return download_rows(reader, rows.iterator(chunk_size=export.CHUNK_SIZE), rm, unit)

        start = timezone.localtime(form.cleaned_data["start"])
        name = slugify(f"{inverter.serial_number} data {start:%Y%m%d-%H%M}")
        return export.download_response(produce, fmt, name, gettext("Data"))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        inverter: Inverter = self.object
        form, points = self.selection()
        unit = temperature_unit(inverter)
        context.update(form=form, columns=[], page=None, rows=[], downloads=[])
        rm = register_map(inverter.model)
        if rm is None or not form.is_valid():
            context["has_register_map"] = rm is not None
            return context
        data = form.cleaned_data
        rows = samples(inverter, data["start"], data["end"])
        per_page = positive_int(self.request.GET.get("per_page"), DATA_PAGE_SIZE, MAX_PAGE_SIZE)
        page = Paginator(rows, per_page).get_page(positive_int(self.request.GET.get("page"), 1))
        reader = SampleReader(inverter.model, points)
        query = {
            "start": timezone.localtime(data["start"]).strftime(LOCAL_MINUTE),
            "end": timezone.localtime(data["end"]).strftime(LOCAL_MINUTE),
        }
        if data["group"]:
            query["group"] = data["group"]
        base = reverse("inverters:data", args=[inverter.pk])
        context.update(
            has_register_map=True,
            columns=[point_label(p, unit) for p in points],
            page=page,
            rows=list(sample_rows(reader, iter(page.object_list), rm, unit)),
            page_query=urlencode(query),
            downloads=[
                {"url": f"{base}?{urlencode({**query, 'export': fmt})}", "label": label}
                for fmt, (_type, label) in export.FORMATS.items()
            ],
            zone_name=timezone.get_current_timezone_name(),
        )
        return context


urlpatterns = [
    path("<int:pk>/", DetailsTabView.as_view(), name="detail"),
    path("<int:pk>/power/", InverterPowerView.as_view(), name="power"),
    path("<int:pk>/chart/", ChartTabView.as_view(), name="chart"),
    path("<int:pk>/chart/data/", ChartDataView.as_view(), name="chart_data"),
    path("<int:pk>/energy/", EnergyTabView.as_view(), name="energy"),
    path("<int:pk>/energy/data/", EnergyDataView.as_view(), name="energy_data"),
    path("<int:pk>/alarm/", AlarmTabView.as_view(), name="alarm"),
    path("<int:pk>/data/", DataTabView.as_view(), name="data"),
]
