"""Firmware release (guide §7.1): the catalogue of gateway and inverter firmware, its downloads
and, for platform administrators, the upload of a new release."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView, View

from accounts.permissions import can
from accounts.views.generic import ActionRequiredMixin, ObjectListView
from ui.dialogs import dialog_done, render_dialog
from upgrades import release_services
from upgrades.models import DeviceKind, FirmwareRelease, ReleaseModel
from upgrades.release_forms import KIND_PARAMETER, ReleaseFilter, ReleaseUploadForm, requested_kind
from upgrades.release_tables import GatewayReleaseTable, InverterReleaseTable, ReleaseTable

KIND_TABS = (
    (DeviceKind.GATEWAY, gettext_lazy("Gateway firmware")),
    (DeviceKind.INVERTER, gettext_lazy("Inverter firmware")),
)


def releases_url(kind: str = DeviceKind.GATEWAY) -> str:
    return f"{reverse('upgrades:releases')}?{KIND_PARAMETER}={kind}"


def kind_tabs(request: HttpRequest, kind: str) -> list[dict[str, Any]]:
    """The "Gateway firmware | Inverter firmware" tabs of an Upgrade page: this page's URL
    with the other kind (templates/upgrades/_tabs.html)."""
    return [
        {
            "kind": value,
            "label": label,
            "url": f"{request.path}?{KIND_PARAMETER}={value}",
            "active": value == kind,
        }
        for value, label in KIND_TABS
    ]


class ReleaseListView(ObjectListView):
    action = "firmware.view"
    model = ReleaseModel
    filterset_class = ReleaseFilter
    template_name = "upgrades/releases/list.html"
    htmx_target = "release-table"
    paginate_by = 20
    export_filename = "firmware"
    empty_icon = "cpu"
    empty_text = gettext_lazy("No firmware has been released for these devices yet.")
    empty_filtered_text = gettext_lazy("No firmware matches these filters.")
    reset_label = gettext_lazy("Show all firmware")
    create_action = "firmware.upload"
    create_label = gettext_lazy("Upload")

    @property
    def kind(self) -> str:
        return requested_kind(self.request.GET)

    @property
    def table_class(self) -> type[ReleaseTable]:
        """Each tab has its own columns (and so its own column choice)."""
        if self.kind == DeviceKind.INVERTER:
            return InverterReleaseTable
        return GatewayReleaseTable

    def get_create_url(self) -> str:
        return f"{reverse('upgrades:release_upload')}?{KIND_PARAMETER}={self.kind}"

    def get_queryset(self) -> QuerySet:
        rows = super().get_queryset().filter(kind=self.kind).select_related("release")
        return release_services.with_newest(rows)

    def is_filtered(self) -> bool:
        params = self.request.GET
        return any(params.get(name) for name in ("model", "version")) or bool(self.search_query())

    def get_table(self, paginate: bool = True) -> ReleaseTable:
        table = super().get_table(paginate)
        table.kind = self.kind
        table.can_download = can(self.request.user, "firmware.download")
        if paginate and table.page:
            rows = [row.record for row in table.page.object_list]
        else:  # a download: every row it holds
            rows = table.data.data
        table.running = release_services.devices_running(self.request.user, rows)
        return table

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kind = self.kind
        kwargs.setdefault("kind", kind)
        kwargs.setdefault("kind_tabs", kind_tabs(self.request, kind))
        kwargs.setdefault("upgrade_section", "releases")
        # The Reset link stays on the tab.
        kwargs.setdefault("list_url", f"{self.request.path}?{KIND_PARAMETER}={kind}")
        return super().get_context_data(**kwargs)


class ReleaseDownloadView(ActionRequiredMixin, View):
    """The stored image, named as it was uploaded, with its SHA-256 (ETag and
    X-Checksum-SHA256) so that a download can be checked."""

    action = "firmware.download"

    def get_object(self) -> FirmwareRelease:
        # The catalogue is the platform's, not a tenant's: who may not read it is refused
        # (403) whatever the release, rather than told it does not exist.
        if not can(self.request.user, "firmware.view"):
            raise PermissionDenied
        return get_object_or_404(
            FirmwareRelease.objects.visible_to(self.request.user), pk=self.kwargs["pk"]
        )

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        release: FirmwareRelease = self.object
        etag = f'"{release.sha256}"'
        if etag in request.headers.get("If-None-Match", ""):
            response: HttpResponse = HttpResponseNotModified()
        elif settings.MEDIA_X_ACCEL_REDIRECT_PREFIX:
            response = HttpResponse(content_type="application/octet-stream")
            prefix = settings.MEDIA_X_ACCEL_REDIRECT_PREFIX.rstrip("/")
            response["X-Accel-Redirect"] = f"{prefix}/{release.file.name}"
            response["Content-Length"] = str(release.size)
        else:
            try:
                handle = release.file.storage.open(release.file.name, "rb")
            except FileNotFoundError:
                raise Http404 from None
            response = FileResponse(
                handle,
                as_attachment=True,
                filename=release.file_name,
                content_type="application/octet-stream",
            )
        if response.status_code == 200:
            response["Content-Disposition"] = content_disposition_header(True, release.file_name)
        response["ETag"] = etag
        response["X-Checksum-SHA256"] = release.sha256
        response["Cache-Control"] = "private, max-age=86400"
        response["X-Content-Type-Options"] = "nosniff"
        response["Vary"] = "Cookie"
        return response


class ReleaseUploadView(ActionRequiredMixin, TemplateView):
    """Upload (platform administrators): a dialog whose form posts as a whole page, so that a
    large image goes up with the browser's own progress and any answer (also "too large")
    shows."""

    action = "firmware.upload"
    template_name = "upgrades/releases/upload.html"

    def back_url(self) -> str:
        kind = self.request.POST.get("kind") or self.request.GET.get(KIND_PARAMETER)
        return releases_url(requested_kind({KIND_PARAMETER: kind}))

    def show(self, form: ReleaseUploadForm) -> HttpResponse:
        context = {
            "form": form,
            "next_url": self.back_url(),
            "max_bytes": settings.FIRMWARE_MAX_BYTES,
        }
        return render_dialog(self.request, self.template_name, context)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        kind = requested_kind(request.GET)
        return self.show(ReleaseUploadForm(initial={"kind": kind}))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ReleaseUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                release = release_services.create_release(request.user, **form.service_arguments())
            except ValidationError as error:
                form.add_service_error(error)
            else:
                messages.success(
                    request,
                    _("Firmware %(release)s has been released for %(models)s.")
                    % {
                        "release": str(release),
                        "models": ", ".join(form.service_arguments()["models"]),
                    },
                )
                return dialog_done(request, releases_url(release.kind))
        return self.show(form)
