"""Celery tasks of ingest: offline detection for devices that stop uploading."""

from __future__ import annotations

from celery import shared_task

from ingest.service import sweep_offline


@shared_task(time_limit=60, soft_time_limit=50)
def sweep_offline_devices() -> dict[str, int]:
    """Every minute: gateways and inverters that missed their uploads become offline."""
    gateways, inverters = sweep_offline()
    return {"gateways": gateways, "inverters": inverters}
