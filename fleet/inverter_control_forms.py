"""The Setting dialogs of an inverter's Mode and Intelligent Load tabs (guide §6.4.2.8,
§6.4.2.9): one field per register a mode takes, built from the register map as the Parameters
Write dialog builds its field (maintenance.parameter_forms.value_field), and for TOU the slot
schedule.

Ranges and steps are the service's to check and word (maintenance.remote); the forms refuse
what no register could take and, for the schedule, what the inverter would not do as meant: a
slot that ends before it starts, slots that overlap, an active slot without a day or a month.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from devices.registermap import PointSpec, RegisterMap
from fleet import tou
from maintenance.parameter_forms import initial_value, value_field
from maintenance.remote import OperationRefused
from ui.forms import StyledFormMixin


def register_value(value: Any) -> Any:
    """A cleaned field value as the register map and the operation's record take it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
    return value


def _unit(point: PointSpec) -> str:
    return point.unit if point.enum is None and not point.format and point.flags is None else ""


class RegisterSettingsForm(StyledFormMixin, forms.Form):
    """The settings of one mode: a field per register, labelled with the register's name, its
    initial value the one last read from the device (else the map's default). Built by
    `settings_form`, which declares the fields."""

    def __init__(
        self,
        points: list[PointSpec],
        *args: Any,
        current: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.points = {point.key: point for point in points}
        current = current or {}
        for point in points:
            self.initial.setdefault(point.key, initial_value(point, current.get(point.key)))

    def rows(self) -> list[tuple[forms.BoundField, PointSpec, str]]:
        """(field, point, unit) per register, in the map's order of the mode's settings."""
        return [(self[key], point, _unit(point)) for key, point in self.points.items()]

    def register_values(self) -> dict[str, Any]:
        return {key: register_value(self.cleaned_data[key]) for key in self.points}

    def refuse(self, refused: OperationRefused) -> None:
        """Show why the service did not send the request: each field's reason under it, and
        the whole sentence on top unless the fields' reasons already say it all."""
        placed = []
        for key, reason in refused.errors.items():
            if key in self.fields:
                self.add_error(key, reason)
                placed.append(str(reason))
        if refused.message != " ".join(placed):
            self.add_error(None, refused.message)


def settings_form(
    points: list[PointSpec], data: Any = None, *, current: dict[str, Any], prefix: str
) -> RegisterSettingsForm:
    """The settings form of one mode: its fields declared on a class, so that the form's
    styling (StyledFormMixin) reaches them."""
    fields: dict[str, forms.Field] = {}
    for point in points:
        field = value_field(point)
        field.label = point.name
        if point.flags is not None:
            field.help_text = ""
        fields[point.key] = field
    form_class = type("ModeSettingsForm", (RegisterSettingsForm,), fields)
    return form_class(points, data, current=current, prefix=prefix)


def _slot_point(rm: RegisterMap, name: str) -> PointSpec:
    return rm.point(tou.slot_key(1, name))


SLOT_LABELS = {
    "mode": gettext_lazy("Mode"),
    "start": pgettext_lazy("TOU slot start time", "Start"),
    "end": gettext_lazy("End"),
    "charge_power": gettext_lazy("Charge power"),
    "discharge_power": gettext_lazy("Discharge power"),
    "weekdays": gettext_lazy("Days"),
    "months": gettext_lazy("Months"),
}


class TouSlotForm(StyledFormMixin, forms.Form):
    """One row of the schedule: base mode, time, powers, weekdays (weekly category) and
    months (season). Its fields come from slot 1's registers (`tou_schedule_formset`);
    every slot has the same ones."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors or data.get("mode", tou.EMPTY) == tou.EMPTY:
            return data
        for name in ("start", "end"):
            if data.get(name) is None:
                self.add_error(name, _("Enter a time for an active slot."))
        if data.get("start") is not None and data.get("end") is not None:
            if data["end"] <= data["start"]:
                self.add_error(
                    "end",
                    _(
                        "The slot ends before it starts. A slot lies within one day (23:59 is "
                        "the end of the day); split a period past midnight into two slots."
                    ),
                )
        if not data.get("weekdays"):
            self.add_error("weekdays", _("Choose at least one day."))
        if not data.get("months"):
            self.add_error("months", _("Choose at least one month."))
        return data

    def slot(self, number: int) -> tou.Slot:
        data = self.cleaned_data
        mode = data.get("mode") or tou.EMPTY
        if mode == tou.EMPTY:
            return tou.Slot(number)
        powers = {
            name: register_value(data[name]) if data.get(name) is not None else 0
            for name in ("charge_power", "discharge_power")
        }
        return tou.Slot(
            number,
            mode=mode,
            start=register_value(data["start"]),
            end=register_value(data["end"]),
            weekdays=list(data["weekdays"]),
            months=list(data["months"]),
            **powers,
        )


class BaseTouScheduleFormSet(forms.BaseFormSet):
    """The six slots; slots that overlap on a shared day and month are refused together."""

    def clean(self) -> None:
        if any(form.errors for form in self.forms):
            return
        slots = self.slots()
        problems = [
            _(
                "Slots %(a)d and %(b)d overlap: both apply on some day at %(start)s–%(end)s. "
                "Change their times, days or months."
            )
            % {
                "a": a.number,
                "b": b.number,
                "start": max(a.start, b.start),
                "end": min(a.end, b.end),
            }
            for a, b in tou.overlapping_pairs(slots)
        ]
        if problems:
            raise ValidationError(problems)

    def slots(self) -> list[tou.Slot]:
        return [form.slot(number) for number, form in enumerate(self.forms, start=1)]

    def schedule(self) -> list[dict[str, Any]]:
        return [slot.as_request() for slot in self.slots()]

    def refuse(self, refused: OperationRefused) -> bool:
        """Put the service's reasons under the slot fields they name; False if none does."""
        placed = False
        for key, reason in refused.errors.items():
            for number, form in enumerate(self.forms, start=1):
                prefix = f"tou{number}_"
                name = key.removeprefix(prefix)
                if key.startswith(prefix) and name in form.fields:
                    form.add_error(name, reason)
                    placed = True
        return placed


def tou_schedule_formset(
    register_map: RegisterMap, data: Any = None, *, initial: list[dict[str, Any]]
) -> BaseTouScheduleFormSet:
    """The six slots' forms, their fields built from the register map."""
    fields: dict[str, forms.Field] = {}
    for name in tou.SLOT_FIELDS:
        point = _slot_point(register_map, name)
        field = value_field(point)
        field.label = SLOT_LABELS[name]
        field.required = name == "mode"
        if point.flags is not None:
            field.help_text = ""
            field.choices = [(flag.key, flag.label[:3]) for flag in point.flags]
        fields[name] = field
    form_class = type("TouSlotRegistersForm", (TouSlotForm,), fields)
    formset_class = forms.formset_factory(
        form_class,
        formset=BaseTouScheduleFormSet,
        extra=0,
        min_num=tou.SLOTS,
        max_num=tou.SLOTS,
        validate_min=True,
        validate_max=True,
        absolute_max=tou.SLOTS,
    )
    return formset_class(data, prefix="slot", initial=initial)


def schedule_initial(slots: list[tou.Slot]) -> list[dict[str, Any]]:
    """The forms' initial rows from the schedule known for the inverter."""
    rows = []
    for slot in slots:
        rows.append(
            {
                "mode": slot.mode,
                "start": slot.start,
                "end": slot.end,
                "charge_power": slot.charge_power,
                "discharge_power": slot.discharge_power,
                "weekdays": list(slot.weekdays),
                "months": list(slot.months),
            }
        )
    return rows
