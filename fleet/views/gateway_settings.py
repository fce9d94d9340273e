"""Gateway → Settings (guide §6.3.2.2): Protocol (with Intellisense), Forwarding settings,
Forwarding serial port, TCP forwarding, Upload interval, Baud rate and Reset.

Every change goes through the remote-operations engine (maintenance.remote: configure_gateway,
scan_bus, reset_gateway, read_gateway_settings); the panel shows the operation's state and
refreshes it by polling until it is done, failed or expired. The values a panel shows are the
settings the gateway itself reported in its answer to the last settings read or change
(`RemoteOperation.after["settings"]`), never the values last sent; "Read from gateway" asks
for them again. Administrators and O&M engineers only (`device.operate`, the tab's action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView, View

from accounts.views.generic import ObjectMixin
from fleet import gateway_forms as forms
from fleet.views.gateway_detail import GatewayTabView
from gateways.models import DEFAULT_UPLOAD_INTERVAL_S, Gateway
from maintenance import remote
from maintenance.models import OperationKind, OperationState, RemoteOperation
from ui.dialogs import dialog_done, render_dialog
from ui.query import positive_int

PANEL_TARGET = "gateway-settings-panel"
FACTORY_SETTINGS = forms.gs.default_config([], DEFAULT_UPLOAD_INTERVAL_S)
POLL_INTERVAL = "1s"


@dataclass(frozen=True)
class Panel:
    """One entry of the Settings menu (figure 6-35)."""

    key: str  # the query string's ?panel= and, for setting panels, the settings key
    label: str
    form_class: type[forms.SettingsPanelForm] | None = None
    icon: str = ""

    @property
    def settings_key(self) -> str:
        return "protocols" if self.key == "protocol" else self.key


PANELS = (
    Panel("protocol", gettext_lazy("Protocol"), None, "diagram-2"),
    Panel("forwarding", gettext_lazy("Forwarding settings"), forms.ForwardingForm, "shuffle"),
    Panel("serial_port", gettext_lazy("Forwarding serial port"), forms.SerialPortForm, "usb-plug"),
    Panel("tcp_forwarding", gettext_lazy("TCP forwarding"), forms.TcpForwardingForm, "hdd-network"),
    Panel(
        "upload_interval_s",
        gettext_lazy("Upload interval"),
        forms.UploadIntervalForm,
        "clock-history",
    ),
    Panel("baud_rate", gettext_lazy("Baud rate"), forms.BaudRateForm, "speedometer2"),
    Panel("reset", gettext_lazy("Reset"), None, "arrow-counterclockwise"),
)
PANELS_BY_KEY = {p.key: p for p in PANELS}


def panel_of(key: str | None) -> Panel:
    return PANELS_BY_KEY.get(key or "", PANELS[0])


# --- what the gateway reported, and the operations of a panel -------------------------------------


@dataclass(frozen=True)
class Reported:
    """The gateway's settings as it last reported them, and by which operation."""

    settings: dict
    operation: RemoteOperation


def reported_settings(gateway: Gateway) -> Reported | None:
    """The settings from the gateway's newest answer to a settings read or change."""
    operation = (
        RemoteOperation.objects.filter(
            gateway=gateway,
            kind__in=(OperationKind.GATEWAY_CONFIG, OperationKind.GATEWAY_READ),
            state=OperationState.SUCCEEDED,
            after__has_key="settings",
        )
        .order_by("-finished_at", "-pk")
        .first()
    )
    if operation is None or not isinstance(operation.after.get("settings"), dict):
        return None
    return Reported(operation.after["settings"], operation)


def gateway_operations(gateway: Gateway) -> QuerySet:
    return RemoteOperation.objects.filter(gateway=gateway, inverter__isnull=True).order_by(
        "-created_at", "-pk"
    )


def panel_operation(gateway: Gateway, panel: Panel) -> RemoteOperation | None:
    """The newest operation of this panel: a change of its setting, or the reset."""
    operations = gateway_operations(gateway)
    if panel.key == "reset":
        return operations.filter(kind=OperationKind.GATEWAY_RESET).first()
    return operations.filter(
        kind=OperationKind.GATEWAY_CONFIG, request__changes__has_key=panel.settings_key
    ).first()


def is_overdue(operation: RemoteOperation) -> bool:
    """Still queued or sent after its deadline: it has expired, whether or not the sweep has
    recorded it yet, so the page stops waiting for it."""
    return operation.is_pending and operation.deadline <= timezone.now()


def shown(operation: RemoteOperation | None) -> RemoteOperation | None:
    """`operation` ready for fleet/gateways/_operation.html: `overdue` (no more polling) and
    `polls` (still worth asking again)."""
    if operation is not None:
        operation.overdue = is_overdue(operation)
        operation.polls = operation.is_pending and not operation.overdue
    return operation


