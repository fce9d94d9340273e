"""A site's Chart tab (guide §6.2.3) and Energy tab (§6.2.4), and their JSON endpoints.

Chart: model → serial number → measurement points and a range of local days; each select
re-renders what depends on it (htmx), the figure reads `sites:chart_data` (raw samples of one
inverter, downsampled to ui.charts.MAX_POINTS). Energy: the whole site or one inverter, a day,
month, year or all years as bars from the rollups (`sites:energy_data`), and the same numbers
as CSV or XLSX (`?export=csv|xlsx` on the tab's URL, as list pages do).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path, reverse
from django.utils.text import slugify
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views import View

from accounts.views.generic import ObjectMixin
from fleet import energy
from fleet.energy import Period
from fleet.views.site_base import SiteTabView, site_local_today
from inverters.models import Inverter
from sites.models import Site
from ui import export
from ui.charts import MAX_POINTS, chart_error, chart_json, downsample
from ui.lists import EXPORT_PARAMETER

#: The longest range the Chart tab draws from raw samples (local days).
MAX_CHART_DAYS = 7
#: Measurement points in one chart.
MAX_CHART_POINTS = 8
#: Points shown when the tab opens.
DEFAULT_POINTS = ("pv_power", "load_power", "abf_grid_power")
#: Units the chart shows scaled (value × factor), as pages show power in kW.
SCALED_UNITS = {"W": ("kW", 0.001), "var": ("kvar", 0.001), "VA": ("kVA", 0.001)}


@dataclass(frozen=True)
class SiteInverter:
    id: int
    serial_number: str
    name: str
    model: str
    upload_interval_s: int | None

    @property
    def label(self) -> str:
        return f"{self.serial_number} · {self.name}" if self.name else self.serial_number


def site_inverters(user, site: Site) -> list[SiteInverter]:
    """The site's inverters the user may see, by serial number (one query)."""
    rows = (
        Inverter.objects.visible_to(user)
        .filter(site=site)
        .order_by("serial_number")
        .values_list("id", "serial_number", "name", "model", "gateway__upload_interval_s")
    )
    return [SiteInverter(*row) for row in rows]


def first_error(form: forms.Form) -> str:
    """The first refusal of a form as one sentence, led by its field's label."""
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        return f"{field.label}: {errors[0]}" if field is not None else errors[0]
    return ""


class SiteDataView(ObjectMixin, View):
    """A JSON endpoint of a site page: the site within the user's scope (404), site.view."""

    model = Site
    action = "site.view"


# ---------------------------------------------------------------------------------------------
# Chart (§6.2.3)


