"""What must hold for a device before the rollout engine offers it a job (guide §7.2).

Each check is a small function of the task and the device's facts that returns None when the
device may go, or the reason it may not (stored on the target, which is then `skipped` and tried
again on a later tick). The facts of a whole batch of targets are read with a handful of
queries (`load_facts`), so checking a thousand waiting devices costs no thousand round trips.

A gateway target is judged by every inverter on its bus: flashing the gateway interrupts their
monitoring and control, so a low battery or an urgent alarm on any of them holds it back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from alarms.models import Alarm, AlarmLevel, AlarmStatus
from devices.decoding import codec_for_model
from devices.registermap import UnknownModelError
from gateways.models import GatewayStatus
from inverters.models import Inverter, InverterStatus
from inverters.telemetry import InverterLatest
from upgrades.models import UpgradeTarget, UpgradeTask

# Option keys of the register map's status points (ech-*-eu.yaml, group Status).
EMERGENCY_MODES = {
    "emergency_charging": "emergency charging",
    "forced_off_grid": "forced off-grid",
}
OFF_GRID_RUN_STATUS = "off_grid"
GRID_LOST = "lost"


@dataclass
class InverterFacts:
    serial: str
    status: str
    soc: float | None = None
    work_mode: str | None = None  # option key of work_mode_active
    run_status: str | None = None  # option key of run_status
    grid_status: str | None = None  # option key of grid_status
    urgent_alarms: list[str] = field(default_factory=list)  # fault codes


@dataclass
class DeviceFacts:
    """What the portal last heard of a target's gateway and the inverters that count for it."""

    gateway_serial: str
    gateway_status: str
    inverter: InverterFacts | None = None  # an inverter target's own inverter
    inverters: list[InverterFacts] = field(default_factory=list)  # every inverter that counts


Check = Callable[[UpgradeTask, DeviceFacts], str | None]


def online(task: UpgradeTask, facts: DeviceFacts) -> str | None:
    """The gateway carries the transfer; an inverter target must answer on the bus too."""
    if not task.require_online:
        return None
    if facts.gateway_status != GatewayStatus.ONLINE:
        return _("gateway %(serial)s is offline") % {"serial": facts.gateway_serial}
    inverter = facts.inverter
    if inverter is not None and inverter.status in (InverterStatus.OFFLINE, InverterStatus.UNKNOWN):
        return _("inverter %(serial)s is offline") % {"serial": inverter.serial}
    return None


def battery_soc(task: UpgradeTask, facts: DeviceFacts) -> str | None:
    """An upgrade may leave the inverter off for minutes: the battery must carry the house."""
    if task.min_soc is None:
        return None
    for inverter in facts.inverters:
        if inverter.soc is None:
            return _("no SOC reading from inverter %(serial)s") % {"serial": inverter.serial}
        if inverter.soc < task.min_soc:
            return _("battery SOC %(soc)d %% of inverter %(serial)s is below %(min)d %%") % {
                "soc": round(inverter.soc),
                "serial": inverter.serial,
                "min": task.min_soc,
            }
    return None


def no_urgent_alarm(task: UpgradeTask, facts: DeviceFacts) -> str | None:
    if not task.require_no_urgent_alarm:
        return None
    for inverter in facts.inverters:
        if inverter.urgent_alarms:
            return _("urgent alarm %(code)s occurring on inverter %(serial)s") % {
                "code": ", ".join(sorted(inverter.urgent_alarms)),
                "serial": inverter.serial,
            }
    return None


def grid_mode(task: UpgradeTask, facts: DeviceFacts) -> str | None:
    """No upgrade while an inverter runs on its battery alone or charges in an emergency:
    that is when the house depends on it. Modes never uploaded do not hold a device back."""
    if not task.require_grid_mode:
        return None
    for inverter in facts.inverters:
        if inverter.work_mode in EMERGENCY_MODES:
            return _("inverter %(serial)s is in %(mode)s mode") % {
                "serial": inverter.serial,
                "mode": EMERGENCY_MODES[inverter.work_mode],
            }
        if inverter.run_status == OFF_GRID_RUN_STATUS or inverter.grid_status == GRID_LOST:
            return _("inverter %(serial)s runs off-grid") % {"serial": inverter.serial}
    return None


CHECKS: tuple[Check, ...] = (online, battery_soc, no_urgent_alarm, grid_mode)


def first_failure(task: UpgradeTask, facts: DeviceFacts) -> str | None:
    """The reason of the first check that fails, or None: the device may go."""
    for check in CHECKS:
        if reason := check(task, facts):
            return reason
    return None


def load_facts(targets: Iterable[UpgradeTarget]) -> dict[int, DeviceFacts]:
    """Facts by target id, for targets loaded with their gateway and inverter."""
    targets = list(targets)
    gateway_ids = {t.gateway_id for t in targets if t.inverter_id is None}
    inverters = {t.inverter_id: t.inverter for t in targets if t.inverter_id is not None}
    by_gateway: dict[int, list[Inverter]] = {}
    if gateway_ids:
        for inverter in Inverter.objects.filter(gateway_id__in=gateway_ids).order_by(
            "modbus_address"
        ):
            by_gateway.setdefault(inverter.gateway_id, []).append(inverter)
            inverters.setdefault(inverter.pk, inverter)
    facts_of = _inverter_facts(list(inverters.values()))
    out: dict[int, DeviceFacts] = {}
    for target in targets:
        facts = DeviceFacts(target.gateway.serial_number, target.gateway.status)
        if target.inverter_id is not None:
            facts.inverter = facts_of[target.inverter_id]
            facts.inverters = [facts.inverter]
        else:
            facts.inverters = [facts_of[i.pk] for i in by_gateway.get(target.gateway_id, [])]
        out[target.pk] = facts
    return out


def _inverter_facts(inverters: list[Inverter]) -> dict[int, InverterFacts]:
    ids = [i.pk for i in inverters]
    latest = {
        row.inverter_id: row
        for row in InverterLatest.objects.filter(inverter_id__in=ids).select_related("layout")
    }
    alarms: dict[int, list[str]] = {}
    for inverter_id, code in Alarm.objects.filter(
        inverter_id__in=ids, level=AlarmLevel.URGENT, status=AlarmStatus.OCCURRING
    ).values_list("inverter_id", "code"):
        alarms.setdefault(inverter_id, []).append(code)
    out = {}
    for inverter in inverters:
        facts = InverterFacts(
            inverter.serial_number, inverter.status, urgent_alarms=alarms.get(inverter.pk, [])
        )
        row = latest.get(inverter.pk)
        if row is not None:
            facts.soc = row.batt_soc
            shown = _status_keys(inverter.model, row)
            facts.work_mode = shown.get("work_mode_active")
            facts.run_status = shown.get("run_status")
            facts.grid_status = shown.get("grid_status")
        out[inverter.pk] = facts
    return out


def _status_keys(model: str, latest: InverterLatest) -> dict[str, str]:
    """The status points of the newest upload as the register map's option keys."""
    raw = {
        k: v
        for k, v in latest.values().items()
        if k in ("work_mode_active", "run_status", "grid_status")
    }
    try:
        shown = codec_for_model(model).present_raw(raw)
    except UnknownModelError:
        return {}
    return {k: v for k, v in shown.items() if isinstance(v, str)}
