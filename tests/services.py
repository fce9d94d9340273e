"""The real services integration tests start and talk to: a private Mosquitto per test on a
free port, polling until something happens, and the test database's URL for child processes
(ingest, Celery workers) started from a test.

The `mosquitto_factory`, `mosquitto` and `clean_samples` fixtures in conftest.py build on these.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from devices import protocol

BASE_DIR = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# The broker configuration production ships; tests copy its limits and queue settings.
SHIPPED_CONF = BASE_DIR / "deploy" / "mosquitto" / "mosquitto.conf"
needs_mosquitto = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto is not installed"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Poll `check` until it returns something true (and return that), or fail after
    `timeout` seconds naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Mosquitto:
    """`mosquitto -c <our config>` on a free port, restartable with its persistence."""

    def __init__(self, workdir: Path, extra: str = "", *, anonymous: bool = True) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            # Running as root, mosquitto would switch to the mosquitto user, who cannot read
            # the test's private directory.
            "user root\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
            f"{extra}\n"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def broker(self) -> protocol.BrokerAddress:
        return protocol.BrokerAddress("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._accepts, timeout=10, what="mosquitto to listen")
        return self

    def _accepts(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


# Not named test_*: a test module importing it would have pytest collect it as a test.
def database_url() -> str:
    """The URL of the database this test run uses, for a child process's DATABASE_URL."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    options = db.get("OPTIONS", {})
    # A socket directory may come as HOST or, from a `?host=` URL, as OPTIONS["host"].
    host = db.get("HOST") or options.get("host") or "127.0.0.1"
    port = db.get("PORT") or options.get("port") or 5432
    if host.startswith("/"):
        return f"postgresql://{auth}@/{db['NAME']}?host={host}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{db['NAME']}"
