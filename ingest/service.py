"""The ingest process (`manage.py ingest`): gateway status, telemetry and replies → PostgreSQL.

Durability comes from the order of things: paho's network thread only enqueues (`on_message`);
a writer thread takes a batch every `flush_interval` seconds or `batch_size` messages (or at
a pause in the traffic) and decodes it (`ingest.batch`); a storer thread writes it in ONE
transaction (COPY into the partitioned sample table, rollups, latest rows, status, alarms,
rejects) and only after COMMIT acknowledges the MQTT messages (manual_ack). A crash before
the commit leaves the messages unacknowledged in our persistent session, so the broker
delivers them again and the (inverter, ts) primary key drops what was already stored.

Bad input never stops the loop: every malformed message, unknown gateway or inverter,
inverter reported by the wrong gateway, unknown model or undecodable block becomes a
RejectedMessage row (and is acknowledged). Database outages are retried with backoff without
acknowledging anything; a batch the database refuses for data reasons is split in halves until
the offending message is found and rejected.
"""

from __future__ import annotations

import collections
import datetime as dt
import gc
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db import utils as db_utils
from django.utils import timezone

from devices import protocol
from gateways.models import GatewayStatus
from gateways.signals import gateways_online
from ingest.batch import (
    DEFAULT_OFFLINE_AFTER_INTERVALS,
    BatchProcessor,
    Incoming,
    Reject,
    store_rejects,
)
from inverters.models import InverterStatus

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "matricloud-ingest"
#: Decoding allocates many short-lived, acyclic objects; the default generation-0 threshold
#: (700) ran the cycle collector every few uploads and cost a third of the decoding time.
INGEST_GC_THRESHOLD = (50_000, 50, 100)

_TRANSIENT = (
    db_utils.OperationalError,
    db_utils.InterfaceError,
    db_utils.ProgrammingError,
    db_utils.InternalError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.ProgrammingError,
    psycopg.InternalError,
)


@dataclass
class Counters:
    delivered: int = 0  # by the broker, counted in the network thread
    received: int = 0  # taken into batches
    committed: int = 0
    samples: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    replies: int = 0
    batches: int = 0
    db_errors: int = 0
    acked: int = 0
    connects: int = 0
    alarms_opened: int = 0
    alarms_recovered: int = 0


def sweep_offline(now: dt.datetime | None = None) -> tuple[int, int]:
    """Gateways and inverters silent for N upload intervals → offline. Returns the counts.

    A gateway's last will covers a dropped connection; this covers a gateway (or an inverter
    behind a living gateway) that simply stops uploading.
    """
    now = now or timezone.now()
    factor = float(
        getattr(settings, "GATEWAY_OFFLINE_AFTER_INTERVALS", DEFAULT_OFFLINE_AFTER_INTERVALS)
    )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "UPDATE gateways_gateway SET status = %s WHERE status = %s AND (last_seen_at IS NULL "
            "OR last_seen_at < %s - make_interval(secs => upload_interval_s * %s))",
            [GatewayStatus.OFFLINE, GatewayStatus.ONLINE, now, factor],
        )
        gateways = cur.rowcount
        # Inverter.last_seen_at is refreshed every few minutes; the latest row has every upload.
        cur.execute(
            "UPDATE inverters_inverter i SET status = %s FROM gateways_gateway g "
            "WHERE i.gateway_id = g.id AND i.status NOT IN (%s, %s) AND (g.status = %s "
            "OR COALESCE(GREATEST(i.last_seen_at, (SELECT l.received_at FROM "
            "inverters_inverterlatest l WHERE l.inverter_id = i.id)), '-infinity') "
            "< %s - make_interval(secs => g.upload_interval_s * %s))",
            [
                InverterStatus.OFFLINE,
                InverterStatus.OFFLINE,
                InverterStatus.UNKNOWN,
                GatewayStatus.OFFLINE,
                now,
                factor,
            ],
        )
        inverters = cur.rowcount
    if gateways or inverters:
        logger.info("offline sweep: %d gateway(s), %d inverter(s) offline", gateways, inverters)
    return gateways, inverters


# ---------------------------------------------------------------------------------------------
# The MQTT side


