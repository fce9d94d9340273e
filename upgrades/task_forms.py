"""Forms of the upgrade tasks (guide §7.2, §6.3.2.3, §6.4.2.10): the list's filters, the
"Add upgrade" form with its staged-rollout options, the one-device Upgrade dialog of a gateway
or an inverter, and the device picker of "Add upgrade" (site, online, version, SN; a selection
that survives paging and filtering because it travels with every request)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import django_filters
from django import forms
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from gateways.models import Gateway, GatewayStatus
from inverters.models import Inverter, InverterStatus
from sites.models import Site
from ui.filters import ContainsFilter, search_input
from ui.forms import StyledFormMixin
from ui.query import positive_int
from upgrades.models import (
    INVERTER_FIRMWARE_TYPES,
    DeviceKind,
    FirmwareType,
    ReleaseModel,
    TaskState,
    UpgradeTarget,
    UpgradeTask,
)
from upgrades.task_services import parse_waves, release_for

YES_NO = [("no", _("No")), ("yes", _("Yes"))]
TIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
PICKER_PAGE_SIZE = 10
# Inverter states in which an inverter answers its gateway.
INVERTER_ONLINE = (InverterStatus.RUNNING, InverterStatus.STANDBY, InverterStatus.FAULT)


def kind_of(params: Any) -> str:
    kind = params.get("kind", "") if params is not None else ""
    return kind if kind in DeviceKind.values else DeviceKind.GATEWAY


def release_label(row: ReleaseModel) -> str:
    """As the guide writes a firmware: "CPS WiFi Kit--10.00"."""
    return f"{row.model}--{row.version}"


# --- The task list's filters ---------------------------------------------------------------------


class TaskFilterForm(StyledFormMixin, forms.Form):
    pass


class TaskFilter(django_filters.FilterSet):
    """Device type (the Gateway | Inverter tabs), model and firmware version."""

    kind = django_filters.ChoiceFilter(
        label=_("Device type"), choices=DeviceKind.choices, empty_label=None
    )
    model = django_filters.ChoiceFilter(label=_("Model No"), empty_label=_("All models"))
    version = ContainsFilter(
        label=_("Version"),
        field_name="release__version",
        max_length=32,
        widget=search_input(_("Firmware version")),
    )

    class Meta:
        model = UpgradeTask
        fields = ("kind", "model", "version")
        form = TaskFilterForm

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        data = data.copy() if data is not None else QueryDict(mutable=True)
        data.setdefault("kind", kind_of(data))
        super().__init__(data, *args, **kwargs)
        models = (
            self.queryset.filter(kind=data["kind"])
            .order_by("model")
            .values_list("model", flat=True)
            .distinct()
        )
        self.filters["model"].extra["choices"] = [(m, m) for m in models]


# --- Reservation: Yes / No and the time, in the user's time zone ---------------------------------


class ReservationMixin(forms.Form):
    reservation = forms.ChoiceField(
        label=_("Reservation"), choices=YES_NO, initial="no", widget=forms.RadioSelect
    )
    time = forms.DateTimeField(
        label=_("Time"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=TIME_FORMATS,
        help_text=_("In your time zone."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("reservation") == "yes":
            when = data.get("time")
            if when is None:
                if "time" not in self.errors:
                    self.add_error("time", _("Please choose the time of the upgrade."))
            elif when <= timezone.now():
                self.add_error("time", _("The reserved time must be in the future."))
        return data

    def reserve_at(self) -> dt.datetime | None:
        if self.cleaned_data.get("reservation") != "yes":
            return None
        return self.cleaned_data.get("time")


def release_choices(user: User, kind: str, model: str, firmware_type: str) -> list:
    rows = release_for(user, kind, model, firmware_type).order_by("-release__created_at")
    return [(row.release_id, release_label(row)) for row in rows]


class DeviceUpgradeForm(StyledFormMixin, ReservationMixin):
    """One device's Upgrade dialog: Firmware (the releases for its model and board type),
    Reservation and Time."""

    release = forms.TypedChoiceField(label=_("Firmware"), coerce=int)
    field_order = ("release", "reservation", "time")

    def __init__(
        self, *args: Any, user: User, kind: str, model: str, firmware_type: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        choices = release_choices(user, kind, model, firmware_type)
        self.fields["release"].choices = [("", _("Choose a firmware"))] + choices
        self.has_releases = bool(choices)


# --- Add upgrade ---------------------------------------------------------------------------------

BOOLEAN_FIELDS = ("require_online", "require_no_urgent_alarm", "require_grid_mode")


class TaskForm(StyledFormMixin, ReservationMixin):
    """Add upgrade (figures 7-4, 7-5) with the staged-rollout options and preconditions; the
    devices come from the picker (`selected`)."""

    kind = forms.ChoiceField(choices=DeviceKind.choices, widget=forms.HiddenInput)
    model = forms.ChoiceField(label=_("Model No"))
    firmware_type = forms.ChoiceField(label=_("Firmware type"), required=False)
    release = forms.TypedChoiceField(label=_("Firmware version"), coerce=int)
    waves = forms.CharField(
        label=_("Waves (% of the devices)"),
        initial="100",
        max_length=60,
        help_text=_("Cumulative shares, e.g. “1, 10, 100”: 1 % first, then up to 10 %, then all."),
    )
    wave_success_pct = forms.IntegerField(
        label=_("Next wave from success (%)"), min_value=0, max_value=100, initial=90
    )
    error_threshold_pct = forms.IntegerField(
        label=_("Pause above failures (%)"), min_value=0, max_value=100, initial=20
    )
    max_parallel = forms.IntegerField(
        label=_("Devices upgrading at once"), min_value=1, max_value=100000, initial=50
    )
    window_start = forms.TimeField(
        label=_("Maintenance window from"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=_("In each site's local time; empty: any time."),
    )
    window_end = forms.TimeField(
        label=_("Maintenance window to"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    require_online = forms.BooleanField(label=_("Device online"), required=False, initial=True)
    min_soc = forms.IntegerField(
        label=_("Battery SOC at least (%)"), min_value=0, max_value=100, required=False
    )
    require_no_urgent_alarm = forms.BooleanField(
        label=_("No urgent alarm occurring"), required=False, initial=True
    )
    require_grid_mode = forms.BooleanField(
        label=_("Not in emergency or off-grid mode"), required=False, initial=True
    )

    def __init__(self, data: Any = None, *, user: User, params: Any, **kwargs: Any) -> None:
        """`params` (GET or POST) choose the kind, model and firmware type whose releases are
        offered; an unbound form takes its initial values from them (a model change)."""
        if data is None and params is not None and "model" in params:
            kwargs["initial"] = self.initial_from(params)
        super().__init__(data, **kwargs)
        self.user = user
        self.kind = kind_of(params)
        self.fields["kind"].initial = self.kind
        models = (
            ReleaseModel.objects.visible_to(user)
            .filter(kind=self.kind)
            .order_by("model")
            .values_list("model", flat=True)
            .distinct()
        )
        self.fields["model"].choices = [("", _("Choose a model"))] + [(m, m) for m in models]
        self.model = str(params.get("model", "")) if params is not None else ""
        if self.kind == DeviceKind.INVERTER:
            self.fields["firmware_type"].required = True
            self.fields["firmware_type"].choices = [(t.value, t.label) for t in self.types()]
            chosen = params.get("firmware_type", "") if params is not None else ""
            self.firmware_type = chosen or (self.types()[0].value if self.types() else "")
            self.fields["firmware_type"].initial = self.firmware_type
        else:
            del self.fields["firmware_type"]
            self.firmware_type = FirmwareType.GATEWAY
        choices = release_choices(user, self.kind, self.model, self.firmware_type)
        self.fields["release"].choices = [("", _("Choose a firmware"))] + choices
        # A new model or board type re-shows the form with its releases and devices.
        refresh = {
            "hx-get": reverse("upgrades:task_add"),
            "hx-trigger": "change",
            "hx-include": "closest form",
            "hx-target": "#task-add-form",
            "hx-select": "#task-add-form",
            "hx-swap": "outerHTML",
        }
        for name in ("model", "firmware_type"):
            if name in self.fields:
                self.fields[name].widget.attrs.update(refresh)

    def types(self) -> list[FirmwareType]:
        """The board types released for the model (all inverter types before a model)."""
        released = set(
            ReleaseModel.objects.visible_to(self.user)
            .filter(kind=DeviceKind.INVERTER, model=self.model)
            .values_list("firmware_type", flat=True)
        )
        return [t for t in INVERTER_FIRMWARE_TYPES if t in released] or list(
            INVERTER_FIRMWARE_TYPES
        )

    def initial_from(self, params: Any) -> dict[str, Any]:
        initial = {name: params.get(name) for name in params if name not in BOOLEAN_FIELDS}
        initial.update({name: name in params for name in BOOLEAN_FIELDS})
        return initial

    def clean_waves(self) -> list[int]:
        return parse_waves(self.cleaned_data["waves"])

    def task_options(self) -> dict[str, Any]:
        """create_task's keyword arguments, less the user, release and devices."""
        data = self.cleaned_data
        return {
            "kind": self.kind,
            "model": data["model"],
            "firmware_type": self.firmware_type,
            "reservation_at": self.reserve_at(),
            "waves": data["waves"],
            "wave_success_pct": data["wave_success_pct"],
            "error_threshold_pct": data["error_threshold_pct"],
            "max_parallel": data["max_parallel"],
            "window_start": data.get("window_start"),
            "window_end": data.get("window_end"),
            "require_online": data["require_online"],
            "min_soc": data.get("min_soc"),
            "require_no_urgent_alarm": data["require_no_urgent_alarm"],
            "require_grid_mode": data["require_grid_mode"],
        }


