"""The services of a running launcher, for the other processes of this checkout.

`python -m matricloud run` (and `services`) writes `<data dir>/services.env` once its services
answer and removes it when it stops. The settings take from it every service URL that is not
set in the environment, so `manage.py fleet_status`, `shell` or a Celery worker started in a
second terminal talk to the run's PostgreSQL, Redis and broker (as the portal's broker account)
without anyone copying URLs. A variable that is set always wins.

The file names the launcher's pid and start time. Once that process is gone (killed, machine
restarted) the file is stale and is ignored with a warning on stderr, rather than pointing a
command at services that may have died with it.

Standard library only: the settings import this module.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

FILE_NAME = "services.env"
SERVICE_URLS = ("DATABASE_URL", "REDIS_URL", "MQTT_URL")
PID_KEY = "MATRICLOUD_RUN_PID"
STARTED_KEY = "MATRICLOUD_RUN_STARTED"


def path(data_dir: Path | str) -> Path:
    return Path(data_dir) / FILE_NAME


def write(data_dir: Path | str, urls: Mapping[str, str], *, command: str = "run") -> Path:
    """Record this process's service URLs; readable by its user only (URLs hold passwords).

    Written to a temporary name and renamed, so a reader never sees half a file."""
    target = path(data_dir)
    pid = os.getpid()
    lines = [
        f"# The services of `python -m matricloud {command}` (pid {pid}). Django settings use",
        "# them for every URL variable that is not set, while that process runs.",
        "# Removed when it stops.",
        f"{PID_KEY}={pid}",
        f"{STARTED_KEY}={_process_start(pid) or ''}",
        *(f"{var}={shlex.quote(urls[var])}" for var in SERVICE_URLS if urls.get(var)),
    ]
    staging = target.with_name(f".{FILE_NAME}.{pid}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when a staging file of an earlier crash was still there
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(staging, target)
    return target


def remove(data_dir: Path | str) -> None:
    """Remove the file if this process wrote it (another launcher may have replaced it).

    Never raises: it runs while the launcher stops, which must go on."""
    with contextlib.suppress(OSError):
        values = read(data_dir)
        if values is not None and values.get(PID_KEY) == str(os.getpid()):
            path(data_dir).unlink(missing_ok=True)


def remove_stale(data_dir: Path | str) -> None:
    """Remove a file whose launcher is gone, so that nobody is warned about it any more."""
    with contextlib.suppress(OSError):
        values = read(data_dir)
        if values is not None and not owner_alive(values):
            path(data_dir).unlink(missing_ok=True)


def read(data_dir: Path | str) -> dict[str, str] | None:
    """The file's KEY=value lines (shell quoting), or None when there is no file."""
    try:
        text = path(data_dir).read_text()
    except FileNotFoundError:
        return None
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:  # unbalanced quotes: not a line of ours
            continue
        if len(words) == 1 and "=" in words[0]:
            key, _, value = words[0].partition("=")
            values[key] = value
    return values


def owner_alive(values: Mapping[str, str]) -> bool:
    """True while the launcher that wrote the file runs (its pid, not a reused one)."""
    try:
        pid = int(values.get(PID_KEY, ""))
    except ValueError:
        return False
    started = _process_start(pid)
    if started is None:
        return False
    recorded = values.get(STARTED_KEY, "")
    return not (recorded and started) or recorded == started


def use_live_services(
    data_dir: Path | str, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Set the unset service URLs from a live launcher's file; returns the ones taken.

    Exported into the environment (like a .env file) so that the processes a command starts
    use the same services. A stale file is ignored with a warning: the command then uses the
    defaults, and says why, instead of silently talking to services that are gone."""
    environ = os.environ if environ is None else environ
    unset = [var for var in SERVICE_URLS if not environ.get(var)]
    if not unset:
        return {}
    try:
        values = read(data_dir)
    except OSError as error:
        print(f"matricloud: ignoring {path(data_dir)}: {error}", file=sys.stderr, flush=True)
        return {}
    if values is None:
        return {}
    if not owner_alive(values):
        print(
            f"matricloud: ignoring {path(data_dir)}: the launcher that wrote it "
            f"(pid {values.get(PID_KEY, '?')}) has stopped, so its services may be gone. "
            f"Start `make run` again, set {', '.join(unset)}, or delete the file.",
            file=sys.stderr,
            flush=True,
        )
        return {}
    taken = {var: values[var] for var in unset if values.get(var)}
    environ.update(taken)
    return taken


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks after boot: None when there is no such process
    (or only its zombie), "" when it exists but the system does not say when it started."""
    if Path("/proc/self/stat").exists():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        return None if fields[0] == "Z" else fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""
