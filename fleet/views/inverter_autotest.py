"""Inverter → AutoTest (guide §6.4.2.7, figure 6-55), for inverters of Italian sites only: the
test conditions, the agreement, Start; then the CEI 0-21 sequence step by step as the inverter
reports it (the results card fetches itself again while the test runs), earlier tests, and
each test's PDF report.

Every URL answers 404 for an inverter outside the user's scope or not on an Italian site, then
403 without `device.operate` (owners never see the tab). The PDF is drawn on request from the
stored run, after the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.text import slugify
from django.utils.translation import gettext_lazy
from django.views.generic import View

from accounts.views.generic import htmx_partial
from fleet import autotest
from fleet.autotest_pdf import render_report
from fleet.commissioning import local_time
from fleet.models import (
    AUTOTEST_IN_PROGRESS,
    AutoTestResult,
    AutoTestRun,
    AutoTestStatus,
    AutoTestStep,
)
from fleet.queries import INVERTER_TONE
from fleet.views.inverter_base import InverterTabView
from gateways.models import GatewayStatus
from inverters.models import Inverter, InverterStatus

RUN_TARGET = "autotest-run"
START_TARGET = "autotest-start"
POLL_EVERY = "2s"
HISTORY_SIZE = 10

STATUS_TONE = {
    AutoTestStatus.STARTING: "secondary",
    AutoTestStatus.RUNNING: "primary",
    AutoTestStatus.PASSED: "success",
    AutoTestStatus.FAILED: "danger",
    AutoTestStatus.ABORTED: "warning",
    AutoTestStatus.REFUSED: "warning",
    AutoTestStatus.EXPIRED: "secondary",
}


class AutotestForm(forms.Form):
    agree = forms.BooleanField(
        label=gettext_lazy(
            "I have checked the test conditions and agree that the inverter disconnects from "
            "the grid during the test."
        ),
        error_messages={"required": gettext_lazy("Confirm the test conditions to start.")},
    )


@dataclass
class StepRow:
    step: AutoTestStep
    function: str
    threshold: str
    time_limit: str
    trip_value: str
    trip_time: str

    @property
    def live(self) -> bool:
        """The value is the one the test applies now, not yet a trip value."""
        return self.step.state == "testing" and self.step.trip_time_ms is None

    @property
    def tone(self) -> str:
        return {AutoTestResult.PASS: "success", AutoTestResult.FAIL: "danger"}.get(
            self.step.result, "secondary"
        )


def step_rows(run: AutoTestRun) -> list[StepRow]:
    return [
        StepRow(
            step=step,
            function=autotest.function_label(step.code),
            threshold=autotest.format_value(step.threshold, step.unit),
            time_limit=autotest.format_ms(step.time_limit_ms),
            trip_value=autotest.format_value(step.trip_value, step.unit),
            trip_time=autotest.format_ms(step.trip_time_ms),
        )
        for step in run.steps.all()
    ]


def run_context(run: AutoTestRun | None, inverter: Inverter) -> dict[str, Any]:
    """The results card of `run` (None: no test yet)."""
    context: dict[str, Any] = {"run": run, "run_target": RUN_TARGET, "poll_every": POLL_EVERY}
    if run is None:
        return {**context, "polling": False}
    time_zone = inverter.site.time_zone
    status = AutoTestStatus(run.shown_status)
    rows = step_rows(run)
    return {
        **context,
        "polling": run.in_progress,
        "run_url": reverse("inverters:autotest_run", args=[inverter.pk, run.pk]),
        "pdf_url": reverse("inverters:autotest_pdf", args=[inverter.pk, run.pk]),
        "rows": rows,
        "run_status": status,
        "run_tone": STATUS_TONE[status],
        "run_started": local_time(run.created_at, time_zone),
        "run_finished": local_time(run.finished_at, time_zone) if run.finished_at else "",
        "run_reason": autotest.reason_text(run),
        "step_count": len(rows),
    }


class AutotestTabView(InverterTabView):
    """The tab: conditions, agreement and Start, and the latest test's results."""

    tab = "autotest"
    template_name = "fleet/inverters/autotest.html"
    partial_name = "run"
    htmx_target = RUN_TARGET
    form: AutotestForm | None = None

    def runs(self):
        return AutoTestRun.objects.visible_to(self.request.user).filter(inverter=self.object)

    def selected_run(self) -> AutoTestRun | None:
        return self.runs().first()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        inverter = self.object
        run = self.selected_run()
        context = {**run_context(run, inverter), **self.start_context(run)}
        if htmx_partial(self.request, RUN_TARGET):
            # The results card fetching itself: no header, no tabs.
            return {"inverter": inverter, "polled": True, **context}
        context["history"] = self.history(run)
        return super().get_context_data(**context, **kwargs)

    def start_context(self, run: AutoTestRun | None) -> dict[str, Any]:
        """The conditions card: the conditions, and the agreement and Start unless a test of
        this inverter is running."""
        inverter = self.object
        in_progress = self.runs().filter(status__in=AUTOTEST_IN_PROGRESS)
        gateway = inverter.gateway
        return {
            "running": next((r for r in in_progress if r.in_progress), None),
            "form": self.form or AutotestForm(),
            "conditions": autotest.CONDITIONS,
            "start_url": reverse("inverters:autotest_start", args=[inverter.pk]),
            "start_target": START_TARGET,
            "gateway_online": gateway is not None and gateway.status == GatewayStatus.ONLINE,
            "now_status": InverterStatus(inverter.status),
            "now_tone": INVERTER_TONE[InverterStatus(inverter.status)],
            # A poll that sees the test end brings the Start form back as well.
            "refresh_start": run is not None and not run.in_progress,
        }

    def history(self, selected: AutoTestRun | None) -> list[dict[str, Any]]:
        time_zone = self.object.site.time_zone
        rows = []
        for r in self.runs()[:HISTORY_SIZE]:
            status = AutoTestStatus(r.shown_status)
            rows.append(
                {
                    "run": r,
                    "started": local_time(r.created_at, time_zone),
                    "status": status,
                    "tone": STATUS_TONE[status],
                    "selected": selected is not None and r.pk == selected.pk,
                    "url": reverse("inverters:autotest_run", args=[self.object.pk, r.pk]),
                }
            )
        return rows


