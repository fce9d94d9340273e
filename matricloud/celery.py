"""The Celery application: reads CELERY_* settings and finds every app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matricloud.settings")

app = Celery("matricloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