class IngestService:
    """The ingest loop: an MQTT client that enqueues, a writer that decodes batches and a
    storer that commits them in order, then acknowledges."""

    def __init__(
        self,
        broker: protocol.BrokerAddress,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        shared_group: str | None = None,
        batch_size: int = 5000,
        flush_interval: float = 0.5,
        idle_flush: float = 0.02,
        receive_maximum: int = 65535,
        log_interval: float = 30.0,
        processor: BatchProcessor | None = None,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.shared_group = shared_group
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.idle_flush = idle_flush
        self.receive_maximum = receive_maximum
        self.log_interval = log_interval
        self.processor = processor or BatchProcessor()
        self.counters = Counters()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._queue: collections.deque[Incoming] = collections.deque()
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        self._generation = 0
        self._ack_lock = threading.Lock()
        self.client = protocol.make_client(client_id, broker, persistent=True, manual_ack=True)
        self.client.reconnect_delay_set(1, 15)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_message = self._on_message

    # -- network thread ------------------------------------------------------------------

    def _on_pre_connect(self, client, userdata) -> None:
        with self._ack_lock:
            self._generation += 1

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the connection: %s", reason_code)
            return
        self.counters.connects += 1
        logger.info(
            "connected to %s:%s as %s (session present: %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            flags.session_present,
        )
        if not flags.session_present:
            subs = protocol.cloud_subscriptions(self.shared_group)
            client.subscribe([(s, protocol.QOS) for s in subs])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:  # acks from here on would name messages of a dead session
            self._generation += 1
        self.connected.clear()
        if not self._stop.is_set():
            logger.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            name = msg.topic
        except UnicodeDecodeError:
            name = repr(msg._topic)[:200]
        self.counters.delivered += 1
        pending = self._queue
        pending.append(
            Incoming(name, msg.payload, msg.mid, msg.qos, msg.retain, time.time(), self._generation)
        )
        if len(pending) == 1 or len(pending) >= self.batch_size:
            self._wake.set()

    # -- writer --------------------------------------------------------------------------

    def start(self) -> None:
        protocol.connect_client(
            self.client, self.broker, receive_maximum=self.receive_maximum, asynchronous=True
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Start the client; prepare batches here and store them in a second thread.

        Decoding (Python, holds the GIL) of batch k+1 overlaps with writing batch k (mostly
        waiting for PostgreSQL); the storer writes batches in order, commits, then acks.
        """
        try:
            loaded = self.processor.registry.preload()
            logger.info("ingest: %d gateways and inverters known", loaded)
        except db_utils.DatabaseError:
            logger.warning("cannot preload the device registry; looking devices up as they come")
        self.start()
        storer = threading.Thread(target=self._store_loop, name="ingest-storer", daemon=True)
        storer.start()
        last_log = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._hand_off(batch)
                if time.monotonic() - last_log >= self.log_interval:
                    last_log = time.monotonic()
                    self.log_counters()
            # Leave nothing half-done: what is queued is stored and acknowledged.
            while self._queue and self.connected.is_set() and storer.is_alive():
                self._hand_off(self._drain(), stopping=True)
        finally:
            while storer.is_alive():
                try:
                    self._handoff.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            storer.join(60)
            self.client.disconnect()
            self.client.loop_stop()
            connection.close()
            self.log_counters()

    def _hand_off(self, batch: list[Incoming], stopping: bool = False) -> None:
        self.counters.received += len(batch)
        work = self._prepare(batch)
        while True:  # the storer takes one batch at a time: wait for it (backpressure)
            try:
                self._handoff.put((batch, work), timeout=0.5)
                return
            except queue.Full:
                if self._stop.is_set() and not stopping:
                    return  # unacknowledged: the broker delivers these again

    def _prepare(self, batch: list[Incoming]) -> Any:
        """Decode a batch; on a database error (device lookups) the storer starts over."""
        try:
            return self.processor.prepare(batch)
        except Exception:  # noqa: BLE001 - retried by the storer, which owns the backoff
            logger.warning("preparing a batch failed; the storer retries it", exc_info=True)
            try:
                connection.close()
            except Exception:  # noqa: BLE001
                logger.debug("closing the broken connection failed", exc_info=True)
            return None

    def _store_loop(self) -> None:
        try:
            while True:
                item = self._handoff.get()
                if item is None:
                    return
                batch, work = item
                try:
                    if not self._commit(batch, work):
                        continue  # stopping while the database is away: no ack
                except Exception:  # a bug: these stay unacknowledged until the reconnect
                    logger.exception("storing a batch of %d messages failed", len(batch))
                    continue
                self.counters.committed += len(batch)
                self._ack(batch)
        finally:
            connection.close()

    def log_counters(self) -> None:
        c = self.counters
        logger.info(
            "ingest: received %d, samples %d, duplicates %d, rejected %d, statuses %d, "
            "replies %d, alarms +%d/-%d, batches %d, db errors %d, queued %d",
            c.received,
            c.samples,
            c.duplicates,
            c.rejected,
            c.statuses,
            c.replies,
            c.alarms_opened,
            c.alarms_recovered,
            c.batches,
            c.db_errors,
            len(self._queue),
        )

    def _next_batch(self) -> list[Incoming]:
        """Wait for a full batch, the flush interval, or a pause in the traffic.

        A pause of `idle_flush` seconds means the broker has nothing more in flight for us
        (e.g. its inflight window is full until we acknowledge): waiting longer would idle.
        """
        if not self._queue:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if not self._queue:
                return []
        oldest = self._queue[0].received
        seen = len(self._queue)
        while not self._stop.is_set() and len(self._queue) < self.batch_size:
            left = oldest + self.flush_interval - time.time()
            if left <= 0:
                break
            self._wake.wait(min(left, self.idle_flush))
            self._wake.clear()
            if len(self._queue) == seen:
                break
            seen = len(self._queue)
        return self._drain()

    def _drain(self) -> list[Incoming]:
        pending = self._queue
        return [pending.popleft() for _ in range(min(len(pending), self.batch_size))]

    def _commit(self, batch: list[Incoming], work: Any = None) -> bool:
        delay = 0.5
        while True:
            connection.close_if_unusable_or_obsolete()
            try:
                self._process_splitting(batch, work)
                self.counters.batches += 1
                return True
            except _TRANSIENT as exc:
                work = None  # prepare again: device lookups may have changed meanwhile
                self.counters.db_errors += 1
                logger.warning("database error, retrying the batch in %.1f s: %s", delay, exc)
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - a dead connection may fail to close
                    logger.debug("closing the broken connection failed", exc_info=True)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)

    def _process_splitting(self, batch: list[Incoming], work: Any = None) -> None:
        """Store; a batch refused for data reasons is halved until the culprit is alone."""
        try:
            if work is None:
                work = self.processor.prepare(batch)
            report = self.processor.store(work)
        except _TRANSIENT:
            raise
        except Exception as exc:
            if len(batch) == 1:
                logger.exception("database refused a message on %s", batch[0].topic)
                with transaction.atomic(), connection.cursor() as cur:
                    store_rejects(cur, [Reject(batch[0], f"storage failed: {exc!r}"[:400])])
                self.counters.rejected += 1
                return
            half = len(batch) // 2
            self._process_splitting(batch[:half])
            self._process_splitting(batch[half:])
            return
        c = self.counters
        c.samples += report.samples
        c.duplicates += report.duplicates
        c.rejected += report.rejected
        c.statuses += report.statuses
        c.replies += report.replies
        c.alarms_opened += report.alarms_opened
        c.alarms_recovered += report.alarms_recovered
        if report.announced_online:
            _announce_online(report.announced_online)

    def _ack(self, batch: list[Incoming]) -> None:
        ack = self.client.ack
        with self._ack_lock:
            generation = self._generation
            n = 0
            for msg in batch:
                if msg.qos and msg.generation == generation:
                    ack(msg.mid, msg.qos)
                    n += 1
        self.counters.acked += n

    @property
    def queued(self) -> int:
        return len(self._queue)


def _announce_online(gateway_ids: list[int]) -> None:
    """Tell the layers above that these gateways came online (the remote-operations engine
    sends what waited for them). The beat sweep would find that work within seconds anyway,
    so a failing receiver only costs that delay."""
    for receiver, result in gateways_online.send_robust(
        sender=IngestService, gateway_ids=gateway_ids
    ):
        if isinstance(result, Exception):
            logger.warning("%s failed on gateways_online", receiver, exc_info=result)


def tune_process() -> None:
    """Process settings for a dedicated ingest process (the command and the bench use it)."""
    gc.freeze()  # what start-up loaded (Django, register maps) is never collected again
    gc.set_threshold(*INGEST_GC_THRESHOLD)


def run_in_thread(service: IngestService) -> threading.Thread:
    """Run a service's writer loop in a daemon thread (tests, the bench, the embedded stack)."""
    thread = threading.Thread(target=service.run, name="ingest-writer", daemon=True)
    thread.start()
    return thread
