"""Celery tasks of the device layer: offline detection and remote operations."""

from __future__ import annotations

from celery import shared_task

from inverters.ingest import sweep_offline


@shared_task(time_limit=60, soft_time_limit=50)
def sweep_offline_devices() -> dict[str, int]:
    """Every minute: gateways and inverters that missed their uploads become offline."""
    gateways, inverters = sweep_offline()
    return {"gateways": gateways, "inverters": inverters}


@shared_task(time_limit=120, soft_time_limit=110, acks_late=True, ignore_result=True)
def execute_operation(operation_id: int) -> str:
    """Send one queued remote operation and wait briefly for its answer."""
    from gateways.dispatch import execute

    return execute(operation_id)


@shared_task(time_limit=60, soft_time_limit=50, ignore_result=True)
def sweep_operations() -> dict[str, int]:
    """Every few seconds: finish answered operations, expire overdue ones, dispatch queued
    operations whose gateway came back."""
    from gateways.dispatch import sweep

    return sweep()
