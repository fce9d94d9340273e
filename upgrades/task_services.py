"""Writes of the upgrade tasks (guide §7.2): create a task, approve, pause, resume, retry the
failed devices, cancel or delete it, and a company's four-eyes rule.

These functions only create tasks and change their states; the rollout engine
(upgrades/rollout.py) starts devices and moves them. Each change is one conditional UPDATE
(a second click, a second worker or a state the engine has just moved on changes nothing),
checks the acting user through accounts.permissions, writes one audit record in its
transaction and, when devices may start, wakes the engine once the transaction commits.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone
from django.utils.translation import gettext

from accounts import audit
from accounts.models import AuditAction, Company, User
from accounts.permissions import can, require
from gateways.models import Gateway
from inverters.models import Inverter
from upgrades.models import (
    FINISHED,
    INVERTER_FIRMWARE_TYPES,
    NOT_STARTED,
    DeviceKind,
    FirmwareRelease,
    FirmwareType,
    ReleaseModel,
    TargetState,
    TaskState,
    UpgradePolicy,
    UpgradeTarget,
    UpgradeTask,
)

DEFAULT_WAVES = (100,)
MAX_WAVES = 10


def wake_engine() -> None:
    """Let the rollout engine look at the tasks as soon as this transaction commits."""
    from upgrades.tasks import advance_upgrades

    transaction.on_commit(lambda: advance_upgrades.delay())


# --- Waves -----------------------------------------------------------------------------------


def parse_waves(text: str) -> list[int]:
    """ "1, 10, 100" → [1, 10, 100]; checked by `check_waves`."""
    parts = [part.strip().rstrip("%").strip() for part in (text or "").split(",")]
    parts = [part for part in parts if part]
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise ValidationError(
            {"waves": gettext("Enter the waves as whole percentages, e.g. “1, 10, 100”.")}
        ) from None


def check_waves(waves: Sequence[int]) -> None:
    if not waves:
        raise ValidationError({"waves": gettext("Enter at least one wave, e.g. “100”.")})
    if len(waves) > MAX_WAVES:
        raise ValidationError({"waves": gettext("At most %(n)d waves, please.") % {"n": MAX_WAVES}})
    if any(w < 1 or w > 100 for w in waves) or any(
        b <= a for a, b in zip(waves, waves[1:], strict=False)
    ):
        raise ValidationError(
            {"waves": gettext("Waves are percentages from 1 to 100, each larger than the last.")}
        )
    if waves[-1] != 100:
        raise ValidationError({"waves": gettext("The last wave must be 100 %.")})


def assign_waves(count: int, waves: Sequence[int]) -> tuple[list[int], list[int]]:
    """(the wave of each of `count` devices in order, the waves kept).

    Wave i holds the devices up to ceil(count × waves[i] / 100), at least one; a wave that
    would hold no device is dropped, so wave numbers stay consecutive for the engine.
    """
    numbers: list[int] = []
    kept: list[int] = []
    done = 0
    for share in waves:
        upto = min(count, max(1, math.ceil(count * share / 100)))
        if upto <= done:
            continue
        numbers += [len(kept)] * (upto - done)
        kept.append(share)
        done = upto
    return numbers, kept


# --- Create ----------------------------------------------------------------------------------


def _ids(devices: Iterable[Any]) -> list[int]:
    ids = []
    for device in devices:
        ids.append(device.pk if isinstance(device, Model) else int(device))
    return list(dict.fromkeys(ids))


def _percent(value: Any, field: str, errors: dict[str, str]) -> None:
    if value is None or not 0 <= int(value) <= 100:
        errors[field] = gettext("Enter a percentage from 0 to 100.")


def inverter_version(inverter: Inverter, firmware_type: str) -> str:
    """The version of one board the inverter reports (keys are "dsp" or "DSP")."""
    versions = {str(k).lower(): v for k, v in (inverter.firmware_versions or {}).items()}
    return str(versions.get(firmware_type.lower(), "") or "")


def release_for(user: User, kind: str, model: str, firmware_type: str) -> Any:
    """The releases `user` may install on `model` devices of `kind` (and board type)."""
    rows = ReleaseModel.objects.visible_to(user).filter(kind=kind, model=model)
    if kind == DeviceKind.INVERTER:
        rows = rows.filter(firmware_type=firmware_type)
    return rows


def create_task(
    user: User,
    *,
    kind: str,
    release: FirmwareRelease,
    model: str,
    firmware_type: str = "",
    reservation_at: dt.datetime | None = None,
    devices: Iterable[Any],
    waves: Sequence[int] = DEFAULT_WAVES,
    wave_success_pct: int = 90,
    error_threshold_pct: int = 20,
    max_parallel: int = 50,
    window_start: dt.time | None = None,
    window_end: dt.time | None = None,
    require_online: bool = True,
    min_soc: int | None = None,
    require_no_urgent_alarm: bool = True,
    require_grid_mode: bool = True,
) -> UpgradeTask:
    """A task for `devices` (instances or ids), refused whole (ValidationError, nothing
    created) when any part of it is wrong; see the module docstring for what follows."""
    if not can(user, "upgrade.manage") or not user.company_id:
        raise PermissionDenied
    if kind not in DeviceKind.values:
        raise ValidationError(gettext("Unknown device type."))
    if kind == DeviceKind.GATEWAY:
        firmware_type = FirmwareType.GATEWAY
    elif firmware_type not in INVERTER_FIRMWARE_TYPES:
        raise ValidationError({"firmware_type": gettext("Please choose the firmware type.")})

    errors: dict[str, str] = {}
    if release is None or not FirmwareRelease.objects.visible_to(user).filter(pk=release.pk):
        errors["release"] = gettext("Please choose a firmware release.")
    elif not (
        release.kind == kind
        and release.firmware_type == firmware_type
        and release_for(user, kind, model, firmware_type).filter(release=release).exists()
    ):
        errors["release"] = gettext(
            "Firmware %(version)s is not released for %(model)s %(type)s."
        ) % {
            "version": release.version,
            "model": model,
            "type": FirmwareType(firmware_type).label,
        }
    if reservation_at is not None and reservation_at <= timezone.now():
        errors["reservation_at"] = gettext("The reserved time must be in the future.")
    waves = list(waves or ())
    try:
        check_waves(waves)
    except ValidationError as error:
        errors.update({k: v[0] for k, v in error.message_dict.items()})
    _percent(wave_success_pct, "wave_success_pct", errors)
    _percent(error_threshold_pct, "error_threshold_pct", errors)
    if min_soc is not None:
        _percent(min_soc, "min_soc", errors)
    if max_parallel is None or int(max_parallel) < 1:
        errors["max_parallel"] = gettext("At least one device must be able to upgrade at once.")
    if (window_start is None) != (window_end is None) or (
        window_start is not None and window_start == window_end
    ):
        errors["window_end"] = gettext(
            "Give the maintenance window both a start and a different end, or neither."
        )

    ids = _ids(devices)
    model_class = Gateway if kind == DeviceKind.GATEWAY else Inverter
    found = list(
        model_class.objects.visible_to(user)
        .filter(pk__in=ids)
        .select_related(*(["gateway"] if kind == DeviceKind.INVERTER else []))
        .order_by("serial_number")
    )
    if not ids:
        errors["devices"] = gettext("Please select at least one device.")
    elif len(found) != len(ids):
        errors["devices"] = gettext("Some of the selected devices are not yours to upgrade.")
    elif other := [d.serial_number for d in found if d.model != model]:
        errors["devices"] = gettext("These devices are not of model %(model)s: %(sns)s.") % {
            "model": model,
            "sns": ", ".join(other[:5]),
        }
    elif kind == DeviceKind.INVERTER and (
        loose := [d.serial_number for d in found if d.gateway_id is None]
    ):
        errors["devices"] = gettext(
            "These inverters are on no gateway, so nothing can reach them: %(sns)s."
        ) % {"sns": ", ".join(loose[:5])}
    if errors:
        raise ValidationError(errors)

    numbers, kept = assign_waves(len(found), waves)
    policy = UpgradePolicy.objects.filter(company_id=user.company_id).first()
    now = timezone.now()
    if policy is not None and policy.require_approval:
        state = TaskState.AWAITING_APPROVAL
    elif reservation_at is not None:
        state = TaskState.SCHEDULED
    else:
        state = TaskState.RUNNING
    with transaction.atomic():
        task = UpgradeTask.objects.create(
            company_id=user.company_id,
            kind=kind,
            release=release,
            firmware_type=firmware_type,
            model=model,
            created_by=user,
            creator_label=user.username or user.email,
            reservation_at=reservation_at,
            state=state,
            waves=kept,
            wave_success_pct=wave_success_pct,
            error_threshold_pct=error_threshold_pct,
            max_parallel=max_parallel,
            window_start=window_start,
            window_end=window_end,
            require_online=require_online,
            min_soc=min_soc,
            require_no_urgent_alarm=require_no_urgent_alarm,
            require_grid_mode=require_grid_mode,
        )
        UpgradeTarget.objects.bulk_create(
            [
                UpgradeTarget(
                    task=task,
                    wave=wave,
                    **(
                        {"gateway": device, "from_version": device.firmware_version}
                        if kind == DeviceKind.GATEWAY
                        else {
                            "gateway_id": device.gateway_id,
                            "inverter": device,
                            "modbus_address": device.modbus_address,
                            "from_version": inverter_version(device, firmware_type),
                        }
                    ),
                )
                for device, wave in zip(found, numbers, strict=True)
            ]
        )
        audit.record(
            user,
            AuditAction.UPGRADE_CREATED,
            task,
            after={
                "kind": kind,
                "model": model,
                "firmware_type": firmware_type,
                "version": release.version,
                "devices": len(found),
                "waves": kept,
                "state": state,
                "reservation": reservation_at.isoformat() if reservation_at else None,
                "at": now.isoformat(),
            },
        )
        if state != TaskState.AWAITING_APPROVAL:
            wake_engine()
    return task


# --- State changes ---------------------------------------------------------------------------


def _move(
    user: User,
    task: UpgradeTask,
    action: str,
    audit_action: str,
    from_states: Iterable[str],
    to_state: str,
    **fields: Any,
) -> UpgradeTask:
    """One conditional UPDATE of the task's state, audited; refused when the task has moved
    on (ValidationError naming its state now)."""
    require(user, action, task)
    with transaction.atomic():
        changed = UpgradeTask.objects.filter(
            pk=task.pk, state__in=list(from_states), deleted_at__isnull=True
        ).update(state=to_state, **fields)
        task.refresh_from_db()
        if not changed:
            raise ValidationError(
                gettext("The task is %(state)s now; nothing was changed.")
                % {"state": task.get_state_display().lower()}
            )
        audit.record(user, audit_action, task, {"state": list(from_states)[0]}, {"state": to_state})
        if to_state in (TaskState.RUNNING, TaskState.SCHEDULED):
            wake_engine()
    return task


def approve_task(user: User, task: UpgradeTask) -> UpgradeTask:
    """Four-eyes: another administrator lets the task start (now, or at its reservation)."""
    if not can(user, "upgrade.approve", task):
        raise PermissionDenied
    now = timezone.now()
    to = (
        TaskState.SCHEDULED
        if task.reservation_at is not None and task.reservation_at > now
        else TaskState.RUNNING
    )
    return _move(
        user,
        task,
        "upgrade.approve",
        AuditAction.UPGRADE_APPROVED,
        [TaskState.AWAITING_APPROVAL],
        to,
        approved_by=user,
        approved_at=now,
    )


def pause_task(user: User, task: UpgradeTask) -> UpgradeTask:
    """No device starts any more; those being upgraded finish."""
    reason = gettext("Paused by %(user)s.") % {"user": user.username or user.email}
    return _move(
        user,
        task,
        "upgrade.manage",
        AuditAction.UPGRADE_PAUSED,
        [TaskState.RUNNING],
        TaskState.PAUSED,
        state_reason=reason,
    )


def resume_task(user: User, task: UpgradeTask) -> UpgradeTask:
    return _move(
        user,
        task,
        "upgrade.manage",
        AuditAction.UPGRADE_RESUMED,
        [TaskState.PAUSED],
        TaskState.RUNNING,
        state_reason="",
        resumed_at=timezone.now(),
    )


def retry_failed(user: User, task: UpgradeTask) -> int:
    """The failed devices wait for their turn again (a new job, the attempt count kept); the
    task runs again. Returns how many devices were put back."""
    require(user, "upgrade.manage", task)
    with transaction.atomic():
        locked = (
            UpgradeTask.objects.select_for_update()
            .filter(pk=task.pk, deleted_at__isnull=True)
            .exclude(state__in=[TaskState.CANCELLED, TaskState.AWAITING_APPROVAL])
            .first()
        )
        if locked is None:
            raise ValidationError(gettext("This task can no longer be retried."))
        count = UpgradeTarget.objects.filter(task=locked, state=TargetState.FAILED).update(
            state=TargetState.WAITING,
            job=None,
            reason="",
            received=0,
            finished_at=None,
            offered_at=None,
        )
        if not count:
            raise ValidationError(gettext("No device of this task has failed."))
        before = locked.state
        to = TaskState.SCHEDULED if before == TaskState.SCHEDULED else TaskState.RUNNING
        UpgradeTask.objects.filter(pk=locked.pk).update(state=to, state_reason="", finished_at=None)
        audit.record(
            user,
            AuditAction.UPGRADE_RETRIED,
            locked,
            {"state": before},
            {"state": to, "devices": count},
        )
        wake_engine()
    task.refresh_from_db()
    return count


def cancel_task(user: User, task: UpgradeTask, *, delete: bool = False) -> tuple[int, int]:
    """Cancel the devices that have not started; those being upgraded go on and report.
    With `delete` the task also leaves the list. Returns (cancelled, still being upgraded)."""
    require(user, "upgrade.manage", task)
    now = timezone.now()
    with transaction.atomic():
        locked = (
            UpgradeTask.objects.select_for_update()
            .filter(pk=task.pk, deleted_at__isnull=True)
            .first()
        )
        if locked is None:
            raise ValidationError(gettext("This task has already been deleted."))
        if not delete and locked.state in (TaskState.COMPLETED, TaskState.CANCELLED):
            raise ValidationError(gettext("This task has already finished."))
        cancelled = UpgradeTarget.objects.filter(task=locked, state__in=NOT_STARTED).update(
            state=TargetState.CANCELLED,
            reason=gettext("Cancelled by %(user)s.") % {"user": user.username or user.email},
            finished_at=now,
        )
        running = (
            UpgradeTarget.objects.filter(task=locked)
            .exclude(Q(state__in=NOT_STARTED) | Q(state__in=FINISHED))
            .count()
        )
        before = locked.state
        fields: dict[str, Any] = {}
        if before not in (TaskState.COMPLETED, TaskState.CANCELLED):
            fields["state"] = TaskState.CANCELLED
            if not running:
                fields["finished_at"] = now
        if delete:
            fields["deleted_at"] = now
        UpgradeTask.objects.filter(pk=locked.pk).update(**fields)
        audit.record(
            user,
            AuditAction.UPGRADE_CANCELLED,
            locked,
            {"state": before},
            {
                "state": fields.get("state", before),
                "deleted": delete,
                "cancelled": cancelled,
                "still_upgrading": running,
            },
        )
    task.refresh_from_db()
    return cancelled, running


# --- Four-eyes rule --------------------------------------------------------------------------


def may_set_policy(user: User, company: Company | None) -> bool:
    """Administrators set the rule of their own company (superusers of any)."""
    if company is None or not can(user, "upgrade.approve"):
        return False
    return user.is_superuser or company.pk == user.company_id


def set_policy(user: User, company: Company, require_approval: bool) -> UpgradePolicy:
    """Switch four-eyes approval of the company's new upgrade tasks on or off."""
    if not may_set_policy(user, company):
        raise PermissionDenied
    with transaction.atomic():
        policy, _created = UpgradePolicy.objects.select_for_update().get_or_create(
            company=company, defaults={"require_approval": require_approval}
        )
        before = False if _created else policy.require_approval
        if not _created and before == require_approval:
            return policy
        policy.require_approval = require_approval
        policy.save(update_fields=["require_approval"])
        audit.record(
            user,
            AuditAction.UPGRADE_POLICY_CHANGED,
            policy,
            {"require_approval": before},
            {"require_approval": require_approval},
        )
    return policy


def requires_approval(company_id: int | None) -> bool:
    return UpgradePolicy.objects.filter(company_id=company_id, require_approval=True).exists()
