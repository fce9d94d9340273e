"""AutoTest (guide §6.4.2.7): the CEI 0-21 self-test of an Italian inverter's interface
protection, started from the portal and followed step by step.

The test itself runs in the inverter. CEI 0-21 asks every generator connected to the Italian
low-voltage grid to check its interface protection (SPI) by itself: the inverter shifts each
voltage and frequency trip threshold towards the grid's value until the protection trips, and
records the value and the time at which it did. The sequence, with the CEI 0-21 settings:

    59.S1  overvoltage, 10-minute average   253.0 V (1.10 Vn)   ≤ 3 s
    59.S2  overvoltage                        264.5 V (1.15 Vn)   0.2 s
    27.S1  undervoltage                       195.5 V (0.85 Vn)   1.5 s
    27.S2  undervoltage, deep                  34.5 V (0.15 Vn)   0.2 s
    81>.S1 overfrequency, restrictive         50.2 Hz             0.1 s
    81<.S1 underfrequency, restrictive        49.8 Hz             0.1 s
    81>.S2 overfrequency, permissive          51.5 Hz             0.1 s
    81<.S2 underfrequency, permissive         47.5 Hz             0.1 s

The register maps' AutoTest block holds the start command and, per step, state, threshold,
measured trip value, trip-time limit, measured trip time and pass/fail (devices/registermaps).

`start_autotest` (the service: checks, the start command through the remote-operations engine,
the run record and the audit event) and `run` (the worker's part, fleet/tasks.py: send the
command, then read the step registers through the engine until the inverter ends the sequence,
storing each step as it goes). Every read is a RemoteOperation of the user who started the test.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import audit
from accounts.models import AuditAction
from accounts.permissions import require
from devices.registermap import RegisterMap, UnknownModelError
from fleet.models import (
    AUTOTEST_IN_PROGRESS,
    AutoTestResult,
    AutoTestRun,
    AutoTestStatus,
    AutoTestStep,
    AutoTestStepState,
)
from fleet.views.inverter_base import has_autotest
from gateways.models import GatewayStatus
from inverters.models import Inverter
from maintenance.models import PENDING_STATES, OperationState, RemoteOperation
from maintenance.remote import OperationRefused, read_registers, write_registers
from maintenance.tasks import execute_operation

if TYPE_CHECKING:
    from accounts.models import User

log = logging.getLogger("fleet.autotest")

#: The protection functions of the sequence, in the order the inverter tests them (step 1…8).
SEQUENCE = ("59.S1", "59.S2", "27.S1", "27.S2", "81>.S1", "81<.S1", "81>.S2", "81<.S2")
FUNCTIONS = {
    "59.S1": gettext_lazy("Overvoltage, 10-minute average"),
    "59.S2": gettext_lazy("Overvoltage"),
    "27.S1": gettext_lazy("Undervoltage"),
    "27.S2": gettext_lazy("Undervoltage, deep"),
    "81>.S1": gettext_lazy("Overfrequency, restrictive threshold"),
    "81<.S1": gettext_lazy("Underfrequency, restrictive threshold"),
    "81>.S2": gettext_lazy("Overfrequency, permissive threshold"),
    "81<.S2": gettext_lazy("Underfrequency, permissive threshold"),
}
#: What must hold before the test starts (CEI 0-21 self-test preconditions); the inverter
#: checks the first three itself and refuses to start otherwise.
CONDITIONS = (
    gettext_lazy("The inverter is running and connected to the grid (on-grid)."),
    gettext_lazy(
        "The grid is stable: voltage and frequency are within their normal limits and the "
        "inverter has not just reconnected."
    ),
    gettext_lazy("No fault or protection code is active on the inverter."),
    gettext_lazy(
        "An installer is present at the site for the whole test and can switch the inverter "
        "off if needed."
    ),
)
#: Why the inverter refused or aborted a test (the map's AutoTestReason keys).
REASONS = {
    "power_off": gettext_lazy("The inverter is powered off."),
    "not_on_grid": gettext_lazy("The inverter is not running on-grid."),
    "fault_active": gettext_lazy("A fault or protection code is active on the inverter."),
    "grid_unstable": gettext_lazy("The grid is not stable, or the inverter is still reconnecting."),
    "user_abort": gettext_lazy("The test was aborted by a command."),
}
DEVICE_END_STATES = {
    "passed": AutoTestStatus.PASSED,
    "failed": AutoTestStatus.FAILED,
    "aborted": AutoTestStatus.ABORTED,
    "refused": AutoTestStatus.REFUSED,
}
COMMAND_KEY = "autotest_command"

#: The start command must reach the inverter within this time, or it is not sent at all.
START_DEADLINE_S = 45
#: How long the worker waits for the start command's answer (beyond its deadline: a command
#: still queued then can no longer start a test nobody follows).
START_WAIT_S = START_DEADLINE_S + 15
#: Each read of the step registers.
POLL_DEADLINE_S = 20
POLL_WAIT_S = 25
POLL_EVERY_S = 2.0
#: The inverter has not answered for this long: the run ends as expired.
NO_ANSWER_S = 60
#: No sequence takes longer (about 45 s on the inverter, and the reads' round trips).
RUN_LIMIT_S = 300
#: Polls that may still see the state of before the start (idle) before the run is given up.
IDLE_POLLS = 3
DB_POLL_S = 0.2


# --- the sequence of a model ------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    index: int
    code: str
    unit: str
    threshold: float
    time_limit_ms: int

    @property
    def prefix(self) -> str:
        return f"autotest{self.index}_"


def register_map(inverter: Inverter) -> RegisterMap | None:
    try:
        rm = RegisterMap.for_model(inverter.model)
    except UnknownModelError:
        return None
    return rm if COMMAND_KEY in rm.points else None


def sequence(rm: RegisterMap) -> list[StepSpec]:
    """The steps of the map's AutoTest block, with their settings."""
    steps = []
    index = 1
    while f"autotest{index}_threshold" in rm.points:
        steps.append(
            StepSpec(
                index,
                SEQUENCE[index - 1] if index <= len(SEQUENCE) else f"#{index}",
                rm.point(f"autotest{index}_threshold").unit,
                float(rm.default_value(f"autotest{index}_threshold")),
                int(rm.default_value(f"autotest{index}_time_limit")),
            )
        )
        index += 1
    return steps


