"""Does the README run hold its demo fleet? `make run` on embedded defaults, watched for a while.

Starts `python -m matricloud run` exactly as `make run` does — embedded PostgreSQL, Redis and
MQTT broker, the demo fleet with its 30-day backfill — on a fresh data directory and free
ports, then watches it:

- from the outside, as the portal's broker account: the arrival time of every gateway's
  telemetry, so the longest silence of any gateway after the simulator's clock turned live
  ("backfill done, clock is live") is measured to the message, including the time from the
  switch to each gateway's first live upload and from its last upload to the end of the run;
- every `--every` seconds, `manage.py fleet_status --json` (what ingest stored: gateways
  online, inverters reporting, samples, rejected messages) and the broker's resident memory.

`--beside "make test"` runs a command over and over next to the soak (load on the machine).
Ctrl-C, or the end of `--minutes`, stops the run the way a user would (SIGINT to the launcher).

    .venv/bin/python bench/fleet_soak.py --minutes 30
    .venv/bin/python bench/fleet_soak.py --minutes 30 --beside "make test"

The last line printed is one JSON object: gateways_total, min_gateways_online_after_backfill,
longest_gateway_silence_s, inverters_reporting_min, samples, rejected, broker_rss_mib, …
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))

LIVE_MARKER = "backfill done, clock is live"
SERVICE_URLS = ("DATABASE_URL", "REDIS_URL", "MQTT_URL")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LauncherOutput:
    """Everything the launcher and its children print, kept in a file and scanned for marks."""

    def __init__(self, proc: subprocess.Popen, logfile: Path) -> None:
        self.proc = proc
        self.logfile = logfile
        self.marks: dict[str, float] = {}
        self.urls: dict[str, str] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        url_re = re.compile(r"^\s*(DATABASE_URL|REDIS_URL|MQTT_URL)=(\S+)")
        with open(self.logfile, "w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                match = url_re.match(line)
                if match:
                    self.urls.setdefault(match.group(1), match.group(2))
                for mark in (LIVE_MARKER, "MatriCloud is running at", "restarting it"):
                    if mark in line:
                        self.marks.setdefault(mark, time.time())

    def wait_for(self, mark: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while mark not in self.marks:
            if self.proc.poll() is not None:
                raise SystemExit(f"the run exited ({self.proc.returncode}); see {self.logfile}")
            if time.monotonic() > deadline:
                raise SystemExit(f"no {mark!r} after {timeout:.0f} s; see {self.logfile}")
            time.sleep(0.2)
        return self.marks[mark]


class TelemetryWatch:
    """The portal's broker account, listening to every gateway's telemetry topic."""

    def __init__(self, url: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        parsed = urlparse(url)
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fleet-soak-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(parsed.username, parsed.password)
        self.client.on_connect = lambda c, *_: c.subscribe("mc/v1/+/telemetry", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(parsed.hostname, parsed.port, 30)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        serial = message.topic.split("/")[2]
        with self.lock:
            self.arrivals.setdefault(serial, []).append(time.time())

    def silences(self, since: float, until: float, serials: list[str]) -> dict[str, float]:
        """Per gateway, the longest time without telemetry within [since, until]."""
        out = {}
        with self.lock:
            for serial in serials:
                times = [since, *(t for t in self.arrivals.get(serial, []) if t >= since), until]
                out[serial] = max(b - a for a, b in zip(times, times[1:], strict=False))
        return out

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def portal_mqtt_url(data: Path, masked_url: str) -> str:
    """The banner masks the portal's password; the launcher keeps it in the data folder."""
    secret = (data / "portal-mqtt.secret").read_text().strip()
    parsed = urlparse(masked_url)
    return f"mqtt://portal:{secret}@{parsed.hostname}:{parsed.port}"