class AutotestRunView(AutotestTabView):
    """One test's results (a test of the history list); the card polls itself while it runs."""

    run: AutoTestRun

    def get_object(self) -> Inverter:
        inverter = super().get_object()
        self.run = get_object_or_404(
            AutoTestRun.objects.visible_to(self.request.user).filter(inverter=inverter),
            pk=self.kwargs["run_pk"],
        )
        return inverter

    def selected_run(self) -> AutoTestRun | None:
        return self.run


class AutotestStartView(AutotestTabView):
    """Start: the agreement is required; the service sends the command (POST only)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = AutotestForm(request.POST)
        if form.is_valid():
            try:
                run = autotest.start_autotest(self.object, acting_user=request.user)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                return HttpResponseRedirect(
                    reverse("inverters:autotest_run", args=[self.object.pk, run.pk])
                )
        self.form = form
        return self.render_to_response(self.get_context_data())


class AutotestPdfView(AutotestRunView, View):
    """The report of a finished test, drawn from the stored run."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        run = self.run
        if not run.has_report:
            raise Http404("the test has not ended yet")
        content = render_report(run, self.object, request.user)
        response = HttpResponse(content, content_type="application/pdf")
        created = run.created_at.strftime("%Y%m%d-%H%M")
        filename = f"autotest-{slugify(run.serial_number)}-{created}.pdf"
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        # The browser's PDF viewer is an embedded plugin page: the portal's policy would block
        # it, so the PDF carries its own (as the commissioning report does).
        response["Content-Security-Policy"] = "frame-ancestors 'none'"
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-cache"
        response["Vary"] = "Cookie"
        return response


urlpatterns = [
    path("<int:pk>/autotest/", AutotestTabView.as_view(), name="autotest"),
    path("<int:pk>/autotest/start/", AutotestStartView.as_view(), name="autotest_start"),
    path("<int:pk>/autotest/<int:run_pk>/", AutotestRunView.as_view(), name="autotest_run"),
    path("<int:pk>/autotest/<int:run_pk>/pdf/", AutotestPdfView.as_view(), name="autotest_pdf"),
]
