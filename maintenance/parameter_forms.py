"""Forms of Maintenance → Parameters: the register search, a Read request and the Write dialog.

The register map owns every fact about a point (range, step, options, format); the forms only
turn what the user typed into a value the map can check. Range and step are checked once, by
the remote-operations service, so the dialog shows the same reason the service gives. The form
only refuses what no register can take (not a finite number, more than the register holds, more
than MAX_DECIMAL_PLACES decimals) before it reaches the service.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from devices.registermap import PointSpec, RegisterMap
from maintenance.remote import OperationRefused
from ui.forms import StyledFormMixin

QUICK = "quick"
GROUP = "group"
KEYWORD_MAX_LENGTH = 100
# No register of the shipped maps resolves finer than 0.001; six places leave room for more.
MAX_DECIMAL_PLACES = 6


def plain_number(value: float | Decimal) -> str:
    """0.0 → "0", 10.0 → "10", 0.10 → "0.1": numbers as the guide's hints write them."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if number == number.to_integral_value():
        return str(number.quantize(Decimal(1)))
    return format(number.normalize(), "f")


def search_mode(data: Any) -> str:
    """Quick Search unless the query string asks for Group Search (the guide's default)."""
    return GROUP if data.get("mode") == GROUP else QUICK


class ParameterSearchForm(StyledFormMixin, forms.Form):
    """Quick Search: a keyword. Group Search: a register group and a keyword."""

    group = forms.ChoiceField(label=_("Register group"), required=False)
    q = forms.CharField(label=_("Keyword"), required=False, max_length=KEYWORD_MAX_LENGTH)

    def __init__(self, data: Any, *, register_map: RegisterMap, mode: str) -> None:
        super().__init__(data)
        self.register_map = register_map
        self.mode = mode
        self.fields["group"].choices = [("", _("All groups"))] + [
            (group, group) for group in register_map.groups()
        ]
        self.fields["q"].widget.input_type = "search"
        self.fields["q"].widget.attrs.update(
            placeholder=_("Keyword, e.g. Grid_Power or 0x0700"), autocomplete="off"
        )
        if mode == QUICK:
            del self.fields["group"]

    def points(self) -> list[PointSpec]:
        """The points that match, in the map's order; none while the search is invalid."""
        if not self.is_valid():
            return []
        group = self.cleaned_data.get("group") or None
        return self.register_map.search(self.cleaned_data["q"], group=group)

    @property
    def selected_group(self) -> str:
        if self.mode != GROUP or not self.is_valid():
            return ""
        return self.cleaned_data.get("group", "")


class InverterSearchForm(forms.Form):
    """The left panel's search (SN, name or site): a null byte is an error, a long text is cut
    to KEYWORD_MAX_LENGTH characters."""

    iq = forms.CharField(required=False)

    def clean_iq(self) -> str:
        return self.cleaned_data["iq"][:KEYWORD_MAX_LENGTH].strip()


class ParameterReadForm(forms.Form):
    """One point (`key`) or a whole register group (`group`) of the inverter's map."""

    key = forms.CharField(required=False, max_length=64)
    group = forms.CharField(required=False, max_length=100)

    def __init__(self, data: Any, *, register_map: RegisterMap) -> None:
        super().__init__(data)
        self.register_map = register_map

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        key, group = data.get("key"), data.get("group")
        if bool(key) == bool(group):
            raise forms.ValidationError(_("Choose one register or one register group to read."))
        if key and key not in self.register_map.points:
            raise forms.ValidationError(
                _("The %(model)s has no register “%(key)s”.")
                % {"model": self.register_map.model_name, "key": key}
            )
        if group and group not in self.register_map.groups():
            raise forms.ValidationError(
                _("There is no register group “%(group)s”.") % {"group": group}
            )
        return data


class ParameterWriteForm(StyledFormMixin, forms.Form):
    """One field built from the point: a number, an option, a time of day or a set of flags."""

    def __init__(self, point: PointSpec, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.point = point
        self.fields["value"] = value_field(point)

    @property
    def unit(self) -> str:
        return self.point.unit if _is_number(self.point) else ""

    @property
    def is_flags(self) -> bool:
        return self.point.flags is not None

    def register_value(self) -> Any:
        """The cleaned value as the register map and the operation's JSON record take it."""
        value = self.cleaned_data["value"]
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, datetime.time):
            return value.strftime("%H:%M")
        return value

    def refuse(self, refused: OperationRefused) -> None:
        """Show why the service did not send the write, under the field."""
        self.add_error("value", refused.errors.get(self.point.key) or refused.message)
        widget = self.fields["value"].widget
        widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()


def value_field(point: PointSpec) -> forms.Field:
    label = _("New value")
    if point.enum is not None:
        return forms.ChoiceField(
            label=label, choices=[(option.key, option.label) for option in point.enum]
        )
    if point.flags is not None:
        return forms.MultipleChoiceField(
            label=label,
            required=False,
            choices=[(flag.key, flag.label) for flag in point.flags],
            widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
            help_text=_("Ticked items are switched on."),
        )
    if point.format == "hhmm":
        return forms.TimeField(
            label=label,
            input_formats=["%H:%M"],
            widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            help_text=_("A time of day, HH:MM."),
        )
    if _is_number(point):
        return _number_field(point, label)
    return forms.CharField(label=label, max_length=2 * point.n_registers)


def initial_value(point: PointSpec, value: Any) -> Any:
    """A value read from the device, as the field's initial value (None if it does not fit)."""
    if value is None:
        return None
    if point.flags is not None:
        return value if isinstance(value, list) else None
    if isinstance(value, bool | dict | list):
        return None
    return value


def _is_number(point: PointSpec) -> bool:
    return point.type in ("u16", "s16", "u32", "s32") and point.enum is None and not point.format


class RegisterNumberField(forms.DecimalField):
    """A number the register can hold at all: finite and within its type's limits. A value
    past them is refused here with the point's range ("Enter a number within …"); a value
    within them but out of range or off-step is the service's to word."""

    def __init__(self, point: PointSpec, **kwargs: Any) -> None:
        super().__init__(decimal_places=MAX_DECIMAL_PLACES, **kwargs)
        self.limits = point.value_limits
        low, high = point.range if point.range is not None else self.limits
        unit = f" {point.unit}" if point.unit else ""
        self.within = _("Enter a number within %(min)s to %(max)s%(unit)s.") % {
            "min": plain_number(low),
            "max": plain_number(high),
            "unit": unit,
        }

    def validate(self, value: Decimal | None) -> None:
        forms.Field.validate(self, value)  # "required"; the checks below replace "finite"
        if value in self.empty_values:
            return
        low, high = self.limits
        if not value.is_finite() or not low <= value <= high:
            raise ValidationError(self.within, code="out_of_register")


def _number_field(point: PointSpec, label: str) -> forms.DecimalField:
    # Range and step are hints for the browser only; the service checks them and words the
    # reason, so a value typed past the browser reads the same refusal as any other client.
    step = point.step or point.scale
    attrs: dict[str, Any] = {"step": plain_number(step), "inputmode": "decimal"}
    help_text = ""
    if point.range is not None:
        low, high = point.range
        attrs.update(min=plain_number(low), max=plain_number(high))
        help_text = _("Value Range: [%(min)s,%(max)s] Offset value: %(step)s") % {
            "min": plain_number(low),
            "max": plain_number(high),
            "step": plain_number(step),
        }
    return RegisterNumberField(
        point, label=label, widget=forms.NumberInput(attrs=attrs), help_text=help_text
    )