class ChartForm(forms.Form):
    """What one chart shows; the JSON endpoint refuses anything else with 400."""

    inverter = forms.TypedChoiceField(label=_("Serial number"), coerce=int)
    points = forms.MultipleChoiceField(label=_("Measurement points"))
    start = forms.DateField(label=_("From"))
    end = forms.DateField(label=_("To"))

    def __init__(self, data, *, inverters: list[SiteInverter]) -> None:
        super().__init__(data)
        self.inverters = {i.id: i for i in inverters}
        self.fields["inverter"].choices = [(i.id, i.label) for i in inverters]
        keys = {p.key for i in inverters for p in energy.measurement_points(i.model)}
        self.fields["points"].choices = [(key, key) for key in sorted(keys)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        inverter = self.inverters.get(data.get("inverter"))
        if inverter is not None and data.get("points"):
            known = energy.points_by_key(inverter.model)
            unknown = [key for key in data["points"] if key not in known]
            if unknown:
                self.add_error(
                    "points",
                    gettext("%(model)s has no measurement point %(key)s.")
                    % {"model": inverter.model, "key": unknown[0]},
                )
            elif len(data["points"]) > MAX_CHART_POINTS:
                self.add_error(
                    "points",
                    ngettext(
                        "Choose at most %(count)d measurement point.",
                        "Choose at most %(count)d measurement points.",
                        MAX_CHART_POINTS,
                    )
                    % {"count": MAX_CHART_POINTS},
                )
            else:
                data["measurement_points"] = [known[key] for key in data["points"]]
        data["site_inverter"] = inverter
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", gettext("The end date is before the start date."))
            elif (end - start).days + 1 > MAX_CHART_DAYS:
                self.add_error(
                    "end",
                    ngettext(
                        "Choose at most %(days)d day.",
                        "Choose at most %(days)d days.",
                        MAX_CHART_DAYS,
                    )
                    % {"days": MAX_CHART_DAYS},
                )
        return data

    def first_error(self) -> str:
        return first_error(self)


def chart_selection(params, inverters: list[SiteInverter], today: dt.date) -> dict[str, Any]:
    """What the Chart tab's selectors show: a model, one of its inverters, its points.

    A choice that no longer fits (another model was picked) falls back to the first that
    does, so each select re-renders the next; the points and dates are checked by ChartForm.
    """
    models = sorted({i.model for i in inverters})
    by_id = {str(i.id): i for i in inverters}
    model = params.get("model")
    if model not in models:
        chosen = by_id.get(params.get("inverter", ""))
        model = chosen.model if chosen else (models[0] if models else "")
    of_model = [i for i in inverters if i.model == model]
    inverter = by_id.get(params.get("inverter", ""))
    if inverter is None or inverter.model != model:
        inverter = of_model[0] if of_model else None
    points = energy.measurement_points(model) if model else ()
    known = {p.key for p in points}
    if "chart" in params:  # the form was used: take the reader's points as they are
        keys = [key for key in params.getlist("points") if key in known]
        if not keys and params.getlist("points"):
            keys = [key for key in DEFAULT_POINTS if key in known]
    else:
        keys = [key for key in DEFAULT_POINTS if key in known]
    start = params.get("start") or today.isoformat()
    end = params.get("end") or start
    groups: dict[str, list] = {}
    for point in points:
        groups.setdefault(point.group, []).append(point)
    return {
        "models": models,
        "model": model,
        "model_inverters": of_model,
        "inverter": inverter,
        "point_groups": list(groups.items()),
        "chosen_points": keys,
        "start": start,
        "end": end,
        "max_days": MAX_CHART_DAYS,
    }


class ChartTabView(SiteTabView):
    tab = "chart"
    template_name = "fleet/sites/chart.html"
    #: htmx targets that get only a part of the tab: the selectors with the figure, or the figure.
    partials = {"site-chart": "chart-block", "chart-figure": "chart-figure"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        site = self.object
        inverters = site_inverters(self.request.user, site)
        selection = chart_selection(self.request.GET, inverters, site_local_today(site))
        context.update(selection)
        context["chart_url"] = ""
        context["chart_errors"] = []
        inverter = selection["inverter"]
        if inverter is None:
            return context
        if not selection["chosen_points"]:
            context["chart_errors"] = [gettext("Choose one or more measurement points.")]
            return context
        query = {
            "inverter": inverter.id,
            "points": selection["chosen_points"],
            "start": selection["start"],
            "end": selection["end"],
        }
        form = ChartForm(query, inverters=inverters)
        if form.is_valid():
            url = reverse("sites:chart_data", args=[site.pk])
            context["chart_url"] = f"{url}?{urlencode(query, doseq=True)}"
        else:
            context["chart_errors"] = [e for errors in form.errors.values() for e in errors]
        return context


class ChartDataView(SiteDataView):
    """`{"x": epoch seconds, "series": one per measurement point}` of one inverter."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        site: Site = self.object
        form = ChartForm(request.GET, inverters=site_inverters(request.user, site))
        if not form.is_valid():
            return chart_error(form.first_error(), form.errors)
        return measurement_chart(
            form.cleaned_data["site_inverter"],
            form.cleaned_data["measurement_points"],
            form.cleaned_data["start"],
            form.cleaned_data["end"],
            tz=site.time_zone,
            temperature_unit=site.temperature_unit,
        )


def measurement_chart(
    inverter: SiteInverter,
    points: list[energy.MeasurementPoint],
    first: dt.date,
    last: dt.date,
    *,
    tz: str,
    temperature_unit: str,
    bucket_s: int | None = None,
) -> HttpResponse:
    """The chart document of `points` of one inverter over the local days `first`…`last` of
    `tz`: powers in kW, temperatures in `temperature_unit`, at most MAX_POINTS x values (a
    site's and an inverter's Chart tab). With `bucket_s`, each point is its mean per bucket."""
    start, end = energy.local_range(first, last, tz)
    rows = energy.point_rows(inverter.id, inverter.model, points, start, end, bucket_s)
    units, factors = [], []
    for point in points:
        unit, factor = _shown_unit(point.unit, temperature_unit)
        units.append(unit)
        factors.append(factor)
    rows = [
        (row[0], *(_scaled(v, f) for v, f in zip(row[1:], factors, strict=True))) for row in rows
    ]
    gap = max(3 * (inverter.upload_interval_s or 60), 300, 2 * (bucket_s or 0))
    rows = downsample(rows, MAX_POINTS, gap=gap)
    series = [
        {"label": point.name, "unit": unit, "values": [row[i + 1] for row in rows]}
        for i, (point, unit) in enumerate(zip(points, units, strict=True))
    ]
    return chart_json([row[0] for row in rows], series, x_kind="time", tz=tz)


def _shown_unit(unit: str, temperature_unit: str) -> tuple[str, Any]:
    if unit in SCALED_UNITS:
        return SCALED_UNITS[unit]
    if unit == "°C" and temperature_unit == "F":
        return "°F", "F"
    return unit, None


def _scaled(value: float | None, factor: Any) -> float | None:
    if value is None or factor is None:
        return value
    if factor == "F":
        return value * 9 / 5 + 32
    return value * factor


# ---------------------------------------------------------------------------------------------
# Energy (§6.2.4)

SITE_DEVICE = "site"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class EnergyForm(forms.Form):
    """Device, period and the day, month or year it shows; absent values take defaults."""

    device = forms.ChoiceField(label=_("Device"))
    period = forms.ChoiceField(label=_("Period"), choices=Period.CHOICES)
    day = forms.DateField(label=_("Day"), required=False)
    month = forms.CharField(label=_("Month"), required=False, max_length=7)
    year = forms.IntegerField(label=_("Year"), required=False, min_value=2000, max_value=2100)

    def __init__(self, params, *, inverters: list[SiteInverter], today: dt.date) -> None:
        data = {
            "device": SITE_DEVICE,
            "period": Period.MONTH,
            "day": today.isoformat(),
            "month": f"{today:%Y-%m}",
            "year": str(today.year),
        }
        data.update({name: params[name] for name in data if name in params})
        super().__init__(data)
        self.inverters = {str(i.id): i for i in inverters}
        self.fields["device"].choices = [(SITE_DEVICE, _("Whole site"))] + [
            (str(i.id), i.label) for i in inverters
        ]

    def clean_month(self) -> dt.date | None:
        text = self.cleaned_data.get("month") or ""
        if not text:
            return None
        match = _MONTH.match(text)
        if not match or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2100:
            raise forms.ValidationError(gettext("Enter a month as YYYY-MM."))
        return dt.date(int(match[1]), int(match[2]), 1)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        period = data.get("period")
        field = {Period.DAY: "day", Period.MONTH: "month", Period.YEAR: "year"}.get(period)
        if field and field not in self.errors and data.get(field) is None:
            missing = {
                "day": gettext("Choose a day."),
                "month": gettext("Choose a month."),
                "year": gettext("Choose a year."),
            }
            self.add_error(field, missing[field])
        anchor = None
        if field == "day":
            anchor = data.get("day")
        elif field == "month":
            anchor = data.get("month")
        elif field == "year" and data.get("year"):
            anchor = dt.date(data["year"], 1, 1)
        data["anchor"] = anchor
        data["inverter"] = self.inverters.get(data.get("device", ""))
        return data

    def first_error(self) -> str:
        return first_error(self)

    def query(self) -> dict[str, str]:
        """The parameters that select these bars (only the active period's date)."""
        data = self.cleaned_data
        query = {"device": data["device"], "period": data["period"]}
        anchor = data["anchor"]
        if data["period"] == Period.DAY:
            query["day"] = anchor.isoformat()
        elif data["period"] == Period.MONTH:
            query["month"] = f"{anchor:%Y-%m}"
        elif data["period"] == Period.YEAR:
            query["year"] = str(anchor.year)
        return query


def _energy_bars(request: HttpRequest, site: Site, form: EnergyForm, inverters):
    data = form.cleaned_data
    inverter = data["inverter"]
    return energy.energy_bars(
        site,
        period=data["period"],
        anchor=data["anchor"],
        inverter_id=inverter.id if inverter else None,
        site_inverter_ids=[i.id for i in inverters],
    )


class EnergyTabView(SiteTabView):
    tab = "energy"
    template_name = "fleet/sites/energy.html"
    partial_name = "energy-block"
    htmx_target = "site-energy"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        fmt = request.GET.get(EXPORT_PARAMETER, "")
        if not fmt:
            return super().get(request, *args, **kwargs)
        site: Site = self.object
        inverters = site_inverters(request.user, site)
        params = request.GET.copy()
        params.pop(EXPORT_PARAMETER)
        form = EnergyForm(params, inverters=inverters, today=site_local_today(site))
        if not form.is_valid():
            return HttpResponseBadRequest(form.first_error())
        inverter = form.cleaned_data["inverter"]
        return energy_download(
            form,
            lambda: _energy_bars(request, site, form, inverters),
            fmt,
            [site.name, "energy", inverter.serial_number if inverter else ""],
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        site = self.object
        inverters = site_inverters(self.request.user, site)
        today = site_local_today(site)
        form = EnergyForm(self.request.GET, inverters=inverters, today=today)
        context.update(form=form, period_choices=Period.CHOICES, energy_url="", totals=[])
        if form.is_valid():
            context.update(
                energy_context(
                    form,
                    _energy_bars(self.request, site, form, inverters),
                    tab_url=reverse("sites:energy", args=[site.pk]),
                    data_url=reverse("sites:energy_data", args=[site.pk]),
                )
            )
        return context


def energy_download(form: EnergyForm, bars, fmt: str, name_parts: list[str]) -> HttpResponse:
    """The bars of a valid EnergyForm as a CSV or XLSX download (an Energy tab's Download);
    `bars` makes them, `name_parts` lead the file's name."""
    if fmt not in export.FORMATS:
        return HttpResponseBadRequest(gettext("Unknown download format."))
    query = form.query()
    parts = [*name_parts, *(value for key, value in query.items() if key != "device")]
    return export.download_response(
        bars().download_rows, fmt, slugify(" ".join(parts)), gettext("Energy")
    )


def energy_context(form: EnergyForm, bars, *, tab_url: str, data_url: str) -> dict[str, Any]:
    """What an Energy tab shows for a valid EnergyForm: the chart's URL, the period's
    totals, the downloads and the earlier and later periods."""
    data = form.cleaned_data
    query = form.query()
    totals = bars.totals()
    context = {
        "anchor": data["anchor"],
        "period": data["period"],
        "energy_url": f"{data_url}?{urlencode(query)}",
        "downloads": [
            {"url": f"{tab_url}?{urlencode({**query, 'export': fmt})}", "label": label}
            for fmt, (_type, label) in export.FORMATS.items()
        ],
        "totals": [(series.label, totals[series.key]) for series in energy.SERIES],
        "has_data": bars.has_data,
    }
    if data["period"] != Period.TOTAL:
        context["previous_url"] = _shifted(tab_url, form, -1)
        context["next_url"] = _shifted(tab_url, form, 1)
    return context


def _shifted(base: str, form: EnergyForm, steps: int) -> str:
    data = form.cleaned_data
    anchor = energy.shift(data["period"], data["anchor"], steps)
    query = {"device": data["device"], "period": data["period"]}
    query.update(day=anchor.isoformat(), month=f"{anchor:%Y-%m}", year=str(anchor.year))
    return f"{base}?{urlencode(query)}"


class EnergyDataView(SiteDataView):
    """Bars in kWh: `x` are the hours, days, months or years of the period."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        site: Site = self.object
        inverters = site_inverters(request.user, site)
        form = EnergyForm(request.GET, inverters=inverters, today=site_local_today(site))
        if not form.is_valid():
            return chart_error(form.first_error(), form.errors)
        return energy_chart(_energy_bars(request, site, form, inverters))


def energy_chart(bars: energy.EnergyBars) -> HttpResponse:
    """The chart document of energy bars, in kWh."""
    series = [
        {"label": s.label, "unit": "kWh", "values": bars.values[s.key], "show": s.shown}
        for s in energy.SERIES
    ]
    return chart_json(bars.labels, series, x_kind="category", digits=2)


urlpatterns = [
    path("<int:pk>/chart/", ChartTabView.as_view(), name="chart"),
    path("<int:pk>/chart/data/", ChartDataView.as_view(), name="chart_data"),
    path("<int:pk>/energy/", EnergyTabView.as_view(), name="energy"),
    path("<int:pk>/energy/data/", EnergyDataView.as_view(), name="energy_data"),
]
