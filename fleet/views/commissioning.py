"""Site → Commissioning (guide §6.2.7, figures 6-26 to 6-28), for North-American sites only:
the reports of the site with their progress, Create, Update (build again), Delete, Send Email,
and the PDF itself.

Every URL answers 404 for a site outside the user's scope or outside North America, then 403
without `site.manage` (owners never see the tab). The PDF is served here, after the same
checks, never from MEDIA_URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import FormView, View
from django_htmx.http import HttpResponseClientRedirect

from accounts.views.generic import HtmxPartialMixin, ObjectConfirmView, ObjectMixin, htmx_partial
from fleet import commissioning_services as services
from fleet.commissioning import local_time, pdf_filename
from fleet.commissioning_forms import CommissioningReportForm, SendReportForm
from fleet.models import CommissioningReport, ReportStatus
from fleet.views.site_base import SiteTabView, is_north_american
from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site

#: The element the list polls into while a report is being built, and the tab's own dialog.
REPORTS_TARGET = "commissioning-reports"
DIALOG_TARGET = "commissioning-dialog"
POLL_EVERY = "2s"

STATUS_TONE = {
    ReportStatus.QUEUED: "secondary",
    ReportStatus.READING: "primary",
    ReportStatus.BUILDING: "primary",
    ReportStatus.FINISHED: "success",
    ReportStatus.FAILED: "danger",
}


@dataclass
class ReportRow:
    report: CommissioningReport
    created: str
    emailed: str

    @property
    def tone(self) -> str:
        return STATUS_TONE.get(self.report.status, "secondary")

    @property
    def progress_step(self) -> int:
        """The progress in steps of 5 (the CSS width classes of the bar)."""
        return max(0, min(100, self.report.progress)) // 5 * 5


def report_rows(site: Site, user) -> dict[str, Any]:
    reports = (
        CommissioningReport.objects.visible_to(user)
        .filter(site=site)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )
    rows = [
        ReportRow(
            report=r,
            created=local_time(r.created_at, site.time_zone),
            emailed=local_time(r.emailed_at, site.time_zone) if r.emailed_at else "",
        )
        for r in reports
    ]
    return {
        "rows": rows,
        "polling": any(row.report.in_progress and not row.report.is_stale for row in rows),
        "poll_every": POLL_EVERY,
        "reports_target": REPORTS_TARGET,
        "dialog_target": DIALOG_TARGET,
        "list_url": reverse("sites:commissioning", args=[site.pk]),
    }


class CommissioningTabView(SiteTabView):
    """The tab: the site's reports (figure 6-28); the list polls itself while one is built."""

    tab = "commissioning"
    template_name = "fleet/sites/commissioning.html"
    partial_name = "reports"
    htmx_target = REPORTS_TARGET

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        reports = report_rows(self.object, self.request.user)
        if htmx_partial(self.request, REPORTS_TARGET):
            # The list polling itself: no header, no tabs.
            return {"site": self.object, **reports}
        return super().get_context_data(**reports, **kwargs)


class SiteCommissioningMixin(ObjectMixin):
    """A commissioning URL of a site: in the user's scope and in North America (else 404),
    for a role that manages sites (else 403)."""

    model = Site
    action = "site.manage"

    def get_object(self) -> Site:
        site = super().get_object()
        if not is_north_american(site):
            raise Http404("commissioning is for North-American sites")
        return site

    def tab_url(self) -> str:
        return reverse("sites:commissioning", args=[self.object.pk])

    def dialog_context(self, action_url: str, **kwargs: Any) -> dict[str, Any]:
        """The context of a form in the tab's dialog (fleet/sites/commissioning_*.html)."""
        return {
            "action_url": action_url,
            "cancel_url": self.tab_url(),
            "dialog_target": DIALOG_TARGET,
            **kwargs,
        }

    def back_to_tab(self) -> HttpResponse:
        """After a change: the tab again (a whole page, also when the dialog posted by htmx)."""
        if getattr(self.request, "htmx", False):
            return HttpResponseClientRedirect(self.tab_url())
        return HttpResponseRedirect(self.tab_url())


class ReportMixin(SiteCommissioningMixin):
    """One report of the site (`report` in the URL), within the user's scope (else 404)."""

    report: CommissioningReport

    def get_object(self) -> Site:
        site = super().get_object()
        reports: QuerySet = CommissioningReport.objects.visible_to(self.request.user)
        self.report = get_object_or_404(reports.filter(site=site), pk=self.kwargs["report_pk"])
        return site

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(site=self.object, report=self.report, **kwargs)


