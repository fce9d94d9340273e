"""Inverter → Mode (guide §6.4.2.8, Table 6-3) and Intelligent Load (§6.4.2.9, Table 6-4):
the modes in the guide's order with the one the inverter runs marked, and a Setting dialog per
mode with its settings from the register map (and for TOU the slot schedule).

The current mode is the device's: opening the tab (staff only) reads the mode register and the
modes' settings through the remote-operations engine (`maintenance.remote.read_registers`);
the block shows that read's state and fetches itself every second until it has finished, and
meanwhile the last value known, with its time. A Setting dialog sends `set_mode` or
`set_smart_load`; its answer is the operation's live state (maintenance's state block), and the
current-mode block reads again when the operation has finished. Owners see the current mode
read-only: no Read, no Setting, and those URLs answer 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView

from accounts.permissions import can
from accounts.views.generic import ObjectMixin
from devices.registermap import RegisterMap, UnknownModelError
from fleet import tou
from fleet.inverter_control_forms import schedule_initial, settings_form, tou_schedule_formset
from fleet.views.inverter_base import InverterTabView
from inverters.models import Inverter
from maintenance.models import RemoteOperation
from maintenance.parameter_views import ValueCell, known_values
from maintenance.remote import OperationRefused, read_registers, set_mode, set_smart_load
from ui.views import htmx_partial

CURRENT_TEMPLATE = "fleet/inverters/_mode_control.html"
SETTING_TEMPLATE = "fleet/inverters/mode_setting.html"
CURRENT_TARGET = "control-current"
DIALOG_TARGET = "control-dialog"


@dataclass(frozen=True)
class Control:
    """One enum register the tab switches, with the guide's modes and what sends them."""

    register: str
    tab: str
    order: tuple[str, ...]
    descriptions: dict[str, Promise]
    send: Callable[..., RemoteOperation]
    noun: Promise
    # The input register the inverter reports the running value in, if any.
    reported: str = ""

    def url(self, name: str) -> str:
        return f"inverters:{self.tab}_{name}"


MODE = Control(
    register="work_mode",
    tab="mode",
    order=(
        "pv_mode",
        "self_consumption",
        "full_feed_in",
        "emergency_charging",
        "forced_off_grid",
        "tou",
    ),
    descriptions={
        "pv_mode": gettext_lazy(
            "PV generation connects directly to the grid; load and energy storage are disabled."
        ),
        "self_consumption": gettext_lazy(
            "PV prioritizes loads, then charges the battery, then feeds the grid. Battery "
            "discharges to loads when PV is low, but not to the grid; grid backs up if needed."
        ),
        "full_feed_in": gettext_lazy(
            "PV prioritizes loads, then feeds the grid, then charges the battery. Battery "
            "discharges to maximize grid feed-in when PV is insufficient."
        ),
        "emergency_charging": gettext_lazy(
            "Charges the battery fully and quickly in bad weather, then holds charge until "
            "off-grid mode or another mode is selected."
        ),
        "forced_off_grid": gettext_lazy(
            "Shifts to off-grid mode with grid backup for testing or runtime estimation. "
            "Requires high battery charge and low loads; allows early return to on-grid mode."
        ),
        "tou": gettext_lazy(
            "Sets time-based scenarios with base modes, weekly categories, seasonal rules, and "
            "holiday strategies."
        ),
    },
    send=set_mode,
    noun=gettext_lazy("operating mode"),
    reported="work_mode_active",
)

LOAD = Control(
    register="smart_load_mode",
    tab="load",
    order=("off", "manual", "battery_energy", "time_control", "surplus_pv"),
    descriptions={
        "off": gettext_lazy("Disables smart load switch control."),
        "manual": gettext_lazy(
            "Enables manual ON/OFF control for grid-tied and off-grid modes (default)."
        ),
        "battery_energy": gettext_lazy(
            "Controls load operation times based on battery charge levels with hysteresis, for "
            "both grid-tied and off-grid modes."
        ),
        "time_control": gettext_lazy(
            "Sets independent start/stop times for smart loads in standalone operation."
        ),
        "surplus_pv": gettext_lazy(
            "In grid-tied mode, surplus PV power charges batteries before feeding the grid, "
            "managing switches based on feed-in and load consumption (anti-backflow disabled)."
        ),
    },
    send=set_smart_load,
    noun=gettext_lazy("intelligent-load mode"),
)


def register_map(inverter: Inverter) -> RegisterMap | None:
    try:
        return RegisterMap.for_model(inverter.model)
    except UnknownModelError:
        return None