# --- the tab ------------------------------------------------------------------------------------


class GatewaySettingsView(GatewayTabView):
    """The Settings tab with one panel; htmx swaps only the panel when the menu is used."""

    tab = "settings"
    template_name = "fleet/gateways/settings.html"
    panel_template = "fleet/gateways/_settings_panel.html"

    def get_template_names(self) -> list[str]:
        if self.panel_partial():
            return [self.panel_template]
        return super().get_template_names()

    def panel_partial(self) -> bool:
        htmx = getattr(self.request, "htmx", None)
        return bool(htmx) and htmx.target == PANEL_TARGET

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        panel = panel_of(self.request.GET.get("panel"))
        context.update(panel_context(self.request, self.object, panel, **kwargs))
        return context


def panel_context(
    request: HttpRequest, gateway: Gateway, panel: Panel, **given: Any
) -> dict[str, Any]:
    """What the panel template needs: the menu, the reported settings, the form (bound with
    errors when given), the panel's newest operation."""
    # The operations before the settings: one that ends in between then shows as running,
    # polls once more and reloads the panel, instead of hiding the values it brought.
    read_operation = shown(
        gateway_operations(gateway).filter(kind=OperationKind.GATEWAY_READ).first()
    )
    operation = shown(given.get("operation") or panel_operation(gateway, panel))
    scan = gateway_operations(gateway).filter(kind=OperationKind.SCAN).first()
    reported = reported_settings(gateway)
    # Until the gateway has reported, the forms start from a factory-new kit's settings (and
    # the panel says so).
    current = reported.settings if reported else FACTORY_SETTINGS
    settings_url = reverse("gateways:settings", args=[gateway.pk])
    context: dict[str, Any] = {
        "gateway": gateway,
        "panel": panel,
        "panels": [
            {"panel": p, "url": f"{settings_url}?panel={p.key}", "active": p.key == panel.key}
            for p in PANELS
        ],
        "panel_url": f"{settings_url}?panel={panel.key}",
        "panel_target": PANEL_TARGET,
        "reported": reported,
        "read_operation": read_operation,
        "operation": operation,
        "baud_rates": forms.gs.BAUD_RATES,
    }
    if panel.form_class is not None:
        context["form"] = given.get("form") or panel.form_class(
            initial=panel.form_class.initial_from(current)
        )
        context["submit_url"] = reverse("gateways:settings_submit", args=[gateway.pk, panel.key])
    elif panel.key == "protocol":
        context.update(
            formset=given.get("formset") or protocol_formset(request, current, scan),
            scan_form=given.get("scan_form") or forms.ScanForm(),
            scan_operation=shown(given.get("scan_operation") or scan),
            submit_url=reverse("gateways:settings_submit", args=[gateway.pk, panel.key]),
        )
    return context


def protocol_formset(
    request: HttpRequest, current: dict, scan: RemoteOperation | None
) -> forms.BaseProtocolFormSet:
    """The protocol entries the gateway reported, or those Intellisense found (?use_scan=1)."""
    initial = forms.protocol_initial(current)
    if request.GET.get("use_scan") and scan is not None and scan.state == OperationState.SUCCEEDED:
        found = [
            {"protocol": d.get("model"), "address": d.get("address")}
            for d in scan.result.get("devices", [])
            if isinstance(d, dict) and d.get("model")
        ]
        if found:
            initial = found
    return forms.ProtocolFormSet(initial=initial, prefix="protocol")


# --- actions ------------------------------------------------------------------------------------


class GatewayOperateMixin(ObjectMixin):
    """A POST that sends something to the gateway: the gateway within scope (404), and
    `device.operate` (403)."""

    model = Gateway
    action = "device.operate"

    def panel_response(self, panel: Panel, status: int = 200, **given: Any) -> HttpResponse:
        """The panel again (htmx), or the Settings page on this panel."""
        htmx = getattr(self.request, "htmx", None)
        redisplay = any(k in given for k in ("form", "formset", "scan_form"))
        if not htmx:
            if not redisplay:
                url = reverse("gateways:settings", args=[self.object.pk])
                return HttpResponseRedirect(f"{url}?panel={panel.key}")
            # No JavaScript: the whole tab with the panel's form (its errors, an added entry).
            view = GatewaySettingsView()
            view.setup(self.request, pk=self.object.pk)
            view.object = self.object
            context = view.get_context_data()
            context.update(panel_context(self.request, self.object, panel, **given))
            return render(self.request, view.template_name, context, status=status)
        context = panel_context(self.request, self.object, panel, **given)
        return render(self.request, "fleet/gateways/_settings_panel.html", context)


