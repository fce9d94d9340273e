"""A second terminal beside `make run`: manage.py finds the run's services without variables.

The launcher records its services in `<data dir>/services.env` while it runs; the settings use
the file for every URL variable that is not set, and ignore (with a warning) a file whose
launcher is gone.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from matricloud import runfile, stack

BASE_DIR = Path(__file__).resolve().parent.parent
URLS = {
    "DATABASE_URL": "postgresql://postgres@/matricloud?host=/tmp/run-file-test&port=5432",
    "REDIS_URL": "unix:///tmp/run-file-test/redis.socket",
    "MQTT_URL": "mqtt://portal:s3cret@127.0.0.1:18831?version=311",
}
SHOW_SETTINGS = """
import json
from django.conf import settings
print(json.dumps({
    "DATABASE_HOST": settings.DATABASES["default"].get("OPTIONS", {}).get("host"),
    "REDIS_URL": settings.REDIS_URL,
    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    "MQTT_URL": settings.MQTT_URL,
    "DEBUG": settings.DEBUG,
}))
"""


def second_terminal(data_dir: Path, **variables: str) -> dict[str, str]:
    """The environment of a new shell: no service URLs, nothing the launcher exports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in stack.SERVICE_URLS and not k.startswith(("DJANGO_", "MATRICLOUD_"))
    }
    env.update(MATRICLOUD_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="matricloud.settings")
    env.update(variables)
    return env


def settings_seen(env: dict[str, str]) -> tuple[dict, str]:
    """The settings a new process computes in this environment, and what it said on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


# --- the settings and the file --------------------------------------------------------------


def test_settings_use_the_services_of_a_live_run_when_no_variable_is_set(tmp_path):
    runfile.write(tmp_path, URLS)  # this process stands in for the running launcher

    seen, warnings = settings_seen(second_terminal(tmp_path))

    assert seen["DATABASE_HOST"] == "/tmp/run-file-test"
    assert seen["REDIS_URL"] == URLS["REDIS_URL"]
    assert seen["CELERY_BROKER_URL"] == "redis+socket:///tmp/run-file-test/redis.socket"
    assert seen["MQTT_URL"] == URLS["MQTT_URL"], "ingest and the worker need the run's account"
    assert warnings == ""


def test_a_variable_that_is_set_wins_over_the_file(tmp_path):
    runfile.write(tmp_path, URLS)

    seen, _ = settings_seen(second_terminal(tmp_path, REDIS_URL="redis://cache.example:6379/3"))

    assert seen["REDIS_URL"] == "redis://cache.example:6379/3"
    assert seen["MQTT_URL"] == URLS["MQTT_URL"], "the unset ones still come from the file"


def test_the_file_of_a_launcher_that_is_gone_is_ignored_with_a_warning(tmp_path):
    # Written by a process that has exited since, like a launcher killed with SIGKILL.
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from matricloud import runfile; runfile.write({str(tmp_path)!r}, {URLS!r})",
        ],
        cwd=BASE_DIR,
        check=True,
        timeout=60,
    )

    seen, warnings = settings_seen(second_terminal(tmp_path))

    assert seen["REDIS_URL"] != URLS["REDIS_URL"]
    assert seen["MQTT_URL"] != URLS["MQTT_URL"]
    assert f"ignoring {tmp_path / 'services.env'}" in warnings
    assert "has stopped" in warnings


def test_a_reused_pid_does_not_make_a_stale_file_live(tmp_path):
    runfile.write(tmp_path, URLS)
    values = runfile.read(tmp_path)
    assert runfile.owner_alive(values)

    # The pid is alive again, but it is another process: it started at another time.
    values[runfile.STARTED_KEY] = str(int(values[runfile.STARTED_KEY]) - 1)

    assert not runfile.owner_alive(values)


def test_the_file_is_private_and_only_its_writer_removes_it(tmp_path):
    written = runfile.write(tmp_path, URLS)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600, "the broker URL holds a password"

    own_pid = f"{runfile.PID_KEY}={os.getpid()}\n"
    written.write_text(written.read_text().replace(own_pid, f"{runfile.PID_KEY}=1\n"))
    runfile.remove(tmp_path)
    assert written.exists(), "another launcher's file stays"

    runfile.write(tmp_path, URLS)
    runfile.remove(tmp_path)
    assert not written.exists()


def test_debug_is_off_unless_asked_for(tmp_path):
    seen, _ = settings_seen(second_terminal(tmp_path))
    assert seen["DEBUG"] is False

    seen, _ = settings_seen(second_terminal(tmp_path, DJANGO_DEBUG="1"))
    assert seen["DEBUG"] is True


# --- the real run ---------------------------------------------------------------------------


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the launcher exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_fleet_status_in_a_second_terminal_sees_the_fleet_of_make_run(tmp_path):
    data = tmp_path / "data"
    port = stack.free_port()
    log = tmp_path / "run.log"
    env = second_terminal(data, MATRICLOUD_MQTT_PORT=str(stack.free_port()))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "matricloud", "run", "--addr", f"127.0.0.1:{port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    services_file = data / "services.env"
    try:
        wait_until(services_file.exists, 180, "services.env", proc, log)
        recorded = runfile.read(data)
        assert recorded[runfile.PID_KEY] == str(proc.pid)
        assert recorded["DATABASE_URL"].startswith("postgresql://postgres@/matricloud?host=")
        assert recorded["REDIS_URL"].startswith("unix://")
        assert recorded["MQTT_URL"].startswith("mqtt://portal:"), "the portal's broker account"
        assert stat.S_IMODE(services_file.stat().st_mode) == 0o600

        status = subprocess.run(
            [sys.executable, "manage.py", "fleet_status", "--json"],
            cwd=BASE_DIR,
            env=second_terminal(data),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        fleet = json.loads(status.stdout)
        assert fleet["gateways_total"] > 0 and fleet["inverters_total"] > 0, fleet

        # The launcher turns debug on for its web server: Django's technical 404 page.
        wait_until(lambda: not stack.port_is_free("127.0.0.1", port), 60, "web", proc, log)
        code, body = get(f"http://127.0.0.1:{port}/no-such-page/")
        assert code == 404 and "Page not found at /no-such-page/" in body

        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not services_file.exists(), "a stopped run must not leave its services behind"