def control_keys(rm: RegisterMap, control: Control) -> list[str]:
    """The registers one read brings: the mode, every mode's settings, the TOU schedule."""
    keys = [control.register]
    for option in rm.point(control.register).enum or ():
        for key in rm.option_parameters(control.register, option.key) or ():
            if key not in keys:
                keys.append(key)
    if control is MODE and tou.has_schedule(rm):
        keys += [key for key in tou.schedule_keys(rm) if key not in keys]
    return keys


def known_settings(cells: dict[str, ValueCell]) -> dict[str, Any]:
    """The values last read from (or read back after a write to) the device."""
    return {key: cell.value for key, cell in cells.items() if cell.source is not None}


def reported_value(inverter: Inverter, control: Control) -> tuple[str | None, Any]:
    """(value, time) of the running mode in the inverter's latest upload, if it reports it."""
    if not control.reported:
        return None, None
    try:
        latest = inverter.latest
    except Inverter.latest.RelatedObjectDoesNotExist:
        return None, None
    value = latest.display_values(inverter.model).get(control.reported)
    return (value, latest.ts) if value is not None else (None, None)


def flag_labels(rm: RegisterMap, key: str) -> list[tuple[str, str]]:
    """(key, short label) of every flag of a bits register: Mon…Sun, Jan…Dec."""
    return [(flag.key, flag.label[:3]) for flag in rm.point(key).flags or ()]


def control_context(request: HttpRequest, inverter: Inverter, control: Control) -> dict[str, Any]:
    """Everything the current-mode block shows: the modes, the one marked, where it comes
    from (the device's answer, a read still running, the latest upload), the schedule."""
    context: dict[str, Any] = {
        "inverter": inverter,
        "control": control,
        "current_url": reverse(control.url("current"), args=[inverter.pk]),
        "read_url": reverse(control.url("read"), args=[inverter.pk]),
        "can_operate": can(request.user, "device.operate", inverter),
        "connected": inverter.gateway_id is not None,
        "current_target": CURRENT_TARGET,
    }
    rm = register_map(inverter)
    if rm is None or control.register not in rm.points:
        context["model_error"] = _("There is no register map for the model %(model)s.") % {
            "model": inverter.model
        }
        return context
    cells = known_values(inverter.pk, control_keys(rm, control))
    cell = cells[control.register]
    known = known_settings(cells)
    current = cell.value if cell.source is not None else None
    reported, reported_at = reported_value(inverter, control)
    options = []
    by_key = {option.key: option for option in rm.point(control.register).enum or ()}
    for key in control.order + tuple(k for k in by_key if k not in control.order):
        option = by_key.get(key)
        if option is None:
            continue
        parameters = rm.option_parameters(control.register, key) or ()
        options.append(
            {
                "key": key,
                "label": option.label,
                "description": control.descriptions.get(key, ""),
                "current": key == current,
                "reported": current is None and key == reported,
                "settings": [
                    (rm.point(p), cells[p].text if p in known else "") for p in parameters
                ],
                "setting_url": reverse(control.url("set"), args=[inverter.pk, key]),
            }
        )
    context.update(
        cell=cell,
        current=by_key.get(current),
        reported=by_key.get(reported),
        reported_at=reported_at,
        options=options,
        polls=cell.operation is not None and cell.operation.is_pending,
    )
    if control is MODE and tou.has_schedule(rm):
        context["schedule"] = tou.slots_from_values(rm, known)
        context["schedule_known"] = any(slot.known for slot in context["schedule"])
        context["weekday_labels"] = flag_labels(rm, tou.slot_key(1, "weekdays"))
        context["month_labels"] = flag_labels(rm, tou.slot_key(1, "months"))
    return context


class ControlTabMixin:
    control: Control = MODE

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(control_context(self.request, self.object, self.control))
        # Opening the tab reads the device (staff only): the block asks for it once loaded.
        context["read_on_load"] = context["can_operate"] and not context.get("polls")
        return context


class ModeTabView(ControlTabMixin, InverterTabView):
    tab = "mode"
    control = MODE
    template_name = "fleet/inverters/mode.html"


class LoadTabView(ControlTabMixin, InverterTabView):
    tab = "load"
    control = LOAD
    template_name = "fleet/inverters/load.html"


class InverterFragmentView(ObjectMixin, TemplateView):
    """A piece of an inverter tab, on an inverter in the user's scope (else 404)."""

    model = Inverter
    control: Control = MODE

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "gateway")

    def tab_url(self) -> str:
        return reverse(f"inverters:{self.control.tab}", args=[self.object.pk])


class ControlCurrentView(InverterFragmentView):
    """The current-mode block alone: polled while the read runs, fetched again when an
    operation of the page has finished."""

    action = "device.view"
    template_name = CURRENT_TEMPLATE

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(control_context(self.request, self.object, self.control))
        return context