# --- The device picker ---------------------------------------------------------------------------

ONLINE_CHOICES = [("", _("All status")), ("online", _("Online")), ("offline", _("Offline"))]


def parse_ids(text: str) -> set[int]:
    return {int(part) for part in (text or "").split(",") if part.strip().isdigit()}


@dataclass
class PickerRow:
    device: Any
    checked: bool
    status: str
    online: bool
    version: str
    upgrade_status: str


class PickerFilterForm(StyledFormMixin, forms.Form):
    site = forms.TypedChoiceField(label=_("Site screening"), required=False, coerce=int)
    online = forms.ChoiceField(label=_("Online"), required=False, choices=ONLINE_CHOICES)
    version = forms.CharField(label=_("Version"), required=False, max_length=32)
    sn = forms.CharField(
        label=_("SN"),
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"placeholder": _("Please enter SN")}),
    )


class DevicePicker:
    """The devices of one model the user may upgrade, with filters, pages of ten and a
    selection.

    The selection is the hidden `selected` (ids); the page's checkboxes (`pick`) and their
    ids (`page_ids`) come with every request, so what was ticked on this page is merged in
    before the page changes, a filter applies or the form is confirmed. `picker=select_all`
    adds every device the filters select (every page); `picker=clear` empties it.
    """

    def __init__(self, user: User, kind: str, model: str, params: Any, firmware_type: str = ""):
        self.user, self.kind, self.model = user, kind, model
        self.firmware_type = firmware_type
        params = params if params is not None else QueryDict()
        self.filters = PickerFilterForm(params, prefix="d")
        self.filters.fields["site"].choices = [("", _("All sites"))] + [
            (pk, name) for pk, name in self.sites()
        ]
        self.filters.is_valid()
        selected = parse_ids(params.get("selected", ""))
        on_page = parse_ids(",".join(params.getlist("page_ids")))
        picked = parse_ids(",".join(params.getlist("pick")))
        selected = (selected - on_page) | (picked & on_page)
        action = params.get("picker", "")
        if action == "clear":
            selected = set()
        elif action == "select_all":
            selected |= set(self.filtered().values_list("pk", flat=True))
        # Only devices of this model in scope stay selected (a model change drops the rest).
        self.selected = set(self.base().filter(pk__in=selected).values_list("pk", flat=True))
        if action.startswith("page-"):
            number = positive_int(action.removeprefix("page-"), 1)
        elif action == "search":
            number = 1
        else:  # a tick, Select all, Clear: stay on the page
            number = positive_int(params.get("dpage"), 1)
        self.page: Page = Paginator(self.filtered(), PICKER_PAGE_SIZE).get_page(number)

    def base(self) -> QuerySet:
        if not self.model:
            return Gateway.objects.none()
        model_class = Gateway if self.kind == DeviceKind.GATEWAY else Inverter
        return model_class.objects.visible_to(self.user).filter(model=self.model)

    def sites(self) -> list[tuple[int, str]]:
        ids = self.base().exclude(site=None).values("site_id")
        return list(
            Site.objects.visible_to(self.user)
            .filter(pk__in=ids)
            .order_by("name")
            .values_list("pk", "name")[:500]
        )

    def filtered(self) -> QuerySet:
        devices = self.base().select_related("site")
        data = self.filters.cleaned_data if self.filters.is_valid() else {}
        if data.get("site"):
            devices = devices.filter(site_id=data["site"])
        online = data.get("online")
        if online:
            if self.kind == DeviceKind.GATEWAY:
                condition = {"status": GatewayStatus.ONLINE}
            else:
                condition = {"status__in": INVERTER_ONLINE}
            devices = (
                devices.filter(**condition) if online == "online" else devices.exclude(**condition)
            )
        if data.get("version"):
            if self.kind == DeviceKind.GATEWAY:
                devices = devices.filter(firmware_version__icontains=data["version"])
            else:
                devices = devices.filter(firmware_versions__icontains=data["version"])
        if data.get("sn"):
            devices = devices.filter(serial_number__icontains=data["sn"])
        return devices.order_by("serial_number")

    def rows(self) -> list[PickerRow]:
        devices = list(self.page.object_list)
        latest = self.upgrade_states([d.pk for d in devices])
        rows = []
        for device in devices:
            if self.kind == DeviceKind.GATEWAY:
                online = device.status == GatewayStatus.ONLINE
                status = device.get_status_display()
                version = device.firmware_version
            else:
                online = device.status in INVERTER_ONLINE
                status = device.get_status_display()
                from upgrades.task_services import inverter_version

                version = inverter_version(device, self.firmware_type) or ", ".join(
                    f"{k}: {v}" for k, v in sorted((device.firmware_versions or {}).items())
                )
            rows.append(
                PickerRow(
                    device=device,
                    checked=device.pk in self.selected,
                    status=status,
                    online=online,
                    version=version,
                    upgrade_status=latest.get(device.pk, ""),
                )
            )
        return rows

    def upgrade_states(self, ids: list[int]) -> dict[int, str]:
        """The device's state in its newest task that is not finished ("" for none)."""
        field = "gateway_id" if self.kind == DeviceKind.GATEWAY else "inverter_id"
        targets = UpgradeTarget.objects.filter(
            **{f"{field}__in": ids},
            task__deleted_at__isnull=True,
            task__state__in=[
                TaskState.AWAITING_APPROVAL,
                TaskState.SCHEDULED,
                TaskState.RUNNING,
                TaskState.PAUSED,
            ],
        )
        if self.kind == DeviceKind.GATEWAY:
            targets = targets.filter(inverter__isnull=True)
        states: dict[int, str] = {}
        for pk, state in targets.order_by("-task_id").values_list(field, "state"):
            states.setdefault(pk, str(UpgradeTarget(state=state).get_state_display()))
        return states

    @property
    def selected_text(self) -> str:
        return ",".join(str(pk) for pk in sorted(self.selected))

    @property
    def page_ids(self) -> str:
        return ",".join(str(d.pk) for d in self.page.object_list)
