"""Celery entry points of the rollout engine (upgrades/rollout.py)."""

from __future__ import annotations

from celery import shared_task

from upgrades import rollout


@shared_task(time_limit=120, soft_time_limit=100, ignore_result=True)
def advance_upgrades() -> dict:
    """Beat, every UPGRADE_TICK_S, and at once after a task changes: start due tasks, fail
    stalled devices, pause, open waves, offer jobs, complete tasks. Safe to run on several
    workers at once (each task is advanced by one of them) and to kill at any point."""
    return rollout.advance().as_dict()
