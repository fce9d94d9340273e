"""The firmware delivery service (`manage.py ota`): chunks out, device reports in.

One MQTT session (a fixed client id, persistent, QoS 1, manual acknowledgement) receives every
gateway's `mc/v1/{sn}/ota/req/{job}` (devices/ota.py) and the replies to `ota` commands. Two
threads do the work, so that a slow database never holds up chunks of jobs already known:

- the server answers ChunkRequests (a request may ask for a range of several chunks: it gets
  one response per chunk, in order, each read on its own): the jobs of all waiting requests are
  looked up in one
  query (then cached for a short while), the range is read from the release's stored file
  through Django's storage (one open handle per release, kept in a small LRU; seek and read
  exactly the range: an image is never read whole) or taken from a small LRU of the ranges read
  last, shared by all jobs, and published on the requester's own `ota/res/{job}`. A request
  whose job and range are both cached is answered at once on the MQTT client's thread instead.
  A request for a job that is unknown, over, another gateway's, or for bytes outside the image
  gets a ChunkResponse with an error. Responses waiting for the broker's PUBACK are bounded,
  which bounds the memory.
- the recorder turns StateReports into conditional UPDATEs of the target (a report for a job
  that is not the target's current one, or from another gateway, changes nothing; the steps and
  the successes of a batch are written together), and writes the bytes received of all targets
  in one statement every couple of seconds.

Messages are acknowledged once handled, so a crash leaves them with the broker; bad payloads
are counted, logged and acknowledged, never raised. The client reconnects (and subscribes
again) by itself; database errors are retried with backoff.
"""

from __future__ import annotations

import collections
import gc
import logging
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

import psycopg
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.db import connection, transaction
from django.db import utils as db_utils
from django.db.models import Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import ota, protocol
from upgrades.models import FINISHED, IN_FLIGHT, TargetState, UpgradeTarget

log = logging.getLogger("upgrades.delivery")

