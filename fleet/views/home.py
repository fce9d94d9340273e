"""Home (guide §4): the signed-in user's sites at a glance.

One page with three parts that htmx fetches again on their own, by the id of the element to
swap (ui.views.htmx_partial): the live cards (`home-live`: status, KPIs, alarms, revenue,
green efficiency; polled every 60 s), the monthly charts (`home-charts`: when the period
changes) and the yield ranking (`home-ranking`: today / total). The charts draw themselves
from the JSON endpoints below (static/js/charts.js). How each figure is computed:
docs/home.md and fleet/home.py.
"""

from __future__ import annotations

from typing import Any

from babel.numbers import get_currency_symbol
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext, gettext_lazy
from django.views import View
from django.views.generic import TemplateView

from accounts.permissions import can
from accounts.views.generic import ActionRequiredMixin, htmx_partial
from alarms.models import AlarmLevel
from fleet import green, snapshot
from fleet import home as figures
from fleet.home import RANK_TODAY, RANK_TOTAL, RANKINGS, Scope
from fleet.queries import STATUS_TONE, SiteStatus
from ui import units

#: How often the live cards fetch themselves again (the `hx-trigger="every …"` of ui lists).
POLL_INTERVAL = "60s"
LIVE_TARGET = "home-live"
CHARTS_TARGET = "home-charts"
RANKING_TARGET = "home-ranking"
PARTIALS = {LIVE_TARGET: "live", CHARTS_TARGET: "charts", RANKING_TARGET: "ranking"}

ALARM_TONE = {
    AlarmLevel.URGENT: "urgent",
    AlarmLevel.IMPORTANT: "important",
    AlarmLevel.COMMON: "common",
    AlarmLevel.PROMPT: "prompt",
}


