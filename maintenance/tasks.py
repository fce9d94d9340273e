"""Celery tasks of the remote-operations engine, and the one place that hands operations to
them: `remote` records an operation and calls `execute_operation.delay`; `dispatch` sends and
reads, and never enqueues, so the modules import one way (remote → tasks → dispatch)."""

from __future__ import annotations

from celery import shared_task

from maintenance import dispatch


@shared_task(time_limit=120, soft_time_limit=110, acks_late=True, ignore_result=True)
def execute_operation(operation_id: int) -> str:
    """Send one queued remote operation and wait briefly for its answer."""
    return dispatch.execute(operation_id)


@shared_task(time_limit=60, soft_time_limit=50, ignore_result=True)
def sweep_operations() -> dict[str, int]:
    """Every few seconds: finish answered operations, expire overdue ones, dispatch queued
    operations whose gateway came back."""
    counts = dispatch.sweep()
    counts["dispatched"] = send_ready()
    return counts


def send_ready(gateway_ids: list[int] | None = None) -> int:
    """Queued operations that can go now (of `gateway_ids`, or of every online gateway) to a
    worker; returns how many."""
    pks = dispatch.ready_to_send(gateway_ids)
    for pk in pks:
        execute_operation.delay(pk)
    return len(pks)


def on_gateways_online(sender: object, gateway_ids: list[int], **kwargs: object) -> None:
    """Receiver of gateways.signals.gateways_online (connected in MaintenanceConfig.ready)."""
    send_ready(gateway_ids)