_TRANSIENT = (
    db_utils.OperationalError,
    db_utils.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
T = TargetState
# The states a report may move a target from: forward only, so a late or repeated report
# never takes a target back.
_ORDER = [T.OFFERED, T.DOWNLOADING, T.VERIFYING, T.INSTALLING, T.REBOOTING]
_MOVES_FROM = {
    ota.DOWNLOADING: _ORDER[:2],
    ota.VERIFYING: _ORDER[:3],
    ota.INSTALLING: _ORDER[:4],
    ota.REBOOTING: _ORDER[:5],
    ota.FAILED: list(IN_FLIGHT),
    # A device that succeeded after the rollout gave up on it ("no progress") tells the truth.
    ota.SUCCEEDED: [*IN_FLIGHT, T.FAILED],
}
_STEPS = [ota.VERIFYING, ota.INSTALLING, ota.REBOOTING]


@dataclass(frozen=True, slots=True)
class Job:
    """What serving and recording need of a target, cached by job id."""

    target_id: int
    serial: str
    file_name: str
    size: int
    state: str
    gateway_id: int
    inverter_id: int | None
    firmware_type: str
    version: str
    expires: float

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass
class Counters:
    requests: int = 0
    chunks: int = 0
    bytes: int = 0
    refused: int = 0
    reports: int = 0
    stale: int = 0
    bad: int = 0
    progress_writes: int = 0
    db_errors: int = 0
    connects: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ImageReader:
    """Ranges of stored release files, with a bounded LRU of open handles and a small LRU of
    the ranges read last (thread-safe: the network and the server thread both answer).

    A rollout sends the same image to a thousand gateways, which all ask for the same few
    ranges at about the same time: the range cache (`cache_bytes`, shared by every job) turns
    a thousand reads of a chunk into one, as a CDN in front of the storage would. An image is
    still never read whole for a device: a range comes from the cache or from the file."""

    def __init__(
        self, storage: Storage | None = None, max_open: int = 16, cache_bytes: int = 8 << 20
    ) -> None:
        self.storage = storage or default_storage
        self.max_open = max_open
        self.cache_bytes = cache_bytes
        self._handles: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._ranges: collections.OrderedDict[tuple[str, int, int], bytes] = (
            collections.OrderedDict()
        )
        self._cached = 0
        self._lock = threading.Lock()

    def read(self, name: str, offset: int, length: int) -> bytes:
        with self._lock:
            return self._read(name, offset, length)

    def has(self, name: str, offset: int, length: int) -> bool:
        """Whether this range is cached (reading it then touches no storage)."""
        return (name, offset, length) in self._ranges

    def _read(self, name: str, offset: int, length: int) -> bytes:
        key = (name, offset, length)
        data = self._ranges.get(key)
        if data is not None:
            self._ranges.move_to_end(key)
            return data
        data = self._read_file(name, offset, length)
        if len(data) == length and length <= self.cache_bytes:
            self._ranges[key] = data
            self._cached += length
            while self._cached > self.cache_bytes:
                _, dropped = self._ranges.popitem(last=False)
                self._cached -= len(dropped)
        return data

    def _read_file(self, name: str, offset: int, length: int) -> bytes:
        handle = self._handles.get(name)
        if handle is None:
            handle = self.storage.open(name, "rb")
            self._handles[name] = handle
            while len(self._handles) > self.max_open:
                _, oldest = self._handles.popitem(last=False)
                oldest.close()
        else:
            self._handles.move_to_end(name)
        try:
            handle.seek(offset)
            return handle.read(length)
        except (OSError, ValueError):
            self._handles.pop(name, None)
            handle.close()
            raise

    def close(self) -> None:
        with self._lock:
            while self._handles:
                self._handles.popitem()[1].close()
            self._ranges.clear()
            self._cached = 0


@dataclass(slots=True)
class _Incoming:
    serial: str
    job: str  # from the topic
    message: Any  # ChunkRequest | StateReport | Reply
    mid: int
    qos: int
    generation: int


class DeliveryService:
    def __init__(
        self,
        broker: protocol.BrokerAddress,
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
        storage: Storage | None = None,
        cache_ttl: float = 30.0,
        cache_size: int = 20_000,
        progress_interval: float = 2.0,
        log_interval: float = 60.0,
        max_pending: int = 256,
        receive_maximum: int = 2000,
        chunk_cache_bytes: int = 8 << 20,
    ) -> None:
        self.broker = broker
        self.client_id = client_id or settings.OTA_CLIENT_ID
        self.shared_group = shared_group
        self.reader = ImageReader(storage, cache_bytes=chunk_cache_bytes)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.progress_interval = progress_interval
        self.log_interval = log_interval
        self.max_pending = max_pending
        self.receive_maximum = receive_maximum
        self.counters = Counters()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._chunk_queue: collections.deque[_Incoming] = collections.deque()
        self._report_queue: collections.deque[_Incoming] = collections.deque()
        self._chunk_wake = threading.Event()
        self._report_wake = threading.Event()
        self._jobs: collections.OrderedDict[str, Job | None] = collections.OrderedDict()
        self._unknown_until: dict[str, float] = {}
        self._jobs_lock = threading.Lock()
        self._progress: dict[int, tuple[str, int]] = {}
        self._progress_lock = threading.Lock()
        self._pending = 0  # responses published, PUBACK not yet seen
        self._pending_cv = threading.Condition()
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._db_checked = threading.local()  # when this thread last checked its connection
        self.client = protocol.make_client(self.client_id, broker, persistent=True, manual_ack=True)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 15)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # -- network thread ----------------------------------------------------------------------

    def _on_pre_connect(self, client, userdata) -> None:
        with self._ack_lock:
            self._generation += 1

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self.counters.connects += 1
        log.info(
            "ota: connected to %s:%s as %s (session present: %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            flags.session_present,
        )
        requests = ota.cloud_request_filter(self.shared_group)
        replies = f"{protocol.TOPIC_ROOT}/+/{protocol.REPLY}"
        if self.shared_group:
            replies = f"$share/{self.shared_group}/{replies}"
        # Every time, not only without a session: a broker restarted without persistence
        # remembers nothing, and subscribing again costs nothing.
        client.subscribe([(requests, protocol.QOS), (replies, protocol.QOS)])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._generation += 1
        self.connected.clear()
        with self._pending_cv:  # what was in flight is resent or gone; do not wait for it
            self._pending = 0
            self._pending_cv.notify_all()
        if not self._stop.is_set():
            log.warning("ota: disconnected from the broker (%s); reconnecting", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._pending_cv:
            if self._pending:
                self._pending -= 1
            self._pending_cv.notify()

    def _on_message(self, client, userdata, msg) -> None:
        generation = self._generation
        try:
            name = msg.topic
            parts = name.split("/")
            if len(parts) == 4 and parts[3] == protocol.REPLY:
                serial, _kind = protocol.parse_topic(name)
                reply = protocol.Reply.decode(msg.payload)
                if reply.ok or not ota.JOB_RE.match(reply.id):
                    self._ack(msg.mid, msg.qos, generation)
                    return
                item = _Incoming(serial, reply.id, reply, msg.mid, msg.qos, generation)
                self._report_queue.append(item)
                self._report_wake.set()
                return
            serial, _direction, job = ota.parse_job_topic(name)
            if _direction != ota.REQ:
                raise protocol.ProtocolError("responses are not for the cloud")
            request = ota.decode_request(msg.payload)
            if request.job != job:
                raise protocol.ProtocolError("the payload's job differs from the topic's")
        except (protocol.ProtocolError, UnicodeDecodeError) as exc:
            self._bad(getattr(msg, "_topic", b"?"), exc)
            self._ack(msg.mid, msg.qos, generation)
            return
        item = _Incoming(serial, job, request, msg.mid, msg.qos, generation)
        if isinstance(request, ota.ChunkRequest):
            if not self._chunk_queue and self._serve_now(item):
                return
            self._chunk_queue.append(item)
            self._chunk_wake.set()
        else:
            self._report_queue.append(item)
            self._report_wake.set()

    def _bad(self, topic: Any, exc: Exception) -> None:
        self.counters.bad += 1
        n = self.counters.bad
        if n <= 20 or n % 1000 == 0:
            log.warning("ota: bad message on %r (%d so far): %s", topic, n, exc)

    def _ack(self, mid: int, qos: int, generation: int) -> None:
        if not qos:
            return
        with self._ack_lock:
            if generation == self._generation:
                self.client.ack(mid, qos)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        protocol.connect_client(
            self.client, self.broker, receive_maximum=self.receive_maximum, asynchronous=True
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        self._chunk_wake.set()
        self._report_wake.set()
        with self._pending_cv:
            self._pending_cv.notify_all()

    def run(self) -> None:
        """Serve chunks in a thread of their own; record reports in this one until stop()."""
        # Django and its apps are a few hundred thousand long-lived objects; every message
        # allocates a few more, and each full collection would walk them all again.
        gc.freeze()
        self.start()
        server = threading.Thread(target=self._serve_loop, name="ota-server", daemon=True)
        server.start()
        last_log = last_flush = time.monotonic()
        try:
            queue = self._report_queue
            while not self._stop.is_set():
                self._report_wake.wait(0.2)
                self._report_wake.clear()
                # A bounded batch, so that a steady stream of reports still lets the
                # progress be written and the summary logged.
                batch = [self._report_queue.popleft() for _ in range(min(len(queue), 500))]
                if batch and not self._stop.is_set():
                    self._record_batch(batch)
                if self._report_queue:
                    self._report_wake.set()
                now = time.monotonic()
                if now - last_flush >= self.progress_interval:
                    last_flush = now
                    self._flush_progress()
                if now - last_log >= self.log_interval:
                    last_log = now
                    self.log_counters()
        finally:
            server.join(15)
            self._flush_progress(final=True)
            self.client.disconnect()
            self.client.loop_stop()
            connection.close()
            self.log_counters()

    def log_counters(self) -> None:
        c = self.counters
        log.info(
            "ota: chunks served %d (%.1f MiB) of %d requests, refused %d, reports %d "
            "(stale %d), bad payloads %d, progress writes %d, db errors %d, jobs cached %d",
            c.chunks,
            c.bytes / 1048576,
            c.requests,
            c.refused,
            c.reports,
            c.stale,
            c.bad,
            c.progress_writes,
            c.db_errors,
            len(self._jobs),
        )

    # -- database helpers --------------------------------------------------------------------

    def _with_retry(self, work, what: str):
        """Run `work()`; on a database outage retry with backoff (None once stopping)."""
        delay = 0.5
        while True:
            try:
                self._check_connection()
                return work()
            except _TRANSIENT as exc:
                self.counters.db_errors += 1
                log.warning(
                    "ota: database error while %s; retrying in %.1f s: %s", what, delay, exc
                )
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - a dead connection may fail to close
                    log.debug("closing the broken connection failed", exc_info=True)
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 15.0)

    def _check_connection(self) -> None:
        """Drop a broken or too old connection, at most once a second per thread: Django's
        check costs a round trip to the database, more than most of the statements here."""
        now = time.monotonic()
        if now - getattr(self._db_checked, "at", -1.0) >= 1.0:
            self._db_checked.at = now
            connection.close_if_unusable_or_obsolete()

    def prefetch(self, job_ids: Any) -> None:
        """Load the targets of all these jobs that are not cached in one query: a wave of a
        thousand gateways asks for a thousand new jobs within a second, and a round trip each
        would hold up the chunks of every job behind them."""
        now = time.monotonic()
        with self._jobs_lock:
            missing = {
                j
                for j in job_ids
                if not ((c := self._jobs.get(j)) is not None and c.expires > now)
                and self._unknown_until.get(j, 0) <= now
            }
        if not missing:
            return
        rows = self._with_retry(lambda: _load_jobs(missing), "looking up jobs")
        if rows is None:
            return  # stopping
        with self._jobs_lock:
            for job_id, *values in rows:
                self._jobs[job_id] = Job(*values, expires=now + self.cache_ttl)
                self._jobs.move_to_end(job_id)
                missing.discard(job_id)
            while len(self._jobs) > self.cache_size:
                self._jobs.popitem(last=False)
            for job_id in missing:
                self._unknown_until[job_id] = now + min(self.cache_ttl, 5.0)
            if len(self._unknown_until) > self.cache_size:
                self._unknown_until = {k: v for k, v in self._unknown_until.items() if v > now}

    def job(self, job_id: str) -> Job | None:
        """The job's target (cached); None when no target has this job now."""
        now = time.monotonic()
        with self._jobs_lock:
            cached = self._jobs.get(job_id)
            if cached is not None and cached.expires > now:
                self._jobs.move_to_end(job_id)
                return cached
            if self._unknown_until.get(job_id, 0) > now:
                return None
        row = self._with_retry(lambda: _load_job(job_id), "looking up a job")
        with self._jobs_lock:
            if row is None:
                self._unknown_until[job_id] = now + min(self.cache_ttl, 5.0)
                if len(self._unknown_until) > self.cache_size:
                    self._unknown_until = {k: v for k, v in self._unknown_until.items() if v > now}
                return None
            found = Job(*row, expires=now + self.cache_ttl)
            self._jobs[job_id] = found
            while len(self._jobs) > self.cache_size:
                self._jobs.popitem(last=False)
            return found

    def forget(self, job_id: str) -> None:
        with self._jobs_lock:
            self._jobs.pop(job_id, None)

    # -- serving chunks ----------------------------------------------------------------------

    def _serve_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._chunk_wake.wait(0.5)
                self._chunk_wake.clear()
                queue = self._chunk_queue
                while queue and not self._stop.is_set():
                    batch = [queue.popleft() for _ in range(min(len(queue), 1000))]
                    self.prefetch({item.job for item in batch})
                    for item in batch:
                        if self._stop.is_set():
                            break  # not acknowledged: the broker keeps the rest
                        try:
                            self._serve(item)
                        except Exception:  # a bug costs one request, never the service
                            log.exception("ota: serving a chunk of job %s failed", item.job)
                        self._ack(item.mid, item.qos, item.generation)
        finally:
            self.reader.close()
            connection.close()

    def _serve(self, item: _Incoming, job: Job | None = None, reserved: int = 0) -> None:
        """Answer a request: one ChunkResponse per chunk of its range, in order, each read
        on its own (from the range cache or the file), or one response with the refusal.
        `reserved`: PUBACK slots the caller took already for these responses."""
        request: ota.ChunkRequest = item.message
        self.counters.requests += 1
        if job is None:
            job = self.job(request.job)
        topic = ota.job_topic(item.serial, ota.RES, request.job)
        error = self._refusal(item.serial, job, request)
        if error is None:
            assert job is not None
            for offset, length in request.pieces():
                try:
                    data = self.reader.read(job.file_name, offset, length)
                except (OSError, ValueError) as exc:
                    log.error("ota: cannot read %s of job %s: %s", job.file_name, request.job, exc)
                    data = b""
                if len(data) != length:
                    error = "image unavailable"
                    request = ota.ChunkRequest(request.job, offset, length)
                    break
                self.counters.chunks += 1
                self.counters.bytes += length
                self._note_progress(job, request.job, offset)
                response = ota.ChunkResponse(request.job, offset, data)
                self._publish(topic, response.encode(), reserved > 0)
                reserved -= 1
        if error is not None:
            self.counters.refused += 1
            if self.counters.refused <= 20 or self.counters.refused % 1000 == 0:
                log.warning(
                    "ota: refused chunk %d of job %s for %s: %s",
                    request.offset,
                    request.job,
                    item.serial,
                    error,
                )
            response = ota.ChunkResponse(request.job, request.offset, b"", error)
            self._publish(topic, response.encode(), reserved > 0)
            reserved -= 1
        if reserved > 0:  # slots taken for responses that were not sent
            with self._pending_cv:
                self._pending = max(0, self._pending - reserved)
                self._pending_cv.notify_all()

    @staticmethod
    def _refusal(serial: str, job: Job | None, request: ota.ChunkRequest) -> str | None:
        if job is None:
            return "unknown job"
        if job.serial != serial:
            return "unknown job"  # another gateway's: say no more than for a made-up id
        if job.finished:
            return "job is over"
        if request.offset >= job.size or request.offset + request.length > job.size:
            return "offset past the end of the image"
        return None

    def _serve_now(self, item: _Incoming) -> bool:
        """Answer a request on the network thread when that needs neither the database, nor
        the storage, nor waiting for a PUBACK (job and range cached, a slot free): the usual
        case in a rollout. Handing each request to the server thread would cost two thread
        switches per chunk. False: the server thread must do it."""
        with self._jobs_lock:
            job = self._jobs.get(item.job)
        if job is None or job.expires <= time.monotonic():
            return False
        request: ota.ChunkRequest = item.message
        pieces = request.pieces()
        if not all(self.reader.has(job.file_name, o, n) for o, n in pieces):
            return False
        with self._pending_cv:
            if self._pending + len(pieces) > self.max_pending:
                return False
            self._pending += len(pieces)  # the slots these answers take
        try:
            self._serve(item, job, reserved=len(pieces))
        except Exception:  # a bug costs one request, never the service
            log.exception("ota: serving a chunk of job %s failed", item.job)
        self._ack(item.mid, item.qos, item.generation)
        return True

    def _publish(self, topic: str, payload: bytes, reserved: bool = False) -> None:
        """Publish an answer once fewer than `max_pending` wait for their PUBACK (`reserved`:
        the caller took the slot already)."""
        if not reserved:
            self._take_slot()
        info = self.client.publish(topic, payload, qos=protocol.QOS)
        if info.rc != 0:  # not connected: paho keeps it for the reconnect, or drops it
            log.debug("ota: publish on %s returned %s", topic, info.rc)

    def _take_slot(self) -> None:
        with self._pending_cv:
            while self._pending >= self.max_pending and not self._stop.is_set():
                if not self._pending_cv.wait(5) and self._pending >= self.max_pending:
                    log.warning("ota: no PUBACK for 5 s with %d responses out", self._pending)
                    break
            self._pending += 1

    # -- recording reports -------------------------------------------------------------------

    def _note_progress(self, job: Job, job_id: str, received: int) -> None:
        with self._progress_lock:
            known = self._progress.get(job.target_id)
            if known is None or known[1] < received:
                self._progress[job.target_id] = (job_id, received)

    def _flush_progress(self, final: bool = False) -> None:
        """Bytes received of every target heard of since the last flush, in one UPDATE."""
        with self._progress_lock:
            if not self._progress:
                return
            progress, self._progress = self._progress, {}
        ids = list(progress)
        jobs = [progress[i][0] for i in ids]
        received = [progress[i][1] for i in ids]

        def write() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE upgrades_upgradetarget t SET received = GREATEST(t.received, "
                    "v.received), reported_at = now(), state = CASE WHEN t.state = %s THEN %s "
                    "ELSE t.state END FROM (SELECT unnest(%s::bigint[]) AS id, "
                    "unnest(%s::text[]) AS job, unnest(%s::bigint[]) AS received) v "
                    "WHERE t.id = v.id AND t.job = v.job AND t.state IN (%s, %s)",
                    [T.OFFERED, T.DOWNLOADING, ids, jobs, received, T.OFFERED, T.DOWNLOADING],
                )
                return cursor.rowcount

        if final:
            try:
                self._with_retry_once(write)
            except Exception:  # noqa: BLE001 - progress only; the next report brings it
                log.warning("ota: progress of %d targets not written", len(ids), exc_info=True)
            return
        if self._with_retry(write, "writing progress") is not None:
            self.counters.progress_writes += 1

    def _with_retry_once(self, work) -> None:
        connection.close_if_unusable_or_obsolete()
        work()

    def _record_batch(self, batch: list[_Incoming]) -> None:
        """The steps between download and result (verifying, installing, rebooting) of the
        whole batch in one UPDATE per state, the furthest per target; the rest one by one.
        Each UPDATE names the job and the states it may move from, so the order in which the
        two kinds are written does not matter."""
        steps: dict[int, tuple[Job, ota.StateReport]] = {}
        successes: dict[int, tuple[Job, ota.StateReport]] = {}
        others: list[_Incoming] = []
        self.prefetch({item.job for item in batch if isinstance(item.message, ota.StateReport)})
        for item in batch:
            report = item.message
            if isinstance(report, ota.StateReport) and report.state == ota.SUCCEEDED:
                self.counters.reports += 1
                job = self.job(report.job)
                if job is None or job.serial != item.serial:
                    self.counters.stale += 1
                else:
                    successes[job.target_id] = (job, report)
                continue
            if not isinstance(report, ota.StateReport) or report.state not in _STEPS:
                others.append(item)
                continue
            self.counters.reports += 1
            job = self.job(report.job)
            if job is None or job.serial != item.serial:
                self.counters.stale += 1
                continue
            known = steps.get(job.target_id)
            if known is None or _STEPS.index(report.state) >= _STEPS.index(known[1].state):
                steps[job.target_id] = (job, report)
        if steps:
            by_state: dict[str, list[tuple[Job, ota.StateReport]]] = {}
            for job, report in steps.values():
                by_state.setdefault(report.state, []).append((job, report))
            for state, moves in by_state.items():
                self._with_retry(lambda s=state, m=moves: _apply_steps(s, m), "recording reports")
                with self._progress_lock:
                    for job, _report in moves:
                        self._progress.pop(job.target_id, None)
        for item in others:
            self._record(item, ack=False)
        if successes:
            moves = list(successes.values())
            changed = self._with_retry(lambda: _apply_successes(moves), "recording successes")
            if changed is not None:
                self.counters.stale += len(moves) - changed
                with self._progress_lock:
                    for job, _report in moves:
                        self._progress.pop(job.target_id, None)
                for _job, report in moves:
                    self.forget(report.job)
        for item in batch:
            self._ack(item.mid, item.qos, item.generation)

    def _record(self, item: _Incoming, ack: bool = True) -> None:
        message = item.message
        try:
            if isinstance(message, protocol.Reply):
                self._with_retry(lambda: self._refused_offer(item.serial, message), "a refusal")
            else:
                self.counters.reports += 1
                self._report(item.serial, message)
        except Exception:  # a bug costs one report, never the service
            log.exception("ota: recording a report of job %s failed", item.job)
        if ack:
            self._ack(item.mid, item.qos, item.generation)

    def _report(self, serial: str, report: ota.StateReport) -> None:
        job = self.job(report.job)
        if job is None or job.serial != serial:
            self.counters.stale += 1
            return
        if report.state == ota.DOWNLOADING:
            self._note_progress(job, report.job, report.received)
            return
        changed = self._with_retry(lambda: _apply_report(job, report), "recording a report")
        if changed is None:
            return  # stopping
        if not changed:
            self.counters.stale += 1
        with self._progress_lock:
            self._progress.pop(job.target_id, None)
        if report.state in ota.FINAL_STATES:
            self.forget(report.job)

    def _refused_offer(self, serial: str, reply: protocol.Reply) -> int:
        """The device answered the `ota` command (id = job) with an error: the job failed."""
        reason = _("The device refused the job: %(error)s") % {"error": reply.error or "?"}
        changed = UpgradeTarget.objects.filter(
            job=reply.id, gateway__serial_number=serial, state=T.OFFERED
        ).update(state=T.FAILED, reason=reason[:300], finished_at=timezone.now())
        if changed:
            self.counters.reports += 1
            self.forget(reply.id)
        return changed


_JOB_FIELDS = (
    "id",
    "gateway__serial_number",
    "task__release__file",
    "task__release__size",
    "state",
    "gateway_id",
    "inverter_id",
    "task__firmware_type",
    "task__release__version",
)


def _load_jobs(job_ids: set[str]) -> list[tuple]:
    """(job, *Job fields) of the targets that have one of these jobs now."""
    return list(UpgradeTarget.objects.filter(job__in=job_ids).values_list("job", *_JOB_FIELDS))


def _load_job(job_id: str) -> tuple | None:
    return (
        UpgradeTarget.objects.filter(job=job_id)
        .values_list(
            "id",
            "gateway__serial_number",
            "task__release__file",
            "task__release__size",
            "state",
            "gateway_id",
            "inverter_id",
            "task__firmware_type",
            "task__release__version",
        )
        .first()
    )


def _apply_steps(state: str, moves: list[tuple[Job, ota.StateReport]]) -> int:
    """Targets to `state` in one conditional UPDATE (each only from an earlier state)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE upgrades_upgradetarget t SET state = %s, reported_at = now(), "
            "received = GREATEST(t.received, LEAST(v.received, v.size)) "
            "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS job, "
            "unnest(%s::bigint[]) AS received, unnest(%s::bigint[]) AS size) v "
            "WHERE t.id = v.id AND t.job = v.job AND t.state = ANY(%s)",
            [
                state,
                [job.target_id for job, _ in moves],
                [report.job for _, report in moves],
                [report.received for _, report in moves],
                [job.size for job, _ in moves],
                [str(s) for s in _MOVES_FROM[state]],
            ],
        )
        return cursor.rowcount


def _apply_report(job: Job, report: ota.StateReport) -> bool:
    """One conditional UPDATE (with the device's version on success); True if it changed."""
    now = timezone.now()
    current = UpgradeTarget.objects.filter(
        pk=job.target_id, job=report.job, state__in=_MOVES_FROM[report.state]
    )
    if report.state == ota.SUCCEEDED:
        version = report.version or job.version
        with transaction.atomic():
            changed = current.update(
                state=T.SUCCEEDED,
                reason="",
                reported_version=version,
                received=job.size,
                reported_at=now,
                finished_at=now,
            )
            if changed:
                _record_device_version(job, version)
        return bool(changed)
    updates: dict[str, Any] = {"state": report.state, "reported_at": now}
    if report.state == ota.FAILED:
        updates.update(
            reason=(report.error or _("The device reports a failure without a reason."))[:300],
            finished_at=now,
        )
    if report.version:
        updates["reported_version"] = report.version
    if report.received:
        updates["received"] = Greatest("received", Value(min(report.received, job.size)))
    return bool(current.update(**updates))


def _apply_successes(moves: list[tuple[Job, ota.StateReport]]) -> int:
    """`succeeded` for many targets in one transaction: the targets (each only if the job is
    still its current one and it is in flight, or failed for want of news) and the versions
    the devices now run. Returns how many targets changed."""
    now = timezone.now()
    latest = {job.target_id: (job, report) for job, report in moves}
    ids = list(latest)
    versions = {i: latest[i][1].version or latest[i][0].version for i in ids}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE upgrades_upgradetarget t SET state = %s, reason = '', "
            "reported_version = v.version, received = v.size, reported_at = %s, "
            "finished_at = %s FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS job, "
            "unnest(%s::text[]) AS version, unnest(%s::bigint[]) AS size) v "
            "WHERE t.id = v.id AND t.job = v.job AND t.state = ANY(%s) RETURNING t.id",
            [
                T.SUCCEEDED,
                now,
                now,
                ids,
                [latest[i][1].job for i in ids],
                [versions[i] for i in ids],
                [latest[i][0].size for i in ids],
                [str(s) for s in _MOVES_FROM[ota.SUCCEEDED]],
            ],
        )
        changed = [row[0] for row in cursor.fetchall()]
        gateways = [i for i in changed if latest[i][0].inverter_id is None]
        if gateways:
            cursor.execute(
                "UPDATE gateways_gateway g SET firmware_version = v.version FROM "
                "(SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS version) v "
                "WHERE g.id = v.id",
                [[latest[i][0].gateway_id for i in gateways], [versions[i] for i in gateways]],
            )
        for i in changed:  # rare: an inverter's board, one JSON merge each
            if latest[i][0].inverter_id is not None:
                _record_device_version(latest[i][0], versions[i])
    return len(changed)


def _record_device_version(job: Job, version: str) -> None:
    """The device runs `version` now: the gateway's version, or the inverter's board's."""
    with connection.cursor() as cursor:
        if job.inverter_id is None:
            cursor.execute(
                "UPDATE gateways_gateway SET firmware_version = %s WHERE id = %s",
                [version, job.gateway_id],
            )
        else:
            cursor.execute(
                "UPDATE inverters_inverter SET firmware_versions = COALESCE(firmware_versions, "
                "'{}'::jsonb) || jsonb_build_object(%s::text, %s::text) WHERE id = %s",
                # The key uploads use for the board (devices.decoding: DSP, SLAVE_DSP, LCD…).
                [job.firmware_type.upper(), version, job.inverter_id],
            )


def run_in_thread(service: DeliveryService) -> threading.Thread:
    """Run the service in a daemon thread (tests, the embedded stack)."""
    thread = threading.Thread(target=service.run, name="ota-recorder", daemon=True)
    thread.start()
    return thread