def _reverse_or_none(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


class HomeView(ActionRequiredMixin, TemplateView):
    action = "site.view"
    template_name = "fleet/home/page.html"

    def partial(self) -> str | None:
        """The part htmx asks for (by the id of the element it swaps), or None: whole page."""
        for target, name in PARTIALS.items():
            if htmx_partial(self.request, target):
                return name
        return None

    def get_template_names(self) -> list[str]:
        part = self.partial()
        return [f"{self.template_name}#{part}" if part else self.template_name]

    def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response

    # --- the parts ----------------------------------------------------------------------------

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        scope = snapshot.scope_for(self.request.user)
        self.period = figures.parse_period(
            self.request.GET.get("period"), scope.today
        ) or figures.default_period(scope.today)
        ranking = self.request.GET.get("ranking")
        self.ranking = ranking if ranking in RANKINGS else RANK_TOTAL
        context.update(
            ranking_by=self.ranking,
            poll_interval=POLL_INTERVAL,
            live_target=LIVE_TARGET,
            charts_target=CHARTS_TARGET,
            ranking_target=RANKING_TARGET,
        )
        part = self.partial()
        if part == "charts":
            context.update(self.charts_context(scope))
            return context
        if part == "ranking":
            context.update(self.ranking_context(scope))
            return context
        live = self.live_context(scope)
        context.update(live)
        if part == "live":
            return context
        if not context["site_total"]:
            context["empty"] = self.empty_state()
            return context
        context.update(self.charts_context(scope, current=live["this_month"]))
        context.update(self.ranking_context(scope))
        return context

    def live_context(self, scope: Scope) -> dict[str, Any]:
        now = snapshot.fleet_now_for(scope)
        counts = now.counts
        list_url = reverse("sites:list")
        statuses = [
            {
                "label": status.label,
                "count": counts.by_status[status.value],
                "tone": STATUS_TONE[status],
                "url": f"{list_url}?{urlencode({'status': status.value})}",
            }
            for status in (SiteStatus.ONLINE, SiteStatus.OFFLINE, SiteStatus.ABNORMAL)
        ]
        if not counts.total:
            return {
                "site_total": 0,
                "statuses": statuses,
                "site_list_url": list_url,
                "this_month": None,
            }
        live, today, this_month = now.live, now.today, now.this_month
        revenue = figures.revenue(scope, today, this_month, live)
        return {
            "site_total": counts.total,
            "site_list_url": list_url,
            "statuses": statuses,
            "power_w": live.power_w,
            "capacity_kwp": counts.capacity_kwp,
            "day_kwh": today.kwh,
            "total_kwh": live.total_kwh,
            "alarms": self.alarm_rows(figures.alarm_counts(scope)),
            "revenue": revenue,
            "revenue_rows": [
                (gettext_lazy("Today"), revenue.today),
                (gettext_lazy("This month"), revenue.month),
                (gettext_lazy("This year"), revenue.year),
                (gettext_lazy("Total"), revenue.total),
            ],
            "green": self.green_rows(live.total_kwh),
            "this_month": this_month,
        }

    def alarm_rows(self, counts: dict[str, int]) -> list[dict[str, Any]]:
        """Each level's count; a link to the alarm list filtered by level once that list
        exists and the user may open it (guide §8.1)."""
        alarm_list = None
        if can(self.request.user, "maintenance.view"):
            alarm_list = _reverse_or_none("maintenance:alarms")
        return [
            {
                "level": level.value,
                "label": level.label,
                "count": counts.get(level.value, 0),
                "tone": ALARM_TONE[level],
                "url": f"{alarm_list}?{urlencode({'level': level.value})}" if alarm_list else "",
            }
            for level in AlarmLevel
        ]

    def green_rows(self, total_kwh: float | None) -> list[dict[str, Any]]:
        result = green.green_figures(total_kwh)
        return [
            {
                "icon": "fire",
                "label": gettext_lazy("Standard coal saved"),
                "value": green.mass(result.coal_kg),
            },
            {
                "icon": "cloud-haze2",
                "label": gettext_lazy("CO₂ avoided"),
                "value": green.mass(result.co2_kg),
            },
            {
                "icon": "tree",
                "label": gettext_lazy("Equivalent trees planted"),
                "value": green.trees(result.trees),
            },
        ]

    def charts_context(
        self, scope: Scope, current: figures.EnergySums | None = None
    ) -> dict[str, Any]:
        period = self.period
        trend = figures.monthly_trend(scope, period, current)
        query = urlencode({"period": period.key})
        years = figures.year_options(scope)
        options = [(figures.LAST_12_MONTHS, gettext("Last 12 months"))]
        options += [(str(year), str(year)) for year in years]
        if period.is_year and int(period.key) not in years:
            options.append((period.key, period.key))
        return {
            "period": period,
            "period_label": _period_label(period),
            "period_options": options,
            "trend": trend,
            "currency": scope.currency,
            "revenue_chart_url": f"{reverse('home:revenue_chart')}?{query}",
            "yield_chart_url": f"{reverse('home:yield_chart')}?{query}",
        }

    def ranking_context(self, scope: Scope) -> dict[str, Any]:
        ranked = snapshot.ranking_for(scope, self.ranking)
        best = max((row.kwh or 0 for row in ranked), default=0)
        home = reverse("home")
        return {
            "ranking": ranked,
            "ranking_best": best,
            "ranking_by": self.ranking,
            "ranking_choices": [
                {
                    "key": key,
                    "label": label,
                    "active": key == self.ranking,
                    "url": f"{home}?{urlencode({'period': self.period.key, 'ranking': key})}",
                    # htmx adds the period chosen on the page (hx-include).
                    "partial_url": f"{home}?{urlencode({'ranking': key})}",
                }
                for key, label in (
                    (RANK_TOTAL, gettext_lazy("Total")),
                    (RANK_TODAY, gettext_lazy("Today")),
                )
            ],
        }

    def empty_state(self) -> dict[str, Any]:
        """A new account: staff are invited to create the first site, owners are told why."""
        if can(self.request.user, "site.manage"):
            return {
                "icon": "geo-alt",
                "text": gettext("There are no sites yet. Create the first one to see it here."),
                "action_url": _reverse_or_none("sites:create") or reverse("sites:list"),
                "action_label": gettext("Create site"),
                "primary": True,
            }
        return {
            "icon": "geo-alt",
            "text": gettext(
                "No site has been shared with you yet. Your installer shares your site with "
                "your account; its figures then appear here."
            ),
        }


def _period_label(period: figures.Period) -> str:
    if period.is_year:
        return period.key
    return gettext("the last 12 months")


# --- The charts' JSON -------------------------------------------------------------------------


class MonthlyChartView(ActionRequiredMixin, View):
    """One series per month of the period (?period=2025 or 12m; default this year), in the
    chart JSON of static/js/charts.js: category x (month names in the user's language)."""

    action = "site.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        scope = snapshot.scope_for(request.user)
        raw = request.GET.get("period")
        period = (
            figures.parse_period(raw, scope.today) if raw else figures.default_period(scope.today)
        )
        if period is None:
            return JsonResponse({"error": gettext("Unknown period.")}, status=400)
        trend = figures.monthly_trend(scope, period)
        payload = {
            "x": [month.short_label for month in trend.months],
            "x_kind": "category",
            "series": [self.series(trend, scope.currency)],
        }
        return JsonResponse(payload)

    def series(self, trend: figures.Trend, currency: str) -> dict[str, Any]:
        raise NotImplementedError


class RevenueChartView(MonthlyChartView):
    def series(self, trend: figures.Trend, currency: str) -> dict[str, Any]:
        locale = (translation.get_language() or "en").replace("-", "_")
        return {
            "label": gettext("Revenue"),
            "unit": get_currency_symbol(currency, locale=locale),
            "values": [_rounded(month.revenue, 2) for month in trend.months],
        }


class YieldChartView(MonthlyChartView):
    def series(self, trend: figures.Trend, currency: str) -> dict[str, Any]:
        values = [month.kwh for month in trend.months]
        largest = max((abs(v) for v in values if v is not None), default=0)
        if largest >= units.MWH_FROM_KWH:
            return {
                "label": gettext("PV yield"),
                "unit": "MWh",
                "values": [_rounded(v / 1000 if v is not None else None, 3) for v in values],
            }
        return {
            "label": gettext("PV yield"),
            "unit": "kWh",
            "values": [_rounded(v, 2) for v in values],
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


home = HomeView.as_view()

urlpatterns = [
    path("revenue.json", RevenueChartView.as_view(), name="revenue_chart"),
    path("yield.json", YieldChartView.as_view(), name="yield_chart"),
]