class CommissioningCreateView(SiteCommissioningMixin, HtmxPartialMixin, FormView):
    """Create (figures 6-26, 6-27): name, optional email, and the devices to include."""

    form_class = CommissioningReportForm
    template_name = "fleet/sites/commissioning_create.html"
    partial_name = "dialog"
    htmx_target = DIALOG_TARGET

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "site": self.object, "user": self.request.user}

    def form_valid(self, form: CommissioningReportForm) -> HttpResponse:
        gateway_ids, inverter_ids = form.device_ids()
        try:
            report = services.create_report(
                self.object,
                acting_user=self.request.user,
                name=form.cleaned_data["name"],
                email=form.cleaned_data["email"],
                gateways=Gateway.objects.filter(pk__in=gateway_ids),
                inverters=Inverter.objects.filter(pk__in=inverter_ids),
            )
        except ValidationError as error:
            form.add_error(None, error)
            return self.form_invalid(form)
        messages.success(
            self.request,
            _("The commissioning report “%(name)s” is being generated.") % {"name": report.name},
        )
        return self.back_to_tab()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        url = reverse("sites:commissioning_create", args=[self.object.pk])
        return super().get_context_data(**self.dialog_context(url, site=self.object, **kwargs))


class ReportConfirmView(ReportMixin, ObjectConfirmView):
    """Update and Delete: "Are you sure?" on GET, the service on POST."""

    htmx_target = DIALOG_TARGET

    def get_success_url(self) -> str:
        return self.tab_url()

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
            return HttpResponseRedirect(self.tab_url())

    def get_success_message(self) -> str:
        return self.success_message % {"object": self.report.name}


class CommissioningUpdateView(ReportConfirmView):
    """Update: build the report again with the devices' current data."""

    template_name = "fleet/sites/commissioning_update.html"
    success_message = gettext_lazy(
        "The commissioning report “%(object)s” is being generated again."
    )

    def perform(self, obj: Site) -> None:
        services.update_report(self.report, acting_user=self.request.user)


class CommissioningDeleteView(ReportConfirmView):
    template_name = "fleet/sites/commissioning_delete.html"
    success_message = gettext_lazy("The commissioning report “%(object)s” has been deleted.")

    def perform(self, obj: Site) -> None:
        services.delete_report(self.report, acting_user=self.request.user)


class CommissioningSendView(ReportMixin, HtmxPartialMixin, FormView):
    """Send Email: the finished PDF to the address given (the report's address at first)."""

    form_class = SendReportForm
    template_name = "fleet/sites/commissioning_send.html"
    partial_name = "dialog"
    htmx_target = DIALOG_TARGET

    def get_initial(self) -> dict[str, Any]:
        return {"email": self.report.email}

    def form_valid(self, form: SendReportForm) -> HttpResponse:
        try:
            services.send_report(
                self.report, acting_user=self.request.user, email=form.cleaned_data["email"]
            )
        except ValidationError as error:
            form.add_error(None, error)
            return self.form_invalid(form)
        messages.success(
            self.request,
            _("The commissioning report “%(name)s” is being sent to %(email)s.")
            % {"name": self.report.name, "email": form.cleaned_data["email"]},
        )
        return self.back_to_tab()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        url = reverse("sites:commissioning_send", args=[self.object.pk, self.report.pk])
        return super().get_context_data(**self.dialog_context(url, **kwargs))


class CommissioningPdfView(ReportMixin, View):
    """The finished PDF, shown in the browser."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        report = self.report
        if not report.has_pdf:
            raise Http404("the report has no PDF yet")
        filename = pdf_filename(report)
        prefix = settings.MEDIA_X_ACCEL_REDIRECT_PREFIX
        if prefix:
            response = HttpResponse(content_type="application/pdf")
            response["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{quote(report.pdf.name)}"
            response["Content-Disposition"] = f'inline; filename="{filename}"'
        else:
            try:
                handle = report.pdf.storage.open(report.pdf.name, "rb")
            except FileNotFoundError:
                raise Http404 from None
            response = FileResponse(handle, content_type="application/pdf", filename=filename)
        # The browser's PDF viewer is an embedded plugin page: the portal's policy
        # (object-src 'none', no inline style) would block it, so the PDF carries its own.
        response["Content-Security-Policy"] = "frame-ancestors 'none'"
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-cache"
        response["Vary"] = "Cookie"
        return response


def _report_path(action: str, view: type[View]) -> Any:
    """`…/commissioning/<report>/<action>/`, named `commissioning_<action>`."""
    return path(
        f"<int:pk>/commissioning/<int:report_pk>/{action}/",
        view.as_view(),
        name=f"commissioning_{action}",
    )


urlpatterns = [
    path("<int:pk>/commissioning/", CommissioningTabView.as_view(), name="commissioning"),
    path(
        "<int:pk>/commissioning/create/",
        CommissioningCreateView.as_view(),
        name="commissioning_create",
    ),
    _report_path("update", CommissioningUpdateView),
    _report_path("delete", CommissioningDeleteView),
    _report_path("send", CommissioningSendView),
    _report_path("pdf", CommissioningPdfView),
]
