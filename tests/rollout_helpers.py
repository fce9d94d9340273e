"""Building blocks of the rollout engine's tests: releases with real image files, tasks with
their devices in waves (as the task services create them), the latest values a precondition
reads, and a look at the engine's state between ticks."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from django.core.files.base import ContentFile
from django.utils import timezone

from alarms.models import Alarm, AlarmLevel, AlarmStatus
from devices import ota
from devices.decoding import codec_for_model
from gateways.models import Gateway, GatewayStatus
from inverters.models import Inverter, InverterStatus
from inverters.telemetry import InverterLatest, layout_id_for
from upgrades.models import (
    IN_FLIGHT,
    DeviceKind,
    FirmwareRelease,
    FirmwareType,
    ReleaseModel,
    TargetState,
    TaskState,
    UpgradeTarget,
    UpgradeTask,
)

GATEWAY_MODEL = "CPS WiFi Kit"


def make_release(
    kind: str = DeviceKind.GATEWAY,
    firmware_type: str = FirmwareType.GATEWAY,
    model: str = GATEWAY_MODEL,
    version: str = "2.0.0",
    size: int = 4096,
    seed: str = "",
) -> FirmwareRelease:
    """A release whose stored file is a real image built for `model` (devices.ota)."""
    image = ota.build_image(model, firmware_type, version, size, seed)
    release = FirmwareRelease(
        kind=kind,
        firmware_type=firmware_type,
        version=version,
        file_name=f"{model}-{version}.bin",
        size=len(image),
        sha256=ota.sha256_hex(image),
    )
    release.file.save(release.file_name, ContentFile(image), save=False)
    release.save()
    ReleaseModel.objects.create(
        release=release, kind=kind, firmware_type=firmware_type, model=model, version=version
    )
    return release


def wave_of_each(n: int, waves: Sequence[int]) -> list[int]:
    """The wave index of each of `n` devices (in serial-number order): wave i holds the
    devices up to ceil(n * waves[i] / 100), at least one more than the wave before; empty
    waves are dropped, so indexes run 0, 1, 2… without gaps."""
    out: list[int] = []
    upto = 0
    index = 0
    for pct in waves:
        end = min(n, max(math.ceil(n * pct / 100), upto + 1))
        if end <= upto:
            continue
        out.extend([index] * (end - upto))
        upto = end
        index += 1
    out.extend([max(index - 1, 0)] * (n - len(out)))
    return out


def make_task(
    company,
    release: FirmwareRelease,
    devices: Sequence[Gateway | Inverter],
    *,
    waves: Sequence[int] = (100,),
    state: str = TaskState.RUNNING,
    **fields,
) -> UpgradeTask:
    """A task on `devices` (gateways, or inverters of the release's model), targets waiting
    in their waves; `fields` set thresholds, max_parallel, window, preconditions…"""
    model = release.models.first().model
    task = UpgradeTask.objects.create(
        company=company,
        kind=release.kind,
        release=release,
        firmware_type=release.firmware_type,
        model=model,
        state=state,
        waves=list(waves),
        **fields,
    )
    ordered = sorted(devices, key=lambda d: d.serial_number)
    for device, wave in zip(ordered, wave_of_each(len(ordered), waves), strict=True):
        if isinstance(device, Inverter):
            UpgradeTarget.objects.create(
                task=task,
                gateway_id=device.gateway_id,
                inverter=device,
                modbus_address=device.modbus_address,
                wave=wave,
            )
        else:
            UpgradeTarget.objects.create(task=task, gateway=device, wave=wave)
    return task


def online(*devices: Gateway | Inverter) -> None:
    for device in devices:
        if isinstance(device, Inverter):
            Inverter.objects.filter(pk=device.pk).update(status=InverterStatus.RUNNING)
        else:
            Gateway.objects.filter(pk=device.pk).update(status=GatewayStatus.ONLINE)


def set_latest(inverter: Inverter, soc: float | None = 80.0, **status_keys: str) -> None:
    """The inverter's newest upload: battery SOC and status points given as the register
    map's option keys (work_mode_active="forced_off_grid", grid_status="lost"…)."""
    codec = codec_for_model(inverter.model)
    layout_id = layout_id_for(codec)
    keys = list(codec.rest_keys)
    vals: list[float | None] = [None] * len(keys)
    run_status = None
    rm = codec.rm
    for key, option in status_keys.items():
        value = next(o.value for o in rm.point(key).enum if o.key == option)
        if key == "run_status":
            run_status = value
        else:
            vals[keys.index(key)] = float(value)
    now = timezone.now()
    InverterLatest.objects.update_or_create(
        inverter=inverter,
        defaults={
            "company_id": inverter.company_id,
            "site_id": inverter.site_id,
            "ts": now,
            "received_at": now,
            "layout_id": layout_id,
            "batt_soc": soc,
            "run_status": run_status,
            "vals": vals,
        },
    )


def raise_urgent_alarm(inverter: Inverter, code: str = "F01") -> Alarm:
    return Alarm.objects.create(
        inverter=inverter,
        company_id=inverter.company_id,
        site_id=inverter.site_id,
        code=code,
        level=AlarmLevel.URGENT,
        message="test alarm",
        occurred_at=timezone.now(),
    )


def recover(alarm: Alarm) -> None:
    Alarm.objects.filter(pk=alarm.pk).update(
        status=AlarmStatus.RECOVERED, recovered_at=timezone.now()
    )


def report(target: UpgradeTarget, state: str, *, ago_s: float = 0, **fields) -> None:
    """What the delivery service records when the device reports `state` (for tests of the
    engine alone; the end-to-end tests let the real service do it)."""
    when = timezone.now() - dt.timedelta(seconds=ago_s)
    updates = {"state": state, "reported_at": when, **fields}
    if state in (TargetState.SUCCEEDED, TargetState.FAILED):
        updates["finished_at"] = when
    UpgradeTarget.objects.filter(pk=target.pk).update(**updates)


def states(task: UpgradeTask) -> dict[str, int]:
    """Devices of the task by state (only the states some device is in)."""
    out: dict[str, int] = {}
    for state in task.targets.values_list("state", flat=True):
        out[state] = out.get(state, 0) + 1
    return out


def in_flight(task: UpgradeTask) -> int:
    return task.targets.filter(state__in=IN_FLIGHT).count()


def fresh(task: UpgradeTask) -> UpgradeTask:
    task.refresh_from_db()
    return task


def target_of(task: UpgradeTask, device: Gateway | Inverter) -> UpgradeTarget:
    if isinstance(device, Inverter):
        return task.targets.get(inverter=device)
    return task.targets.get(gateway=device, inverter__isnull=True)
