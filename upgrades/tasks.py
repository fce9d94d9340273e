"""Celery entry points of the rollout engine (upgrades/rollout.py)."""

from celery import shared_task


@shared_task(ignore_result=True)
def advance_upgrades() -> None:
    """Placeholder until the rollout engine lands: nothing to advance."""
