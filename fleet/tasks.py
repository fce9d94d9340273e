"""Celery tasks of the commissioning reports (guide §6.2.7). The services
(fleet/commissioning_services.py) enqueue them on commit; the work is in fleet/commissioning.py.
Found by the Celery app's autodiscovery like every app's tasks.py."""

from __future__ import annotations

from celery import shared_task

from fleet import commissioning

# Reading a few dozen inverters waits for their answers (READ_WAIT_S at most after the last
# read is sent) and drawing the PDF takes a second or two; well under fleet.models.STALE_AFTER.
BUILD_SOFT_LIMIT_S = 600
BUILD_HARD_LIMIT_S = 660


@shared_task(
    time_limit=BUILD_HARD_LIMIT_S,
    soft_time_limit=BUILD_SOFT_LIMIT_S,
    acks_late=True,
    ignore_result=True,
)
def build_commissioning_report(report_id: int, generation: int) -> str:
    """Read the devices, draw and store the PDF, mail it if the report names an address."""
    return commissioning.build(report_id, generation)


@shared_task(time_limit=90, soft_time_limit=80, ignore_result=True)
def email_commissioning_report(report_id: int) -> str:
    """Send Email: mail the finished PDF (again) to the report's address."""
    return commissioning.email_report(report_id)


@shared_task(time_limit=60, soft_time_limit=50, ignore_result=True)
def refresh_home_snapshot() -> dict[str, int]:
    """Home's live figures of every company (fleet/snapshot.py), every
    HOME_SNAPSHOT_INTERVAL_S; first any site status a race left behind is put right
    (fleet.queries.reconcile_site_statuses)."""
    from fleet import snapshot
    from fleet.queries import reconcile_site_statuses

    corrected = reconcile_site_statuses()
    taken = snapshot.refresh()
    return {"companies": len(taken.paths), "statuses_corrected": corrected}


# AutoTest: the sequence takes about a minute on the inverter; fleet.autotest.RUN_LIMIT_S bounds
# the following, well under fleet.models.AUTOTEST_STALE_AFTER.
AUTOTEST_SOFT_LIMIT_S = 420
AUTOTEST_HARD_LIMIT_S = 480


@shared_task(
    time_limit=AUTOTEST_HARD_LIMIT_S,
    soft_time_limit=AUTOTEST_SOFT_LIMIT_S,
    acks_late=True,
    ignore_result=True,
)
def run_autotest(run_id: int) -> str:
    """Send an AutoTest's Start command and store each step as the inverter reports it."""
    from fleet import autotest

    return autotest.run(run_id)
