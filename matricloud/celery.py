"""The Celery application: reads CELERY_* settings and finds every app's tasks.py."""

import os
import time

from celery import Celery
from celery.signals import task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matricloud.settings")

app = Celery("matricloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


_checked_at = 0.0
HEALTH_CHECK_EVERY_S = 10.0


@task_prerun.connect
def _usable_database(**_kwargs) -> None:
    """Connections are reused across tasks: drop one that broke or outlived CONN_MAX_AGE.

    The check costs a round trip to PostgreSQL, so it runs at most every few seconds; a
    remote operation is a few milliseconds of work and should not pay it every time."""
    global _checked_at
    now = time.monotonic()
    if now - _checked_at < HEALTH_CHECK_EVERY_S:
        return
    _checked_at = now
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _load_register_maps(**_kwargs) -> None:
    """Parse the register maps once, before the pool forks: the first remote operation of a
    worker would otherwise wait about two seconds for them."""
    from devices.registermap import RegisterMap, list_models

    for model in list_models():
        RegisterMap.for_model(model)