def result_keys(rm: RegisterMap) -> list[str]:
    """Every AutoTest input register: what one poll reads."""
    return [p.key for p in rm.points_in_group("AutoTest") if p.table == "input"]


# --- starting ---------------------------------------------------------------------------------


def running_test(inverter: Inverter) -> AutoTestRun | None:
    """The inverter's test in progress (a stale one does not count)."""
    for run in AutoTestRun.objects.filter(inverter=inverter, status__in=AUTOTEST_IN_PROGRESS):
        if not run.is_stale:
            return run
    return None


def start_autotest(inverter: Inverter, *, acting_user: User) -> AutoTestRun:
    """Start the AutoTest of `inverter`: the Start command goes out through the
    remote-operations engine, and a worker follows the test (fleet.tasks.run_autotest)."""
    from fleet.tasks import run_autotest

    found = (
        Inverter.objects.visible_to(acting_user)
        .select_related("site", "gateway")
        .filter(pk=inverter.pk)
        .first()
    )
    if found is None:
        raise PermissionDenied(_("This inverter does not exist or is not yours to operate."))
    require(acting_user, "device.operate", found)
    if not has_autotest(found):
        raise ValidationError(_("AutoTest is only available for inverters of Italian sites."))
    rm = register_map(found)
    if rm is None:
        raise ValidationError(
            _("The %(model)s has no AutoTest.") % {"model": found.model or _("unknown model")}
        )
    if found.gateway is None:
        raise ValidationError(_("This inverter is not connected to a gateway."))
    if found.gateway.status != GatewayStatus.ONLINE:
        raise ValidationError(
            _("The inverter's gateway is offline: the test needs a connected inverter.")
        )
    with transaction.atomic():
        # One start at a time per inverter.
        Inverter.objects.select_for_update().filter(pk=found.pk).first()
        if running_test(found) is not None:
            raise ValidationError(_("An AutoTest of this inverter is already running."))
        operation = write_registers(
            found, {COMMAND_KEY: "start"}, acting_user=acting_user, deadline_s=START_DEADLINE_S
        )
        run = AutoTestRun.objects.create(
            inverter=found,
            site_id=found.site_id,
            company_id=found.company_id,
            start_operation=operation,
            started_by=acting_user,
            started_by_email=acting_user.email,
            serial_number=found.serial_number,
            model=found.model,
            firmware_versions=found.firmware_versions or {},
        )
        AutoTestStep.objects.bulk_create(
            AutoTestStep(
                run=run,
                index=spec.index,
                code=spec.code,
                unit=spec.unit,
                threshold=spec.threshold,
                time_limit_ms=spec.time_limit_ms,
            )
            for spec in sequence(rm)
        )
        audit.record(
            acting_user,
            AuditAction.AUTOTEST_STARTED,
            found,
            after={"run": run.pk, "operation": operation.pk, "standard": "CEI 0-21"},
        )
        transaction.on_commit(lambda: run_autotest.delay(run.pk))
    return run


