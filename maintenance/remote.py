"""Remote operations on devices: the one entry point pages, the API and tasks call.

Each function follows the services' convention (accounts/services.py): it takes the device and
the request, the acting user as the keyword `acting_user`, checks scope and role through
`accounts.permissions` (PermissionDenied), then the register map and the operation's own rules
(`OperationRefused`, a ValidationError with a sentence for the user and one per field), and
only then records a `RemoteOperation` (state `queued`): the audit row, holding the exact
command to send. A refused request records nothing: no frame ever leaves for it. Sending,
waiting and reading back happen in a worker (`maintenance.dispatch`), never in the web request.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.permissions import can_on_visible
from devices import modbus_frames
from devices.gateway_settings import ConfigError, apply_config
from devices.registermap import (
    PointSpec,
    RegisterMap,
    RegisterValueError,
    UnknownModelError,
    display_value,
)
from gateways.models import Gateway
from inverters.models import Inverter
from maintenance.models import OperationKind, RemoteOperation
from maintenance.tasks import execute_operation

if TYPE_CHECKING:
    from accounts.models import User

MODBUS_TIMEOUT_MS = 1000
MERGE_GAP = 8  # registers: reading a small gap costs less than another bus transaction
TOU_SLOTS = 6
SCAN_TIMEOUT_MS = 300


class OperationRefused(ValidationError):
    """A request that is not sent because of what it asks (the accounts services' ValidationError
    with the engine's shape): `message` says why, `errors` maps fields to reasons. A refusal for
    who asks is PermissionDenied, as everywhere."""

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


# --- entry points ---------------------------------------------------------------------------


def read_registers(
    inverter: Inverter,
    keys: list[str] | None = None,
    *,
    acting_user: User,
    group: str | None = None,
    deadline_s: float | None = None,
) -> RemoteOperation:
    """Read points by key, or every point of a register group (guide §6.2.6, §6.4.2.6)."""
    inverter = _operable(acting_user, inverter)
    rm = _register_map(inverter)
    if group is not None:
        if group not in rm.groups():
            raise OperationRefused(_("There is no register group “%(group)s”.") % {"group": group})
        points = rm.points_in_group(group)
    else:
        points = [_point(rm, key) for key in keys or []]
    if not points:
        raise OperationRefused(_("Choose at least one register to read."))
    steps = [Step("read", *block) for block in _blocks(points)]
    names = ", ".join(p.name for p in points[:4]) + ("…" if len(points) > 4 else "")
    summary = (
        _("Read %(group)s") % {"group": group} if group else _("Read %(names)s") % {"names": names}
    )
    return _record(
        acting_user,
        inverter.gateway,
        inverter,
        OperationKind.READ,
        summary,
        {"keys": [p.key for p in points], "group": group},
        _modbus_command(inverter, steps),
        deadline_s,
    )


def write_registers(
    inverter: Inverter,
    values: dict[str, Any],
    *,
    acting_user: User,
    deadline_s: float | None = None,
) -> RemoteOperation:
    """Write one or several holding registers; the same command reads them before and after."""
    inverter = _operable(acting_user, inverter)
    rm = _register_map(inverter)
    encoded = _encode(rm, values)
    _constraints(rm, values)
    summary = "; ".join(_describe(rm, k, v) for k, v in values.items())
    return _record_write(
        acting_user, inverter, rm, OperationKind.WRITE, summary, values, [encoded], deadline_s
    )


def set_power(
    inverter: Inverter, on: bool, *, acting_user: User, deadline_s: float | None = None
) -> RemoteOperation:
    """Power On/Off of the inverter Details page (§6.4.2.1)."""
    inverter = _operable(acting_user, inverter)
    rm = _register_map(inverter)
    values = {"power_switch": "on" if on else "off"}
    summary = _("Power on") if on else _("Power off")
    return _record_write(
        acting_user,
        inverter,
        rm,
        OperationKind.POWER,
        summary,
        values,
        [_encode(rm, values)],
        deadline_s,
    )


TOU_SLOT_FIELDS = ("start", "end", "mode", "charge_power", "discharge_power", "weekdays", "months")


def set_mode(
    inverter: Inverter,
    mode: str,
    parameters: dict[str, Any] | None = None,
    schedule: list[dict[str, Any]] | None = None,
    *,
    acting_user: User,
    deadline_s: float | None = None,
) -> RemoteOperation:
    """Switch the operating mode (guide Table 6-3) with that mode's parameters; for TOU also
    the slot schedule (`schedule[i]` = slot i+1: start, end, mode, charge/discharge power,
    weekdays, months). Parameters are written first, the mode last, in one command."""
    inverter = _operable(acting_user, inverter)
    rm = _register_map(inverter)
    parameters = dict(parameters or {})
    allowed = rm.option_parameters("work_mode", mode)
    if allowed is None:
        options = ", ".join(o.key for o in rm.point("work_mode").enum or ())
        raise OperationRefused(
            _("Unknown operating mode “%(mode)s”; choose one of: %(options)s.")
            % {"mode": mode, "options": options}
        )
    unexpected = sorted(set(parameters) - set(allowed))
    if unexpected:
        raise OperationRefused(
            _("%(names)s cannot be set in this mode.") % {"names": ", ".join(unexpected)},
            {k: _("Not a parameter of this mode.") for k in unexpected},
        )
    if schedule is not None and mode != "tou":
        raise OperationRefused(_("Only TOU mode takes a schedule."))
    if schedule is not None:
        parameters.update(_tou_schedule(schedule))
    encoded_params = _encode(rm, parameters)
    encoded_mode = _encode(rm, {"work_mode": mode})
    _constraints(rm, parameters)
    _mode_rules(inverter, rm, mode, parameters)
    label = rm.option("work_mode", mode)
    summary = _("Mode: %(mode)s") % {"mode": label.label if label else mode}
    if schedule is not None:
        active = sum(1 for s in schedule if s.get("mode", "empty") != "empty")
        summary += " " + _("(%(n)d TOU slot(s))") % {"n": active}
    values = {**parameters, "work_mode": mode}
    stages = [e for e in (encoded_params, encoded_mode) if e]
    return _record_write(
        acting_user, inverter, rm, OperationKind.MODE, summary, values, stages, deadline_s
    )


def set_smart_load(
    inverter: Inverter,
    mode: str,
    parameters: dict[str, Any] | None = None,
    *,
    acting_user: User,
    deadline_s: float | None = None,
) -> RemoteOperation:
    """Intelligent-load mode (guide Table 6-4) and its settings; settings first, mode last."""
    inverter = _operable(acting_user, inverter)
    rm = _register_map(inverter)
    parameters = dict(parameters or {})
    allowed = rm.option_parameters("smart_load_mode", mode)
    if allowed is None:
        options = ", ".join(o.key for o in rm.point("smart_load_mode").enum or ())
        raise OperationRefused(
            _("Unknown intelligent-load mode “%(mode)s”; choose one of: %(options)s.")
            % {"mode": mode, "options": options}
        )
    unexpected = sorted(set(parameters) - set(allowed))
    if unexpected:
        raise OperationRefused(
            _("%(names)s cannot be set in this intelligent-load mode.")
            % {"names": ", ".join(unexpected)},
            {k: _("Not a setting of this mode.") for k in unexpected},
        )
    encoded_params = _encode(rm, parameters)
    encoded_mode = _encode(rm, {"smart_load_mode": mode})
    _constraints(rm, parameters)
    label = rm.option("smart_load_mode", mode)
    summary = _("Intelligent load: %(mode)s") % {"mode": label.label if label else mode}
    values = {**parameters, "smart_load_mode": mode}
    stages = [e for e in (encoded_params, encoded_mode) if e]
    return _record_write(
        acting_user, inverter, rm, OperationKind.SMART_LOAD, summary, values, stages, deadline_s
    )


def configure_gateway(
    gateway: Gateway,
    changes: dict[str, Any],
    *,
    acting_user: User,
    restart: bool = True,
    deadline_s: float | None = None,
) -> RemoteOperation:
    """Gateway Setting (§6.3.2.2): protocol entries, forwarding, forwarding serial port, TCP
    forwarding, upload interval, baud rate; `restart` is the guide's Restart Flag."""
    gateway = _operable_gateway(acting_user, gateway)
    if not changes:
        raise OperationRefused(_("Nothing to change."))
    try:
        new, changed = apply_config(_current_settings(gateway), changes)
    except ConfigError as exc:
        raise OperationRefused(_("Settings not sent: %(reason)s.") % {"reason": exc}) from exc
    summary = _("Settings: %(keys)s") % {"keys": ", ".join(changed) or ", ".join(changes)}
    if restart:
        summary += " " + _("(restart)")
    params = {**changes, "restart": restart}
    return _record(
        acting_user,
        gateway,
        None,
        OperationKind.GATEWAY_CONFIG,
        summary,
        {"changes": changes, "restart": restart},
        {"op": "config", "params": params},
        deadline_s,
        before={"settings": _current_settings(gateway)},
    )


def reset_gateway(
    gateway: Gateway, *, acting_user: User, deadline_s: float | None = None
) -> RemoteOperation:
    """Reset (§6.3.2.2): the gateway restarts (10–20 s offline)."""
    gateway = _operable_gateway(acting_user, gateway)
    return _record(
        acting_user,
        gateway,
        None,
        OperationKind.GATEWAY_RESET,
        _("Reset gateway"),
        {},
        {"op": "reboot", "params": {}},
        deadline_s,
    )


def read_gateway_settings(
    gateway: Gateway, *, acting_user: User, deadline_s: float | None = None
) -> RemoteOperation:
    """Ask the gateway for the settings it runs with (no change, no restart); its answer
    becomes `Gateway.settings`, so pages show the gateway's own values."""
    gateway = _operable_gateway(acting_user, gateway)
    return _record(
        acting_user,
        gateway,
        None,
        OperationKind.GATEWAY_READ,
        _("Read gateway settings"),
        {},
        {"op": "read_config", "params": {}},
        deadline_s,
    )


def scan_bus(
    gateway: Gateway,
    first: int = 1,
    last: int = 16,
    *,
    acting_user: User,
    deadline_s: float | None = None,
) -> RemoteOperation:
    """Intellisense: probe bus addresses and report which inverters answer, with their model."""
    gateway = _operable_gateway(acting_user, gateway)
    for name, value in (("first", first), ("last", last)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 247:
            raise OperationRefused(
                _("Modbus addresses are whole numbers from 1 to 247."),
                {name: _("Enter a number from 1 to 247.")},
            )
    if first > last:
        raise OperationRefused(_("The first address must not be above the last."))
    params = {"first": first, "last": last, "timeout_ms": SCAN_TIMEOUT_MS}
    return _record(
        acting_user,
        gateway,
        None,
        OperationKind.SCAN,
        _("Protocol scan of addresses %(first)d–%(last)d") % {"first": first, "last": last},
        {"first": first, "last": last},
        {"op": "scan", "params": params},
        deadline_s,
    )


# --- checks ---------------------------------------------------------------------------------


def _operable(user: User, inverter: Inverter) -> Inverter:
    """The inverter fresh from the user's scope, if the user may operate it."""
    found = (
        Inverter.objects.visible_to(user).select_related("gateway").filter(pk=inverter.pk).first()
    )
    if found is None:
        raise PermissionDenied(_("This inverter does not exist or is not yours to operate."))
    if not can_on_visible(user, "device.operate", found):
        raise PermissionDenied(
            _("Only administrators and O&M engineers can operate devices remotely.")
        )
    if found.gateway is None:
        raise OperationRefused(_("This inverter is not connected to a gateway."))
    return found


def _operable_gateway(user: User, gateway: Gateway) -> Gateway:
    found = Gateway.objects.visible_to(user).filter(pk=gateway.pk).first()
    if found is None:
        raise PermissionDenied(_("This gateway does not exist or is not yours to operate."))
    if not can_on_visible(user, "device.operate", found):
        raise PermissionDenied(
            _("Only administrators and O&M engineers can operate devices remotely.")
        )
    return found


def _register_map(inverter: Inverter) -> RegisterMap:
    try:
        return RegisterMap.for_model(inverter.model)
    except UnknownModelError as exc:
        raise OperationRefused(
            _("There is no register map for the model %(model)s.") % {"model": inverter.model}
        ) from exc


def _point(rm: RegisterMap, key: str) -> PointSpec:
    try:
        return rm.point(key)
    except KeyError as exc:
        raise OperationRefused(
            _("The %(model)s has no register “%(key)s”.") % {"model": rm.model_name, "key": key},
            {key: _("Unknown register.")},
        ) from exc


def _encode(rm: RegisterMap, values: dict[str, Any]) -> list[tuple[str, int, list[int]]]:
    """(key, address, words) for every value, or every reason a value cannot be written."""
    encoded, errors = [], {}
    for key, value in values.items():
        _point(rm, key)
        try:
            address, words = rm.encode_write(key, value)
        except RegisterValueError as exc:
            errors[key] = exc.message
            continue
        encoded.append((key, address, words))
    if errors:
        raise OperationRefused(" ".join(errors.values()), errors)
    return encoded


def _constraints(rm: RegisterMap, values: dict[str, Any]) -> None:
    problems = rm.check_constraints(values)
    if problems:
        raise OperationRefused(" ".join(problems))


def _tou_schedule(schedule: list[dict[str, Any]]) -> dict[str, Any]:
    """Slot dicts → register values; refuses slots that cannot work as the user meant."""
    if not isinstance(schedule, list) or len(schedule) > TOU_SLOTS:
        raise OperationRefused(_("A TOU schedule has at most %(n)d slots.") % {"n": TOU_SLOTS})
    values: dict[str, Any] = {}
    active: list[tuple[int, dict]] = []
    for i, slot in enumerate(schedule, start=1):
        if not isinstance(slot, dict):
            raise OperationRefused(_("TOU slot %(i)d is not a slot.") % {"i": i})
        unknown = sorted(set(slot) - set(TOU_SLOT_FIELDS))
        if unknown:
            raise OperationRefused(
                _("TOU slot %(i)d has unknown fields: %(names)s.")
                % {"i": i, "names": ", ".join(unknown)}
            )
        for name, value in slot.items():
            values[f"tou{i}_{name}"] = value
        mode = slot.get("mode", "empty")
        if mode == "empty":
            continue
        if slot.get("start") == slot.get("end"):
            raise OperationRefused(
                _("TOU slot %(i)d needs different start and end times.") % {"i": i},
                {f"tou{i}_end": _("Must differ from the start time.")},
            )
        if mode == "charge" and not _positive(slot.get("charge_power")):
            raise OperationRefused(
                _("TOU slot %(i)d charges the battery: enter a charge power above 0.") % {"i": i},
                {f"tou{i}_charge_power": _("Must be above 0.")},
            )
        if mode == "discharge" and not _positive(slot.get("discharge_power")):
            raise OperationRefused(
                _("TOU slot %(i)d discharges the battery: enter a discharge power above 0.")
                % {"i": i},
                {f"tou{i}_discharge_power": _("Must be above 0.")},
            )
        active.append((i, slot))
    for a in range(len(active)):
        for b in range(a + 1, len(active)):
            if _slots_overlap(active[a][1], active[b][1]):
                raise OperationRefused(
                    _("TOU slots %(a)d and %(b)d overlap on the same days.")
                    % {"a": active[a][0], "b": active[b][0]}
                )
    return values


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _minutes(text: Any) -> int | None:
    try:
        h, m = str(text).split(":")
        return int(h) * 60 + int(m)
    except ValueError:
        return None


def _slot_ranges(slot: dict) -> list[tuple[int, int]]:
    start, end = _minutes(slot.get("start", "00:00")), _minutes(slot.get("end", "23:59"))
    if start is None or end is None:
        return []
    return [(start, end)] if start < end else [(start, 24 * 60), (0, end)]


def _slots_overlap(a: dict, b: dict) -> bool:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    every_month = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov"]
    every_month.append("dec")
    days = set(a.get("weekdays", every_day)) & set(b.get("weekdays", every_day))
    months = set(a.get("months", every_month)) & set(b.get("months", every_month))
    if not days or not months:
        return False
    return any(s1 < e2 and s2 < e1 for s1, e1 in _slot_ranges(a) for s2, e2 in _slot_ranges(b))


FORCED_OFF_GRID_MARGIN = 20  # SOC percentage points above the return SOC
LATEST_MAX_AGE = timedelta(minutes=15)


def _mode_rules(inverter: Inverter, rm: RegisterMap, mode: str, parameters: dict) -> None:
    """The guide's conditions of a mode beyond single-register ranges."""
    if mode == "emergency_charging" and "emergency_charge_power" in parameters:
        if not _positive(parameters["emergency_charge_power"]):
            raise OperationRefused(
                _("Emergency charging needs a charging power above 0 kW."),
                {"emergency_charge_power": _("Must be above 0.")},
            )
    if mode == "tou" and parameters.get("tou_grid_charge_enable") == "enabled":
        if "tou_bat_from_grid_power" in parameters and not _positive(
            parameters["tou_bat_from_grid_power"]
        ):
            raise OperationRefused(
                _("Grid charging is enabled: enter a BatFromGridPower above 0 kW."),
                {"tou_bat_from_grid_power": _("Must be above 0.")},
            )
    if mode == "forced_off_grid":
        # Guide: "Requires high battery charge and low loads."
        latest = getattr(inverter, "latest", None)
        if latest is None or latest.ts < timezone.now() - LATEST_MAX_AGE:
            raise OperationRefused(
                _(
                    "Forced off-grid needs a recent battery reading; wait for the inverter's "
                    "next upload and try again."
                )
            )
        return_soc = float(
            parameters.get("offgrid_return_soc", rm.default_value("offgrid_return_soc"))
        )
        if latest.batt_soc is None or latest.batt_soc < return_soc + FORCED_OFF_GRID_MARGIN:
            raise OperationRefused(
                _(
                    "Forced off-grid needs a well-charged battery: the SOC is %(soc)s%%, it must "
                    "be at least %(need)s%%."
                )
                % {"soc": _num(latest.batt_soc), "need": _num(return_soc + FORCED_OFF_GRID_MARGIN)}
            )
        rated_w = rm.rated_power_w
        if latest.load_power is not None and latest.load_power > rated_w / 2:
            raise OperationRefused(
                _(
                    "Forced off-grid needs low loads: the load is %(load)s kW, it must be at most "
                    "%(max)s kW."
                )
                % {"load": _num(latest.load_power / 1000), "max": _num(rated_w / 2000)}
            )


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}".rstrip("0").rstrip(".")


def _describe(rm: RegisterMap, key: str, value: Any) -> str:
    p = rm.point(key)
    return f"{p.name} = {display_value(rm, key, value)}"


def _current_settings(gateway: Gateway) -> dict:
    from devices.gateway_settings import default_config

    if gateway.settings:
        return gateway.settings
    protocols = [(i.model, i.modbus_address) for i in gateway.inverters.order_by("modbus_address")]
    return default_config(protocols, gateway.upload_interval_s)


# --- commands -------------------------------------------------------------------------------


@dataclass
class Step:
    """One RTU transaction of a `modbus` command and what it means."""

    role: str  # read | before | write | after
    table: str
    address: int
    count: int
    keys: list[str] = field(default_factory=list)
    words: list[int] = field(default_factory=list)

    def frame(self, device_id: int) -> bytes:
        if self.role == "write":
            return modbus_frames.write_request(self.address, self.words, device_id)
        return modbus_frames.read_request(self.table, self.address, self.count, device_id)

    def as_dict(self) -> dict:
        return {
            "role": self.role,
            "table": self.table,
            "address": self.address,
            "count": self.count,
            "keys": self.keys,
            "words": self.words,
        }


def _blocks(points: list[PointSpec]) -> list[tuple[str, int, int, list[str]]]:
    """(table, start, count, keys): points merged into as few reads as the limits allow."""
    out: list[list] = []
    for p in sorted(points, key=lambda p: (p.table, p.address)):
        end = p.address + p.n_registers
        last = out[-1] if out else None
        if (
            last is not None
            and last[0] == p.table
            and p.address - (last[1] + last[2]) <= MERGE_GAP
            and end - last[1] <= modbus_frames.MAX_READ_COUNT
        ):
            last[2] = max(last[2], end - last[1])
            last[3].append(p.key)
        else:
            out.append([p.table, p.address, p.n_registers, [p.key]])
    return [tuple(b) for b in out]


def _write_runs(encoded: list[tuple[str, int, list[int]]]) -> list[Step]:
    """Contiguous registers written in one FC16 request, in address order."""
    runs: list[Step] = []
    for key, address, words in sorted(encoded, key=lambda e: e[1]):
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.address + last.count == address
            and last.count + len(words) <= modbus_frames.MAX_WRITE_COUNT
        ):
            last.words.extend(words)
            last.count += len(words)
            last.keys.append(key)
        else:
            runs.append(Step("write", "holding", address, len(words), [key], list(words)))
    return runs


