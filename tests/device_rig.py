"""The moving parts of end-to-end tests with real devices, shared by the test modules that
need them: a `celery worker` subprocess on the test database, task routing to it, an SMTP
server that keeps what it receives, and the simulated clock's usual start.

The broker is tests.services.Mosquitto; ingest runs in a thread (tests.ingest_helpers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from gateways.models import Gateway
from matricloud.celery import app as celery_app
from tests.services import BASE_DIR, database_url, wait_for


def start_worker(queue: str, broker_url: str, log_path: Path, **env: str) -> subprocess.Popen:
    """`celery worker` on the test database, as production runs it (one process), consuming
    only `queue`; `env` adds settings (MEDIA_ROOT, EMAIL_URL…)."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MQTT_URL": broker_url,
        "DJANGO_SETTINGS_MODULE": "matricloud.settings",
        "REMOTE_OPERATION_REPLY_WAIT_S": "20",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "matricloud", "worker", "--pool", "solo"]
        + ["--queues", queue, "--without-gossip", "--without-mingle", "--without-heartbeat"]
        + ["--loglevel", "INFO"],
        cwd=BASE_DIR,
        env=environment,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: "ready." in log_path.read_text(errors="replace"), 60, "celery worker")
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    """Stop `proc` if it still runs: politely, then for good after 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def tasks_to(queue: str):
    """Send the tasks queued meanwhile to `queue` (the test's own worker)."""
    old = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield
    finally:
        celery_app.conf.task_default_queue = old


def gateway_status(gateway: Gateway) -> str:
    return Gateway.objects.values_list("status", flat=True).get(pk=gateway.pk)


def yesterday_noon_in_rome() -> float:
    """The simulated clock starts at a recent noon, so samples stay inside retention and the
    night is twelve simulated hours away."""
    rome = ZoneInfo("Europe/Rome")
    day = (dt.datetime.now(rome) - dt.timedelta(days=1)).date()
    return dt.datetime.combine(day, dt.time(12), rome).timestamp()


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts, with its envelope recipients
    in `X-Envelope-To`."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"
