"""The TOU schedule of an inverter (guide §6.4.2.8, figure 6-58) as the Mode tab shows and edits
it: up to six slots, each a base mode for a time of day on some weekdays (the weekly category)
in some months (the season).

The inverter keeps the schedule in its TOU registers (`tou{n}_start`, `tou{n}_end`,
`tou{n}_mode`, `tou{n}_charge_power`, `tou{n}_discharge_power`, `tou{n}_weekdays`,
`tou{n}_months`); `maintenance.remote.set_mode` takes it as a list of slot dicts. This module
turns register values into slots and back, and finds what the form refuses before anything is
sent: a slot that ends before it starts, and slots that overlap on a day they share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.registermap import RegisterMap

SLOTS = 6
SLOT_FIELDS = ("mode", "start", "end", "charge_power", "discharge_power", "weekdays", "months")
EMPTY = "empty"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
END_OF_DAY = "23:59"


def slot_key(number: int, name: str) -> str:
    """The register of one field of slot `number` (1-based)."""
    return f"tou{number}_{name}"


def schedule_keys(rm: RegisterMap) -> list[str]:
    """Every TOU slot register this model has."""
    keys = []
    for number in range(1, SLOTS + 1):
        for name in SLOT_FIELDS:
            key = slot_key(number, name)
            if key in rm.points:
                keys.append(key)
    return keys


def has_schedule(rm: RegisterMap) -> bool:
    return slot_key(1, "mode") in rm.points


@dataclass
class Slot:
    """One slot of the schedule, with the labels the page shows."""

    number: int
    mode: str = EMPTY
    start: str = "00:00"
    end: str = END_OF_DAY
    charge_power: float | None = None
    discharge_power: float | None = None
    weekdays: list[str] = field(default_factory=lambda: list(WEEKDAYS))
    months: list[str] = field(default_factory=lambda: list(MONTHS))
    mode_label: str = ""
    known: bool = False  # read from the device (else the register map's default)

    @property
    def active(self) -> bool:
        return self.mode != EMPTY

    def as_request(self) -> dict[str, Any]:
        """The slot as `set_mode(schedule=…)` takes it."""
        if not self.active:
            return {"mode": EMPTY}
        slot: dict[str, Any] = {
            "mode": self.mode,
            "start": self.start,
            "end": self.end,
            "weekdays": list(self.weekdays),
            "months": list(self.months),
        }
        for name in ("charge_power", "discharge_power"):
            value = getattr(self, name)
            slot[name] = 0 if value is None else value
        return slot


def slots_from_values(rm: RegisterMap, values: dict[str, Any]) -> list[Slot]:
    """The schedule from register values (those missing take the map's defaults)."""
    slots = []
    for number in range(1, SLOTS + 1):
        if slot_key(number, "mode") not in rm.points:
            break
        slot = Slot(number)
        for name in SLOT_FIELDS:
            key = slot_key(number, name)
            if key not in rm.points:
                continue
            if key in values and values[key] is not None:
                value = values[key]
                slot.known = True
            else:
                value = rm.default_value(key)
            setattr(slot, name, value)
        option = rm.option(slot_key(number, "mode"), slot.mode)
        slot.mode_label = option.label if option else str(slot.mode)
        slots.append(slot)
    return slots


def minutes(text: str) -> int:
    hours, mins = str(text).split(":")
    return int(hours) * 60 + int(mins)


def ordered(slot: Slot) -> bool:
    """Does the slot end after it starts, within one day (23:59 = the end of the day)?"""
    return minutes(slot.start) < minutes(slot.end)


def overlap(a: Slot, b: Slot) -> bool:
    """Do two active slots apply at the same minute of some day and month they share?"""
    if not (set(a.weekdays) & set(b.weekdays) and set(a.months) & set(b.months)):
        return False
    return minutes(a.start) < minutes(b.end) and minutes(b.start) < minutes(a.end)


def overlapping_pairs(slots: list[Slot]) -> list[tuple[Slot, Slot]]:
    active = [slot for slot in slots if slot.active and ordered(slot)]
    return [(a, b) for i, a in enumerate(active) for b in active[i + 1 :] if overlap(a, b)]