# --- following the test (in a worker) -----------------------------------------------------------


def run(run_id: int) -> str:
    """Send the Start command and follow the test to its end; returns the run's status, or
    `skipped` when it was not waiting to start."""
    test = (
        AutoTestRun.objects.select_related("inverter", "started_by", "start_operation")
        .filter(pk=run_id, status=AutoTestStatus.STARTING)
        .first()
    )
    if test is None:
        return "skipped"
    try:
        return _follow(test)
    except SoftTimeLimitExceeded:
        return _finish(test, AutoTestStatus.EXPIRED, message=_("The test took too long."))
    except Exception:
        log.exception("AutoTest %s failed", run_id)
        return _finish(test, AutoTestStatus.EXPIRED, message=_("The test could not be followed."))


def _follow(test: AutoTestRun) -> str:
    began = time.monotonic()
    operation = test.start_operation
    if operation is None or test.started_by is None:
        return _finish(test, AutoTestStatus.EXPIRED, message=_("The start command is missing."))
    operation = _send(operation, START_WAIT_S)
    if operation.state != OperationState.SUCCEEDED:
        # An inverter that refused the command (a Modbus exception) refused the test; one that
        # did not answer, or a command that never left, ends the run as expired.
        refused = operation.state == OperationState.FAILED and not _no_answer(test, operation)
        status = AutoTestStatus.REFUSED if refused else AutoTestStatus.EXPIRED
        message = operation.error or _("The inverter did not answer the start command.")
        return _finish(test, status, message=message)
    if not _update(test, status=AutoTestStatus.RUNNING):
        return "skipped"
    rm = register_map(test.inverter)
    keys = result_keys(rm) if rm is not None else []
    last_answer = time.monotonic()
    idle = 0
    while True:
        if time.monotonic() - began > RUN_LIMIT_S:
            return _finish(
                test,
                AutoTestStatus.EXPIRED,
                message=_("The inverter did not end the test within %(minutes)d minutes.")
                % {"minutes": RUN_LIMIT_S // 60},
            )
        try:
            read = read_registers(
                test.inverter, keys, acting_user=test.started_by, deadline_s=POLL_DEADLINE_S
            )
        except (PermissionDenied, OperationRefused) as refused:
            message = getattr(refused, "message", "") or str(refused)
            return _finish(test, AutoTestStatus.EXPIRED, message=message)
        read = _send(read, POLL_WAIT_S)
        if read.state == OperationState.SUCCEEDED:
            last_answer = time.monotonic()
            values = {k: v.get("value") for k, v in (read.result.get("values") or {}).items()}
            state = store(test, values)
            if state in DEVICE_END_STATES:
                reason = str(values.get("autotest_reason") or "")
                return _finish(
                    test, DEVICE_END_STATES[state], reason="" if reason == "none" else reason
                )
            if state == "idle":
                idle += 1
                if idle >= IDLE_POLLS:
                    return _finish(
                        test,
                        AutoTestStatus.ABORTED,
                        message=_("The inverter reports that no test is running."),
                    )
        elif time.monotonic() - last_answer > NO_ANSWER_S:
            return _finish(
                test,
                AutoTestStatus.EXPIRED,
                message=_("The inverter stopped answering during the test: %(error)s")
                % {"error": read.error or _("no answer")},
            )
        time.sleep(POLL_EVERY_S)


def _send(operation: RemoteOperation, wait_s: float) -> RemoteOperation:
    """Send a queued operation from this worker and wait for its end (at most `wait_s`).

    Sent directly, like the commissioning reads: a single worker process would otherwise wait
    for operations queued behind this very task; the copy handed to the pool finds the
    operation claimed and skips it."""
    execute_operation(operation.pk)
    end = time.monotonic() + wait_s
    operation.refresh_from_db()
    while operation.state in PENDING_STATES and time.monotonic() < end:
        time.sleep(DB_POLL_S)
        operation.refresh_from_db()
    return operation


def _no_answer(test: AutoTestRun, operation: RemoteOperation) -> bool:
    """Did the command fail because the inverter never answered on its bus?"""
    # The engine's sentence for it (maintenance.dispatch), in the same language as here.
    silent = _("No answer from the inverter at address %(address)s: %(error)s") % {
        "address": test.inverter.modbus_address,
        "error": "",
    }
    return operation.error.startswith(silent.strip())


def store(test: AutoTestRun, values: dict[str, Any]) -> str:
    """Keep what one read of the AutoTest registers says; returns the inverter's test state."""
    steps = list(test.steps.all())
    for step in steps:
        prefix = f"autotest{step.index}_"
        state = str(values.get(prefix + "state") or AutoTestStepState.PENDING)
        if state not in AutoTestStepState.values:
            state = AutoTestStepState.PENDING
        step.state = state
        if values.get(prefix + "threshold") is not None:
            step.threshold = float(values[prefix + "threshold"])
        if values.get(prefix + "time_limit") is not None:
            step.time_limit_ms = int(values[prefix + "time_limit"])
        measured = values.get(prefix + "trip_value")
        trip_ms = values.get(prefix + "trip_time")
        tested = state in (AutoTestStepState.TESTING, AutoTestStepState.DONE)
        step.trip_value = float(measured) if tested and measured is not None else None
        step.trip_time_ms = int(trip_ms) if tested and trip_ms else None
        result = str(values.get(prefix + "result") or "")
        step.result = result if result in (AutoTestResult.PASS, AutoTestResult.FAIL) else ""
    AutoTestStep.objects.bulk_update(
        steps, ["state", "threshold", "time_limit_ms", "trip_value", "trip_time_ms", "result"]
    )
    fields: dict[str, Any] = {}
    if isinstance(values.get("autotest_step"), int):
        fields["current_step"] = values["autotest_step"]
    if isinstance(values.get("autotest_run_count"), int):
        fields["device_run"] = values["autotest_run_count"]
    if fields:
        _update(test, **fields)
    return str(values.get("autotest_state") or "")


def _update(test: AutoTestRun, **fields: Any) -> bool:
    """Change the run while it is in progress."""
    fields["updated_at"] = timezone.now()
    return bool(
        AutoTestRun.objects.filter(pk=test.pk, status__in=AUTOTEST_IN_PROGRESS).update(**fields)
    )


def _finish(test: AutoTestRun, status: str, *, reason: str = "", message: str = "") -> str:
    _update(
        test, status=status, reason=reason[:20], message=message[:500], finished_at=timezone.now()
    )
    return str(status)


# --- showing it -------------------------------------------------------------------------------


def reason_text(test: AutoTestRun) -> str:
    """Why the test ended as it did, as a sentence (empty when it simply finished)."""
    if test.is_stale:
        return _("The test was not followed to its end.")
    if test.reason:
        reason = REASONS.get(test.reason, test.reason)
        if test.status == AutoTestStatus.REFUSED:
            return _("The inverter refused to start the test: %(reason)s") % {"reason": reason}
        return _("The inverter aborted the test: %(reason)s") % {"reason": reason}
    return test.message


def format_value(value: float | None, unit: str) -> str:
    """253.0 V, 50.20 Hz; – when there is no value."""
    if value is None:
        return "–"
    digits = 2 if unit == "Hz" else 1
    return f"{value:.{digits}f} {unit}".strip()


def format_ms(value: int | None) -> str:
    return "–" if value is None else f"{value} ms"


def function_label(code: str) -> str:
    return str(FUNCTIONS.get(code, code))
