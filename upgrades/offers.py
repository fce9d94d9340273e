"""Offering a job to one device: a new job id, the target `offered`, the `ota` command sent.

The device then pulls the image from the delivery service (upgrades/delivery.py) and reports
how far it got; nothing waits here for the command's reply. The command's id is the job id, so
a device that refuses the offer outright (its reply with `ok: false`) is matched to the target
by the delivery service.
"""

from __future__ import annotations

import logging
import time
import uuid

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from devices import ota, protocol
from upgrades.models import NOT_STARTED, DeviceKind, TargetState, UpgradeTarget

log = logging.getLogger("upgrades.offers")


def build_offer(target: UpgradeTarget, job: str) -> ota.Offer:
    """The `ota` command's params for `target` (its task's release and model)."""
    task = target.task
    release = task.release
    common = {
        "job": job,
        "size": release.size,
        "sha256": release.sha256,
        "version": release.version,
        "model": task.model,
        "chunk": settings.FIRMWARE_CHUNK_BYTES,
    }
    if task.kind == DeviceKind.GATEWAY or target.inverter_id is None:
        return ota.Offer(**common)
    address = target.modbus_address or target.inverter.modbus_address
    return ota.Offer(
        **common,
        target=ota.TARGET_INVERTER,
        address=address,
        firmware_type=task.firmware_type,
    )


def current_version(target: UpgradeTarget) -> str:
    """What the device runs now, as the portal last heard it."""
    if target.inverter_id is None:
        return target.gateway.firmware_version or ""
    # Uploads keep a board under the register map's name (DSP, SLAVE_DSP: the firmware type
    # in capitals), and so does the delivery service when a job succeeds.
    versions = {str(k).lower(): v for k, v in (target.inverter.firmware_versions or {}).items()}
    return str(versions.get(target.task.firmware_type.lower(), "") or "")[:32]


def offer_job(target: UpgradeTarget | int) -> bool:
    """Give `target` a new job and send it the `ota` command. False (and no change) when the
    target is not waiting or skipped any more, or the broker is out of reach."""
    pk = target.pk if isinstance(target, UpgradeTarget) else target
    return offer_jobs([pk]) == 1


def offer_jobs(pks: list[int]) -> int:
    """`offer_job` for many targets at once: one SELECT, one UPDATE and the commands published
    after the commit. A rollout opening a wave of a thousand gateways would otherwise spend a
    round trip to the database per device while the first ones already download. Returns how
    many were offered."""
    if not pks:
        return 0
    from maintenance.dispatch import reply_waiter

    try:
        waiter = reply_waiter()  # before the UPDATE: a broker outage leaves the targets waiting
    except OSError as exc:
        log.warning("%d target(s) stay waiting: MQTT broker unreachable (%s)", len(pks), exc)
        return 0
    targets = {
        t.pk: t
        for t in UpgradeTarget.objects.select_related("task__release", "gateway", "inverter")
        .filter(pk__in=pks, state__in=NOT_STARTED)
        .order_by("pk")
    }
    if not targets:
        return 0
    jobs = {pk: uuid.uuid4().hex for pk in targets}
    rows = [(pk, jobs[pk], current_version(t)[:32]) for pk, t in targets.items()]
    values = ", ".join(["(%s::bigint, %s, %s)"] * len(rows))
    table = UpgradeTarget._meta.db_table
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS t
               SET state = %s, job = v.job, offered_at = %s, reported_at = NULL,
                   finished_at = NULL, received = 0, reason = '', reported_version = '',
                   attempt = t.attempt + 1,
                   from_version = CASE WHEN t.from_version = '' THEN v.from_version
                                       ELSE t.from_version END
              FROM (VALUES {values}) AS v(id, job, from_version)
             WHERE t.id = v.id AND t.state = ANY(%s)
         RETURNING t.id
            """,
            [
                TargetState.OFFERED,
                now,
                *[x for row in rows for x in row],
                [str(s) for s in NOT_STARTED],
            ],
        )
        offered = [row[0] for row in cursor.fetchall()]
        deadline_ms = int((time.time() + settings.UPGRADE_OFFER_DEADLINE_S) * 1000)
        commands = []
        for pk in offered:
            target = targets[pk]
            offer = build_offer(target, jobs[pk])
            command = protocol.Command(protocol.OTA, offer.to_params(), deadline_ms, id=jobs[pk])
            commands.append((protocol.topic(target.gateway.serial_number, protocol.CMD), command))

        def publish() -> None:
            # Only once the jobs are committed: a device must never pull a job the cloud forgot.
            for topic, command in commands:
                waiter.client.publish(topic, command.encode(), qos=protocol.QOS)

        transaction.on_commit(publish)
    return len(offered)