class GatewaySettingsSubmitView(GatewayOperateMixin, View):
    """Submit one panel: its form's changes go to configure_gateway with its Restart Flag.
    The Protocol panel also adds an empty entry ("Add Protocol") without sending anything."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        panel = PANELS_BY_KEY.get(kwargs["panel"])
        if panel is None or panel.key == "reset":
            return HttpResponse(status=404)
        if panel.key == "protocol":
            return self.submit_protocols(panel)
        form = panel.form_class(request.POST)
        if not form.is_valid():
            return self.panel_response(panel, status=400, form=form)
        return self.configure(panel, form.changes(), form.restart(), form=form)

    def submit_protocols(self, panel: Panel) -> HttpResponse:
        data = self.request.POST
        formset = forms.ProtocolFormSet(data, prefix="protocol")
        if "add" in data:
            grown = data.copy()
            total = positive_int(data.get("protocol-TOTAL_FORMS"), 0)
            if total < forms.MAX_PROTOCOL_ENTRIES:
                grown["protocol-TOTAL_FORMS"] = str(total + 1)
            formset = forms.ProtocolFormSet(grown, prefix="protocol")
            return self.panel_response(panel, formset=formset)
        if not formset.is_valid():
            return self.panel_response(panel, status=400, formset=formset)
        return self.configure(panel, formset.changes(), True, formset=formset)

    def configure(self, panel: Panel, changes: dict, restart: bool, **given: Any) -> HttpResponse:
        try:
            operation = remote.configure_gateway(
                self.object, changes, restart=restart, acting_user=self.request.user
            )
        except ValidationError as error:
            form = given.get("form") or given.get("formset")
            message = getattr(error, "message", None) or " ".join(error.messages)
            if form is not None:
                _add_error(form, message)
            return self.panel_response(panel, status=400, **given)
        return self.panel_response(panel, operation=operation)


def _add_error(form: Any, message: str) -> None:
    """A refusal of the engine on the form (formsets keep it as a non-form error)."""
    if hasattr(form, "add_error"):
        form.add_error(None, message)
    else:
        form._non_form_errors = form.error_class([*form.non_form_errors(), message])


class GatewayScanView(GatewayOperateMixin, View):
    """Intellisense: scan the bus for devices (maintenance.remote.scan_bus)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        panel = PANELS_BY_KEY["protocol"]
        scan_form = forms.ScanForm(request.POST)
        if not scan_form.is_valid():
            return self.panel_response(panel, status=400, scan_form=scan_form)
        try:
            operation = remote.scan_bus(
                self.object,
                scan_form.cleaned_data["first"],
                scan_form.cleaned_data["last"],
                acting_user=request.user,
            )
        except ValidationError as error:
            scan_form.add_error(None, getattr(error, "message", None) or " ".join(error.messages))
            return self.panel_response(panel, status=400, scan_form=scan_form)
        return self.panel_response(panel, scan_operation=operation)


class GatewayReadSettingsView(GatewayOperateMixin, View):
    """Read from gateway: ask for the settings it runs with (no change, no restart)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        panel = panel_of(request.POST.get("panel"))
        remote.read_gateway_settings(self.object, acting_user=request.user)
        return self.panel_response(panel)


class GatewayResetView(GatewayOperateMixin, TemplateView):
    """Reset (figure 6-42): a confirmation, then the gateway restarts (10–20 s offline)."""

    template_name = "fleet/gateways/reset.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return render_dialog(request, self.template_name, {"gateway": self.object})

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        remote.reset_gateway(self.object, acting_user=request.user)
        url = reverse("gateways:settings", args=[self.object.pk])
        return dialog_done(request, f"{url}?panel=reset")


class GatewayOperationStateView(GatewayOperateMixin, TemplateView):
    """One operation's state, polled by the panel while it runs. When the poll sees it
    finished, the answer tells the panel to reload (`gateway-settings-changed`), so the
    values the gateway now reports replace the old ones."""

    template_name = "fleet/gateways/_operation.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        operation = get_object_or_404(
            RemoteOperation.objects.visible_to(request.user).filter(gateway=self.object),
            pk=kwargs["operation_pk"],
        )
        shown(operation)
        response = render(
            request, self.template_name, {"operation": operation, "gateway": self.object}
        )
        if not operation.polls:
            response["HX-Trigger"] = "gateway-settings-changed"
        return response


urlpatterns = [
    path("<int:pk>/settings/", GatewaySettingsView.as_view(), name="settings"),
    path(
        "<int:pk>/settings/<slug:panel>/submit/",
        GatewaySettingsSubmitView.as_view(),
        name="settings_submit",
    ),
    path("<int:pk>/settings/read/", GatewayReadSettingsView.as_view(), name="settings_read"),
    path("<int:pk>/settings/scan/", GatewayScanView.as_view(), name="scan"),
    path("<int:pk>/settings/reset/", GatewayResetView.as_view(), name="reset"),
    path(
        "<int:pk>/operations/<int:operation_pk>/",
        GatewayOperationStateView.as_view(),
        name="operation_state",
    ),
]