def _modbus_command(inverter: Inverter, steps: list[Step]) -> dict:
    device_id = inverter.modbus_address
    frames = [base64.b64encode(s.frame(device_id)).decode("ascii") for s in steps]
    return {
        "op": "modbus",
        "params": {"frames": frames, "timeout_ms": MODBUS_TIMEOUT_MS},
        "model": inverter.model,
        "device_id": device_id,
        "steps": [s.as_dict() for s in steps],
    }


def _record_write(
    user: User,
    inverter: Inverter,
    rm: RegisterMap,
    kind: str,
    summary: str,
    values: dict[str, Any],
    stages: list[list[tuple[str, int, list[int]]]],
    deadline_s: float | None,
) -> RemoteOperation:
    """Read the points, write each stage in order, read them back: one command."""
    points = [rm.point(key) for stage in stages for key, _a, _w in stage]
    reads = _blocks(points)
    steps = [Step("before", *b) for b in reads]
    for stage in stages:
        steps.extend(_write_runs(stage))
    steps.extend(Step("after", *b) for b in reads)
    request = {"values": values}
    command = _modbus_command(inverter, steps)
    command["expected"] = {key: words for stage in stages for key, _a, words in stage}
    return _record(user, inverter.gateway, inverter, kind, summary, request, command, deadline_s)


def _record(
    user: User,
    gateway: Gateway,
    inverter: Inverter | None,
    kind: str,
    summary: str,
    request: dict,
    command: dict,
    deadline_s: float | None,
    before: dict | None = None,
) -> RemoteOperation:
    """Store the checked operation and hand it to a worker once the row is committed."""
    if deadline_s is None:
        deadline_s = settings.REMOTE_OPERATION_DEADLINE_S
    device = inverter or gateway
    operation = RemoteOperation.objects.create(
        company_id=device.company_id,
        site_id=device.site_id,
        gateway=gateway,
        inverter=inverter,
        device_serial=device.serial_number,
        user=user,
        user_email=user.email,
        kind=kind,
        summary=summary[:300],
        request=request,
        command=command,
        command_id=uuid.uuid4().hex,
        before=before or {},
        deadline=timezone.now() + timedelta(seconds=deadline_s),
    )
    transaction.on_commit(lambda: execute_operation.delay(operation.pk))
    return operation