class ControlReadView(InverterFragmentView):
    """Read the mode and its settings from the device (one operation; none while one runs)."""

    action = "device.operate"
    http_method_names = ["post"]
    template_name = CURRENT_TEMPLATE

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        inverter = self.object
        context = control_context(request, inverter, self.control)
        if "model_error" not in context and not context["polls"]:
            try:
                read_registers(
                    inverter,
                    control_keys(register_map(inverter), self.control),
                    acting_user=request.user,
                )
            except OperationRefused as refused:
                context["read_error"] = refused.message
            else:
                context = control_context(request, inverter, self.control)
        if not request.htmx:
            if context.get("read_error"):
                messages.error(request, context["read_error"])
            return HttpResponseRedirect(self.tab_url())
        return self.render_to_response(context)


class ControlSettingView(InverterFragmentView):
    """The Setting dialog of one mode: its settings (and the TOU schedule); Confirm sends the
    mode with them. A refused request says why on the form and sends nothing."""

    action = "device.operate"
    template_name = SETTING_TEMPLATE

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.partial = ""
        return super().dispatch(request, *args, **kwargs)

    def get_template_names(self) -> list[str]:
        if htmx_partial(self.request, DIALOG_TARGET):
            return [f"{SETTING_TEMPLATE}#{self.partial or 'dialog'}"]
        return [SETTING_TEMPLATE]

    def setup_forms(self, data: Any = None) -> None:
        inverter = self.object
        rm = register_map(inverter)
        if rm is None or self.control.register not in rm.points:
            raise Http404(
                _("There is no register map for the model %(model)s.") % {"model": inverter.model}
            )
        self.option = rm.option(self.control.register, self.kwargs["option"])
        if self.option is None or self.option.key != self.kwargs["option"]:
            raise Http404(_("This inverter has no such mode."))
        cells = known_values(inverter.pk, control_keys(rm, self.control))
        known = known_settings(cells)
        parameters = rm.option_parameters(self.control.register, self.option.key) or ()
        points = [rm.point(key) for key in parameters]
        self.form = settings_form(points, data, current=known, prefix="settings")
        self.formset = None
        if self.control is MODE and self.option.key == "tou" and tou.has_schedule(rm):
            self.formset = tou_schedule_formset(
                rm, data, initial=schedule_initial(tou.slots_from_values(rm, known))
            )
        self.current = cells[self.control.register]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.setup_forms()
        return self.render_to_response(self.get_context_data())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.setup_forms(request.POST)
        valid = self.form.is_valid()
        valid = (self.formset is None or self.formset.is_valid()) and valid
        if valid:
            extra: dict[str, Any] = {}
            if self.formset is not None:
                extra["schedule"] = self.formset.schedule()
            try:
                operation = self.control.send(
                    self.object,
                    self.option.key,
                    self.form.register_values(),
                    acting_user=request.user,
                    **extra,
                )
            except OperationRefused as refused:
                if self.formset is not None:
                    self.formset.refuse(refused)
                self.form.refuse(refused)
            else:
                return self.sent(operation)
        # Like the Write dialog: the form with its reasons (htmx swaps 200 answers only).
        return self.render_to_response(self.get_context_data())

    def sent(self, operation: RemoteOperation) -> HttpResponse:
        if not self.request.htmx:
            messages.success(
                self.request,
                _("Sent: %(summary)s. The tab shows the mode read from the inverter.")
                % {"summary": operation.summary},
            )
            return HttpResponseRedirect(self.tab_url())
        self.partial = "sent"
        return self.render_to_response(self.get_context_data(operation=operation))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        url = reverse(self.control.url("set"), args=[self.object.pk, self.kwargs["option"]])
        return super().get_context_data(
            inverter=self.object,
            control=self.control,
            option=self.option,
            description=self.control.descriptions.get(self.option.key, ""),
            form=self.form,
            formset=self.formset,
            current=self.current,
            setting_url=url,
            tab_url=self.tab_url(),
            dialog_target=DIALOG_TARGET,
            **kwargs,
        )


def _views(control: Control) -> list:
    tab = ModeTabView if control is MODE else LoadTabView
    prefix = control.tab
    return [
        path(f"<int:pk>/{prefix}/", tab.as_view(), name=prefix),
        path(
            f"<int:pk>/{prefix}/current/",
            ControlCurrentView.as_view(control=control),
            name=f"{prefix}_current",
        ),
        path(
            f"<int:pk>/{prefix}/read/",
            ControlReadView.as_view(control=control),
            name=f"{prefix}_read",
        ),
        path(
            f"<int:pk>/{prefix}/<slug:option>/",
            ControlSettingView.as_view(control=control),
            name=f"{prefix}_set",
        ),
    ]


urlpatterns = _views(MODE) + _views(LOAD)
