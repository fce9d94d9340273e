"""The rollout engine: what moves an upgrade task forward, tick by tick (guide §7.2).

Beat runs `advance()` every UPGRADE_TICK_S, and task changes `.delay()` it at once. One tick:

1. scheduled tasks whose reservation is due start running (a task awaiting approval never does);
2. devices the gateway never took (offered past UPGRADE_OFFER_DEADLINE_S without a report) go
   back to waiting with no job, and devices that stopped reporting mid-upgrade (UPGRADE_STALL_S)
   fail — in every task, paused or cancelled ones too, since their devices go on;
3. each running task, locked with `SELECT … FOR UPDATE SKIP LOCKED` so two workers never both
   advance it: pause above the error threshold; open the next wave when the current one is done
   and succeeded well enough (or pause); offer jobs to the next devices of the open waves, up to
   max_parallel in flight, one job per gateway at a time, inside the device's maintenance window
   and only when its preconditions hold; complete the task when every device is finished.

Every change of state is one conditional UPDATE, so the engine is idempotent: a tick killed at
any point leaves rows a later tick (or another worker) carries on from. Offers are published
only after the task's transaction commits (upgrades.offers), so no device ever pulls a job the
cloud forgot.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from upgrades import preconditions
from upgrades.models import (
    IN_FLIGHT,
    NOT_STARTED,
    DeviceKind,
    TargetState,
    TaskState,
    UpgradeTarget,
    UpgradeTask,
)

log = logging.getLogger("upgrades.rollout")

WORKING = (
    TargetState.DOWNLOADING,
    TargetState.VERIFYING,
    TargetState.INSTALLING,
    TargetState.REBOOTING,
)
BATCH = 200
# Taken while a task offers jobs, so two tasks never both pick the same idle gateway.
OFFER_LOCK = 0x4D43_4F54  # "MCOT"


@dataclass
class TickReport:
    """What one tick changed (for logs and tests)."""

    started: int = 0
    returned: int = 0
    stalled: int = 0
    paused: list[int] = field(default_factory=list)
    waves_opened: int = 0
    already: int = 0
    skipped: int = 0
    offered: int = 0
    completed: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def advance(now: dt.datetime | None = None) -> TickReport:
    """One tick of the engine over every task."""
    now = now or timezone.now()
    report = TickReport()
    report.started = start_due_tasks(now)
    report.returned = return_untaken_offers(now)
    report.stalled = fail_stalled_targets(now)
    running = UpgradeTask.objects.filter(state=TaskState.RUNNING, deleted_at__isnull=True)
    for task_id in running.order_by("id").values_list("pk", flat=True):
        advance_task(task_id, now, report)
    return report


# --- tasks that start ---------------------------------------------------------------------------


def start_due_tasks(now: dt.datetime) -> int:
    """scheduled → running once the reservation is due (approval is never touched here)."""
    return (
        UpgradeTask.objects.filter(state=TaskState.SCHEDULED, deleted_at__isnull=True)
        .filter(Q(reservation_at__isnull=True) | Q(reservation_at__lte=now))
        .update(state=TaskState.RUNNING, state_reason="")
    )


# --- devices that went quiet (every task) ------------------------------------------------------


def return_untaken_offers(now: dt.datetime) -> int:
    """Offered, never a word back, past the offer's deadline: the gateway did not take the
    job (offline, or the command was lost). Not a failure: the device waits for another offer
    (its task cancelled meanwhile: it is cancelled). The command carried the same deadline, so
    the gateway will not start the old job late, and its reports would name a dead job."""
    cutoff = now - dt.timedelta(seconds=settings.UPGRADE_OFFER_DEADLINE_S)
    untaken = UpgradeTarget.objects.filter(
        state=TargetState.OFFERED, reported_at__isnull=True, offered_at__lt=cutoff
    )
    cancelled = untaken.filter(task__state=TaskState.CANCELLED).update(
        state=TargetState.CANCELLED,
        job=None,
        reason=_("the gateway did not take the job before the task was cancelled"),
        finished_at=now,
    )
    returned = untaken.exclude(task__state=TaskState.CANCELLED).update(
        state=TargetState.WAITING, job=None, offered_at=None, reason=""
    )
    return cancelled + returned


def fail_stalled_targets(now: dt.datetime) -> int:
    """Mid-upgrade and silent for UPGRADE_STALL_S: failed, with the reason."""
    stall_s = settings.UPGRADE_STALL_S
    cutoff = now - dt.timedelta(seconds=stall_s)
    stalled = UpgradeTarget.objects.annotate(last=Coalesce("reported_at", "offered_at")).filter(
        Q(state__in=WORKING) | Q(state=TargetState.OFFERED, reported_at__isnull=False),
        last__lt=cutoff,
    )
    return stalled.update(
        state=TargetState.FAILED,
        reason=_("no progress for %(seconds)d s") % {"seconds": stall_s},
        finished_at=now,
    )


# --- one running task ---------------------------------------------------------------------------


def advance_task(task_id: int, now: dt.datetime, report: TickReport | None = None) -> None:
    """Pause, open a wave, offer jobs and complete one running task, unless another worker
    is at it right now (then this tick leaves it alone)."""
    report = report or TickReport()
    with transaction.atomic():
        task = (
            UpgradeTask.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("release")
            .filter(pk=task_id, state=TaskState.RUNNING, deleted_at__isnull=True)
            .first()
        )
        if task is None:
            return
        # An operator who resumed accepted the failures so far: they do not pause the task
        # again, but any device failing after the resume does (retried devices included).
        resumed_at = task.resumed_at
        reason = threshold_exceeded(task, _counts(task), resumed_at)
        if reason is None:
            opened, reason = open_waves(task, resumed_at)
            report.waves_opened += opened
        if reason:
            if _pause(task, reason, now):
                report.paused.append(task.pk)
            return
        offer_next(task, now, report)
        if complete_if_done(task, now):
            report.completed.append(task.pk)


def _counts(task: UpgradeTask) -> dict[str, int]:
    rows = task.targets.values("state").annotate(n=Count("id"))
    counts = {state: 0 for state in TargetState.values}
    for row in rows:
        counts[row["state"]] = row["n"]
    return counts


def threshold_exceeded(
    task: UpgradeTask, counts: dict[str, int], resumed_at: dt.datetime | None = None
) -> str | None:
    """Why the task must pause for its failures, or None. Finished devices are those that
    succeeded or failed (cancelled ones were never tried). After an operator resumed the task
    the engine paused, only a device failing since counts as news."""
    failed = counts[TargetState.FAILED]
    finished = counts[TargetState.SUCCEEDED] + failed
    if finished < 1 or failed * 100 <= task.error_threshold_pct * finished:
        return None
    if not _failed_since(task.targets.all(), resumed_at):
        return None
    return _(
        "%(failed)d of %(finished)d devices failed (%(pct)d %%) — above the %(limit)d %% threshold"
    ) % {
        "failed": failed,
        "finished": finished,
        "pct": round(failed * 100 / finished),
        "limit": task.error_threshold_pct,
    }


def open_waves(task: UpgradeTask, resumed_at: dt.datetime | None = None) -> tuple[int, str | None]:
    """Move current_wave on while the current wave is done (every device finished or
    skipped) and its success rate reaches wave_success_pct. Returns how many waves opened
    and, when a done wave fell short, why the task must pause."""
    opened = 0
    while True:
        wave = task.current_wave
        next_wave = (
            task.targets.filter(wave__gt=wave).order_by("wave").values_list("wave", flat=True)
        ).first()
        if next_wave is None:
            return opened, None
        states = dict(task.targets.filter(wave=wave).values_list("state").annotate(n=Count("id")))
        if any(states.get(s) for s in (TargetState.WAITING, *IN_FLIGHT)):
            return opened, None
        succeeded = states.get(TargetState.SUCCEEDED, 0)
        tried = succeeded + states.get(TargetState.FAILED, 0)
        if tried == 0 and states.get(TargetState.SKIPPED):
            return opened, None  # nobody tried yet: the wave proves nothing so far
        below = tried and succeeded * 100 < task.wave_success_pct * tried
        if below and _failed_since(task.targets.filter(wave=wave), resumed_at):
            return opened, wave_shortfall(task, wave, succeeded, tried)
        moved = UpgradeTask.objects.filter(
            pk=task.pk, state=TaskState.RUNNING, current_wave=wave
        ).update(current_wave=next_wave)
        if not moved:
            return opened, None
        task.current_wave = next_wave
        opened += 1


def wave_shortfall(task: UpgradeTask, wave: int, succeeded: int, tried: int) -> str:
    return _(
        "wave %(wave)d: %(succeeded)d of %(tried)d devices succeeded (%(pct)d %%) — below the "
        "%(needed)d %% needed for the next wave"
    ) % {
        "wave": wave_number(task, wave),
        "succeeded": succeeded,
        "tried": tried,
        "pct": round(succeeded * 100 / tried),
        "needed": task.wave_success_pct,
    }


def wave_number(task: UpgradeTask, wave: int) -> int:
    """The wave as people count it (1 = the first wave with devices)."""
    return task.targets.filter(wave__lt=wave).values("wave").distinct().count() + 1


def _pause(task: UpgradeTask, reason: str, now: dt.datetime) -> bool:
    paused = UpgradeTask.objects.filter(pk=task.pk, state=TaskState.RUNNING).update(
        state=TaskState.PAUSED, state_reason=reason[:300]
    )
    if paused:
        log.info("task %s paused: %s", task.pk, reason)
    return bool(paused)


def _failed_since(targets, resumed_at: dt.datetime | None) -> bool:
    """Whether a device of `targets` failed after the resume (always, with no resume)."""
    if resumed_at is None:
        return True
    return targets.filter(state=TargetState.FAILED, finished_at__gt=resumed_at).exists()


def complete_if_done(task: UpgradeTask, now: dt.datetime) -> bool:
    """running → completed once every device succeeded, failed or was cancelled."""
    return bool(
        UpgradeTask.objects.filter(pk=task.pk, state=TaskState.RUNNING)
        .exclude(targets__state__in=[*NOT_STARTED, *IN_FLIGHT])
        .update(state=TaskState.COMPLETED, finished_at=now, state_reason="")
    )


# --- offering jobs ------------------------------------------------------------------------------


def offer_next(task: UpgradeTask, now: dt.datetime, report: TickReport) -> None:
    """Offer jobs to the next devices of the open waves, in order, while the task has room."""
    from upgrades.offers import offer_jobs

    with connection.cursor() as cursor:  # released when the task's transaction ends
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [OFFER_LOCK])
    room = task.max_parallel - task.targets.filter(state__in=IN_FLIGHT).count()
    busy = set(
        UpgradeTarget.objects.filter(state__in=IN_FLIGHT).values_list("gateway_id", flat=True)
    )
    candidates = (
        task.targets.filter(state__in=NOT_STARTED, wave__lte=task.current_wave)
        .select_related("gateway__site", "inverter__site")
        .order_by("wave", "id")
    )
    after = Q()
    while True:
        batch = list(candidates.filter(after)[:BATCH])
        if not batch:
            return
        last = batch[-1]
        after = Q(wave__gt=last.wave) | Q(wave=last.wave, id__gt=last.pk)
        report.already += _finish_already_current(task, batch, now)
        if room <= 0:
            return  # the rest waits for room (devices already up to date included)
        ready = [
            t
            for t in batch
            if t.state != TargetState.SUCCEEDED
            and t.gateway_id not in busy
            and in_window(task, t, now)
        ]
        facts = preconditions.load_facts(ready)
        chosen: list[int] = []
        for target in ready:
            if len(chosen) >= room:
                break
            if target.gateway_id in busy:
                continue  # one job per gateway at a time: another of its devices is at it
            reason = preconditions.first_failure(task, facts[target.pk])
            if reason:
                report.skipped += _skip(target, reason)
                continue
            chosen.append(target.pk)
            busy.add(target.gateway_id)
        offered = offer_jobs(chosen)
        room -= offered
        report.offered += offered


def in_window(task: UpgradeTask, target: UpgradeTarget, now: dt.datetime) -> bool:
    """Whether the device's site clock lies in the task's maintenance window [from, to),
    which may cross midnight. No window, or from == to: any time. No site: UTC."""
    start, end = task.window_start, task.window_end
    if start is None or end is None or start == end:
        return True
    local = now.astimezone(site_zone(target)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def site_zone(target: UpgradeTarget) -> dt.tzinfo:
    site = (target.inverter.site if target.inverter_id else None) or target.gateway.site
    if site is None or not site.time_zone:
        return dt.UTC
    try:
        return ZoneInfo(site.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def device_versions(task: UpgradeTask, target: UpgradeTarget) -> set[str]:
    """What the device runs now, as the portal last heard it (empty when unknown). An
    inverter board's version may be stored under the register map's name (DSP, from uploads)
    or the firmware type (dsp, from a finished job): either counts."""
    if task.kind == DeviceKind.GATEWAY or target.inverter_id is None:
        found = [target.gateway.firmware_version]
    else:
        versions = target.inverter.firmware_versions or {}
        found = [versions.get(task.firmware_type.upper()), versions.get(task.firmware_type)]
    return {str(v).strip() for v in found if v}


def _finish_already_current(task: UpgradeTask, batch: list[UpgradeTarget], now: dt.datetime) -> int:
    """Devices that already run the release: succeeded without a transfer, so no device is
    ever flashed twice (a retried device that did install before, a device updated by hand)."""
    version = task.release.version
    done = 0
    for target in batch:
        if version not in device_versions(task, target):
            continue
        changed = UpgradeTarget.objects.filter(pk=target.pk, state__in=NOT_STARTED).update(
            state=TargetState.SUCCEEDED,
            reason=_("already runs %(version)s") % {"version": version},
            from_version=target.from_version or version,
            reported_version=version,
            job=None,
            finished_at=now,
        )
        if changed:
            target.state = TargetState.SUCCEEDED
            done += 1
    return done


def _skip(target: UpgradeTarget, reason: str) -> int:
    """waiting/skipped → skipped with the reason (no write when nothing changed)."""
    reason = reason[:300]
    if target.state == TargetState.SKIPPED and target.reason == reason:
        return 0
    return UpgradeTarget.objects.filter(pk=target.pk, state__in=NOT_STARTED).update(
        state=TargetState.SKIPPED, reason=reason
    )


def rollout_counts(task: UpgradeTask) -> dict[str, int]:
    """Devices of `task` by state, every state present (pages show these figures)."""
    return _counts(task)
