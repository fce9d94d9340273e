"""The Celery application: reads CELERY_* settings and finds every app's tasks.py."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matricloud.settings")

app = Celery("matricloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _usable_database(**_kwargs) -> None:
    """Connections are reused across tasks: drop one that broke or outlived CONN_MAX_AGE."""
    from django.db import close_old_connections

    close_old_connections()
