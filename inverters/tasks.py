"""Celery beat tasks of the telemetry store."""

from __future__ import annotations

from celery import shared_task

from inverters.telemetry import create_partitions_ahead, drop_expired_partitions


@shared_task(time_limit=300, soft_time_limit=240)
def maintain_sample_partitions() -> dict[str, list[str]]:
    """Daily: partitions for the coming days exist before ingest needs them; old days go."""
    return {"created": create_partitions_ahead(), "dropped": drop_expired_partitions()}