def broker_rss_mib(port: int) -> float | None:
    """Resident memory of the embedded broker process listening on `port`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"mqtt_broker.mjs" not in b" ".join(cmdline):
                continue
            if f"127.0.0.1:{port}".encode() not in cmdline:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return None


def fleet_status(env: dict[str, str]) -> dict | None:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "fleet_status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BASE_DIR,
    )
    if result.returncode != 0:
        print(f"fleet_status failed: {result.stderr.strip()[-300:]}", flush=True)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


class Beside:
    """A command run over and over in the background until stopped (load on the machine)."""

    def __init__(self, command: str, logfile: Path) -> None:
        self.command = command
        self.logfile = logfile
        self.runs: list[int] = []
        self.proc: subprocess.Popen | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_URLS}
        with open(self.logfile, "a") as out:
            while not self.stopping:
                self.proc = subprocess.Popen(
                    self.command,
                    shell=True,
                    cwd=BASE_DIR,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self.runs.append(self.proc.wait())

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.thread.join(10)


def soak(args: argparse.Namespace) -> dict:
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="fleet-soak-")).resolve()
    if args.data_dir and any(data.iterdir()):
        raise SystemExit(f"{data} is not empty: the soak starts from a fresh data folder")
    mqtt_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_URLS}
    env |= {
        "MATRICLOUD_DATA_DIR": str(data),
        "MATRICLOUD_MQTT_PORT": str(mqtt_port),
        "PYTHONUNBUFFERED": "1",
    }
    began = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "matricloud", "run", "--addr", f"127.0.0.1:{web_port}"],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = LauncherOutput(proc, data.parent / f"{data.name}.log")
    print(f"make run on {data} (log {output.logfile}), web port {web_port}", flush=True)
    beside = Beside(args.beside, data.parent / f"{data.name}-beside.log") if args.beside else None
    watch = None
    samples: list[dict] = []
    try:
        output.wait_for("MatriCloud is running at", timeout=600)
        status_env = {**env, **output.urls}
        mqtt_url = portal_mqtt_url(data, output.urls["MQTT_URL"])
        mqtt_port = urlparse(mqtt_url).port
        watch = TelemetryWatch(mqtt_url)
        live_at = output.wait_for(LIVE_MARKER, timeout=900)
        print(f"clock live {live_at - began:.0f} s after start", flush=True)
        end = live_at + args.minutes * 60
        while time.time() < end:
            time.sleep(min(args.every, max(end - time.time(), 0)))
            status = fleet_status(status_env) or {}
            status["broker_rss_mib"] = broker_rss_mib(mqtt_port)
            status["t_s"] = round(time.time() - live_at)
            samples.append(status)
            print(json.dumps(status), flush=True)
        until = time.time()
        # Every demo gateway, heard or not (the launcher provisions each one a secret).
        serials = sorted(json.loads((data / "gateway-credentials.json").read_text()))
        gateways_total = max((s.get("gateways_total") or 0 for s in samples), default=0)
        silences = watch.silences(live_at, until, serials)
        longest = max(silences.items(), key=lambda item: item[1], default=("", None))
    finally:
        if watch is not None:
            watch.stop()
        if beside is not None:
            beside.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        output.thread.join(10)
        if not args.data_dir and not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    def values(key: str) -> list:
        return [s[key] for s in samples if s.get(key) is not None]

    return {
        "minutes": args.minutes,
        "beside": args.beside or None,
        "beside_runs": None if beside is None else len(beside.runs),
        "beside_exit_codes": None if beside is None else sorted(set(beside.runs)),
        "backfill_s": round(live_at - began),
        "gateways_total": gateways_total,
        "gateways_heard_live": sum(1 for s in serials if silences[s] < until - live_at),
        "min_gateways_online_after_backfill": min(values("gateways_online"), default=None),
        "longest_gateway_silence_s": None if longest[1] is None else round(longest[1], 1),
        "longest_silent_gateway": longest[0],
        "inverters_total": max(values("inverters_total"), default=None),
        "inverters_reporting_min": min(values("inverters_reporting"), default=None),
        "samples": max(values("samples"), default=None),
        "rejected": max(values("rejected_messages"), default=None),
        "broker_rss_mib": round(max(values("broker_rss_mib"), default=0), 1),
        "broker_restarts": int("restarting it" in output.marks),
        "status_samples": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="after the clock is live")
    parser.add_argument("--every", type=float, default=30.0, help="fleet_status every N s")
    parser.add_argument("--beside", help='a command run over and over meanwhile ("make test")')
    parser.add_argument("--data-dir", help="an empty folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()
    result = soak(args)
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
