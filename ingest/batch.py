"""One ingest batch: MQTT messages in, rows out, in one transaction (no MQTT here).

`BatchProcessor.prepare` decodes (protocol module, then the register maps through
`devices.decoding`), looks devices up (cached `Registry`) and sorts every message into
samples, gateway states, replies and rejects; `BatchProcessor.store` writes all of that in one
transaction (`ingest.storage`, the alarm engine, statuses, replies, RejectedMessage rows).
The ingest service runs the two halves in two threads; tests call `process`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from alarms.engine import InverterRef, apply_fault_samples
from devices import protocol
from devices.decoding import EMPTY_TEXT_ARRAY, BlockError, Codec, Decoded, codec_for_model
from devices.registermap import UnknownModelError
from gateways.models import DEFAULT_UPLOAD_INTERVAL_S, Gateway, GatewayStatus
from ingest.storage import InverterBatchMeta, store_batch, store_latest_and_status
from inverters.models import Inverter, InverterStatus
from inverters.placement import placement_generation
from inverters.telemetry import (
    RejectedMessage,
    accepted_window,
    ensure_partitions,
    layout_id_for,
    partition_days,
    pg_array,
)

logger = logging.getLogger(__name__)

#: A gateway (and its inverters) is offline after this many missed upload intervals.
DEFAULT_OFFLINE_AFTER_INTERVALS = 3
_REGISTRY_TTL_S = 120.0
_UNKNOWN_TTL_S = 15.0
_UTC = dt.UTC


@dataclass(slots=True)
class Incoming:
    """One MQTT message as the network thread saw it."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    retain: bool = False
    received: float = field(default_factory=time.time)
    generation: int = 0


# ---------------------------------------------------------------------------------------------
# Who is who: gateways and inverters by serial, cached in the process


@dataclass(frozen=True)
class GatewayRef:
    id: int
    company_id: int
    upload_interval_s: int


@dataclass(frozen=True)
class InverterInfo:
    id: int
    gateway_id: int | None
    company_id: int
    site_id: int | None
    tz: str
    model: str


class Registry:
    """Serial → row, refreshed every two minutes; unknown serials are re-asked after 15 s."""

    #: How often the placement generation (inverters.placement) is compared, in seconds.
    PLACEMENT_CHECK_S = 1.0

    def __init__(self) -> None:
        self._gateways: dict[str, tuple[float, GatewayRef | None]] = {}
        self._inverters: dict[str, tuple[float, InverterInfo | None]] = {}
        self._layouts: dict[str, int] = {}
        self._placement = placement_generation()
        self._placement_checked = time.monotonic()

    def _forget_moved_devices(self) -> None:
        """A gateway was bound or unbound somewhere: re-read every serial on its next upload."""
        now = time.monotonic()
        if now - self._placement_checked < self.PLACEMENT_CHECK_S:
            return
        self._placement_checked = now
        generation = placement_generation()
        if generation != self._placement:
            self._placement = generation
            self._gateways.clear()
            self._inverters.clear()

    def gateways(self, serials: Iterable[str]) -> dict[str, GatewayRef | None]:
        self._forget_moved_devices()
        return self._lookup(
            self._gateways, serials, lambda sns: self._load_gateways(serial_number__in=sns)
        )

    def inverters(self, serials: Iterable[str]) -> dict[str, InverterInfo | None]:
        self._forget_moved_devices()
        return self._lookup(
            self._inverters, serials, lambda sns: self._load_inverters(serial_number__in=sns)
        )

    def preload(self, limit: int = 200_000) -> int:
        """Fill the cache with the whole fleet at start-up (up to `limit` devices each), so a
        reconnecting fleet does not cost one lookup query per batch."""
        now = time.monotonic()
        gateways = self._load_gateways(limit=limit)
        inverters = self._load_inverters(limit=limit)
        self._gateways.update((sn, (now, ref)) for sn, ref in gateways.items())
        self._inverters.update((sn, (now, info)) for sn, info in inverters.items())
        return len(gateways) + len(inverters)

    @staticmethod
    def _load_gateways(limit: int | None = None, **lookup) -> dict[str, GatewayRef]:
        rows = Gateway.objects.filter(**lookup).values_list(
            "serial_number", "id", "company_id", "upload_interval_s"
        )[:limit]
        return {sn: GatewayRef(i, c, u or DEFAULT_UPLOAD_INTERVAL_S) for sn, i, c, u in rows}

    @staticmethod
    def _load_inverters(limit: int | None = None, **lookup) -> dict[str, InverterInfo]:
        default_tz = settings.TIME_ZONE
        rows = Inverter.objects.filter(**lookup).values_list(
            "serial_number", "id", "gateway_id", "company_id", "site_id", "site__time_zone", "model"
        )[:limit]
        return {sn: InverterInfo(i, g, c, s, tz or default_tz, m) for sn, i, g, c, s, tz, m in rows}

    def layout_id(self, codec: Codec) -> int:
        if codec.model not in self._layouts:
            self._layouts[codec.model] = layout_id_for(codec)
        return self._layouts[codec.model]

    @staticmethod
    def _lookup(cache, serials, load) -> dict:
        now = time.monotonic()
        out, missing = {}, []
        for sn in set(serials):
            hit = cache.get(sn)
            ttl = _REGISTRY_TTL_S if hit and hit[1] is not None else _UNKNOWN_TTL_S
            if hit is not None and now - hit[0] < ttl:
                out[sn] = hit[1]
            else:
                missing.append(sn)
        if missing:
            found = load(missing)
            for sn in missing:
                cache[sn] = (now, found.get(sn))
                out[sn] = found.get(sn)
        return out


# ---------------------------------------------------------------------------------------------
# One batch


@dataclass
class BatchReport:
    messages: int = 0
    samples: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    replies: int = 0
    alarms_opened: int = 0
    alarms_recovered: int = 0
    # Gateways that announced themselves online in this batch (a connect, not an upload).
    announced_online: list[int] = field(default_factory=list)


@dataclass
class Reject:
    message: Incoming
    reason: str
    gateway_serial: str = ""
    gateway: GatewayRef | None = None


@dataclass
class _Work:
    """Everything one batch will write, gathered before the transaction opens."""

    rows: list[tuple] = field(default_factory=list)
    metas: dict[int, InverterBatchMeta] = field(default_factory=dict)
    info: dict[int, tuple[int, Codec, Decoded]] = field(default_factory=dict)
    faults: dict[int, list[tuple[dt.datetime, list[str]]]] = field(default_factory=dict)
    refs: dict[int, InverterRef] = field(default_factory=dict)
    gateways: dict[int, tuple[str, dt.datetime, int | None, str]] = field(default_factory=dict)
    unreachable: set[int] = field(default_factory=set)
    replies: list[tuple] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    days: set[dt.date] = field(default_factory=set)
    status_ts: dict[int, int] = field(default_factory=dict)
    announced: set[int] = field(default_factory=set)
    messages: int = 0


def _aware(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, _UTC)


class BatchProcessor:
    """Decode and store one batch of MQTT messages in one transaction (no MQTT here)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        self._known_days: set[dt.date] = set()

    # -- decoding ------------------------------------------------------------------------

    def process(self, messages: Sequence[Incoming]) -> BatchReport:
        """Decode and store, in the calling thread."""
        return self.store(self.prepare(messages))

    def prepare(self, messages: Sequence[Incoming]) -> _Work:
        """Everything but the write: decode, look up devices, make sure partitions exist."""
        work = self._prepare(messages)
        work.messages = len(messages)
        self._ensure_partitions(work.days)
        return work

    def store(self, work: _Work) -> BatchReport:
        """Write a prepared batch in one transaction (this thread's database connection)."""
        with transaction.atomic(), connection.cursor() as cur:
            report = self._store(cur, work)
        report.messages = work.messages
        return report

    def _prepare(self, messages: Sequence[Incoming]) -> _Work:
        work = _Work()
        parsed: list[tuple[Incoming, str, str]] = []
        for msg in messages:
            try:
                serial, kind = protocol.parse_topic(msg.topic)
            except protocol.ProtocolError as exc:
                work.rejects.append(Reject(msg, str(exc)))
                continue
            parsed.append((msg, serial, kind))
        gateways = self.registry.gateways(sn for _, sn, _ in parsed)
        telemetry: list[tuple[Incoming, GatewayRef, protocol.TelemetryMessage]] = []
        for msg, serial, kind in parsed:
            gateway = gateways.get(serial)
            if gateway is None:
                work.rejects.append(Reject(msg, f"unknown gateway {serial}", serial))
                continue
            try:
                if kind == protocol.TELEMETRY:
                    telemetry.append((msg, gateway, protocol.TelemetryMessage.decode(msg.payload)))
                elif kind == protocol.STATUS:
                    self._status(work, msg, gateway, protocol.StatusMessage.decode(msg.payload))
                elif kind == protocol.REPLY:
                    reply = protocol.Reply.decode(msg.payload)
                    work.replies.append(
                        (
                            gateway.id,
                            gateway.company_id,
                            reply.id,
                            reply.ok,
                            reply.result,
                            reply.error or "",
                            _aware(msg.received),
                        )
                    )
                else:
                    work.rejects.append(Reject(msg, f"unexpected topic {msg.topic}", serial))
            except protocol.ProtocolError as exc:
                work.rejects.append(Reject(msg, str(exc), serial, gateway))
            except Exception as exc:  # a bug must cost one message, not the process
                logger.exception("cannot handle message on %s", msg.topic)
                work.rejects.append(Reject(msg, f"internal error: {exc!r}"[:400], serial, gateway))
        serials = {d.serial for _, _, t in telemetry for d in t.devices}
        inverters = self.registry.inverters(serials) if serials else {}
        window = accepted_window()
        for msg, gateway, message in telemetry:
            try:
                self._telemetry(work, msg, gateway, message, inverters, window)
            except Exception as exc:
                logger.exception("cannot handle telemetry on %s", msg.topic)
                work.rejects.append(Reject(msg, f"internal error: {exc!r}"[:400], gateway=gateway))
        for inverter_id, (_, codec, decoded) in work.info.items():
            meta = work.metas[inverter_id]
            meta.device_info = codec.device_info(decoded)
            meta.firmware = codec.firmware(meta.device_info)
        return work

    def _status(self, work: _Work, msg: Incoming, gw: GatewayRef, status) -> None:
        received = _aware(msg.received)
        seen = min(received, _aware(status.ts_ms / 1000)) if msg.retain else received
        stale = timezone.now() - seen > dt.timedelta(seconds=_offline_after(gw.upload_interval_s))
        if msg.retain and status.online and stale:
            return  # a retained "online" of a gateway that has since gone quiet says nothing
        state = GatewayStatus.ONLINE if status.online else GatewayStatus.OFFLINE
        work.gateways[gw.id] = (state, seen, status.signal_dbm, status.firmware)
        if status.online:
            work.announced.add(gw.id)
        else:
            work.announced.discard(gw.id)

    def _telemetry(self, work, msg, gateway, message, inverters, window) -> None:
        seen = _aware(msg.received)
        _, _, signal, firmware = work.gateways.get(gateway.id, (None, None, None, ""))
        work.gateways[gateway.id] = (GatewayStatus.ONLINE, seen, signal, firmware)
        ts_ms = message.ts_ms
        in_window = window[0] <= ts_ms <= window[1]
        ts = _aware(ts_ms / 1000)
        for device in message.devices:
            inv = inverters.get(device.serial)
            reason = None
            if inv is None:
                reason = f"unknown inverter {device.serial} on gateway {gateway_serial(msg)}"
            elif inv.gateway_id != gateway.id:
                reason = f"inverter {device.serial} is not on gateway {gateway_serial(msg)}"
            elif device.error is not None:
                work.unreachable.add(inv.id)
                continue
            elif device.model.upper() != inv.model.upper():
                reason = (
                    f"inverter {device.serial} reports model {device.model}, "
                    f"registered as {inv.model}"
                )
            elif not in_window:
                reason = f"timestamp {ts_ms} outside the accepted window"
            if reason is None:
                try:
                    codec = codec_for_model(inv.model)
                    decoded = codec.decode(device.blocks)
                except UnknownModelError:
                    reason = f"no register map for model {inv.model}"
                except (BlockError, ValueError, struct.error) as exc:
                    reason = f"inverter {device.serial}: {exc}"
            if reason is not None:
                work.rejects.append(Reject(msg, reason, gateway_serial(msg), gateway))
                continue
            self._add_sample(work, inv, codec, decoded, ts_ms, ts, seen)
            work.days.add(ts.date())

    def _add_sample(self, work, inv: InverterInfo, codec, decoded, ts_ms, ts, seen) -> None:
        vals = codec.pack_vals(decoded)
        layout_id = self.registry.layout_id(codec)
        faults = decoded.fault_codes
        column = EMPTY_TEXT_ARRAY if faults is not None and not faults else faults
        work.rows.append((inv.id, ts_ms, layout_id, *decoded.typed, column, vals))
        meta = work.metas.get(inv.id)
        if meta is None:
            meta = work.metas[inv.id] = InverterBatchMeta(
                inv.id, inv.company_id, inv.site_id, inv.tz, seen
            )
            work.refs[inv.id] = InverterRef(inv.company_id, inv.site_id, inv.model)
        meta.seen_at = seen  # messages are handled in arrival order
        if (
            not codec.info_blocks.isdisjoint(decoded.blocks)
            and ts_ms >= work.info.get(inv.id, (-1,))[0]
        ):
            work.info[inv.id] = (ts_ms, codec, decoded)
        if decoded.device_status is not None and ts_ms >= work.status_ts.get(inv.id, -1):
            work.status_ts[inv.id] = ts_ms
            meta.device_status = decoded.device_status
        if decoded.fault_codes is not None:
            work.faults.setdefault(inv.id, []).append((ts, decoded.fault_codes))
            if meta.faults_ts_ms is None or ts_ms >= meta.faults_ts_ms:
                meta.faults_ts_ms = ts_ms
                meta.fault_codes = decoded.fault_codes

    # -- storing -------------------------------------------------------------------------

    def _ensure_partitions(self, days: set[dt.date]) -> None:
        missing = days - self._known_days
        if missing:
            self._known_days = partition_days()
            if missing - self._known_days:
                ensure_partitions(missing)
                self._known_days |= missing

    def _store(self, cur, work: _Work) -> BatchReport:
        report = BatchReport()
        result, _ = store_batch(cur, work.rows, list(work.metas.values()))
        report.samples, report.duplicates = result.inserted, result.duplicates
        stats = apply_fault_samples(cur, work.faults, work.refs)
        report.alarms_opened, report.alarms_recovered = stats.opened, stats.recovered
        if work.rows:
            store_latest_and_status(cur)
        if work.unreachable:
            cur.execute(
                "UPDATE inverters_inverter SET status = %s WHERE id = ANY(%s::bigint[]) "
                "AND status <> %s",
                [
                    InverterStatus.OFFLINE,
                    pg_array(sorted(work.unreachable)),
                    InverterStatus.OFFLINE,
                ],
            )
        if work.gateways:
            report.statuses = self._store_gateways(cur, work.gateways)
            report.announced_online = sorted(work.announced)
        if work.replies:
            cur.executemany(
                "INSERT INTO inverters_gatewayreply (gateway_id, company_id, command_id, ok, "
                "result, error, received_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s) "
                "ON CONFLICT (gateway_id, command_id) DO NOTHING",
                [(*r[:4], _json(r[4]), *r[5:]) for r in work.replies],
            )
            report.replies = len(work.replies)
        if work.rejects:
            store_rejects(cur, work.rejects)
            report.rejected = len(work.rejects)
        return report

    @staticmethod
    def _store_gateways(cur, gateways: dict) -> int:
        """Status, last seen, signal and firmware of every gateway heard in the batch."""
        ids = sorted(gateways)
        raw = cur.cursor
        raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS mc_gateway_stage (id bigint, status text, "
            "seen_at timestamptz, signal int, firmware text) ON COMMIT DELETE ROWS"
        )
        with raw.copy("COPY mc_gateway_stage FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "timestamptz", "int4", "text"])
            for i in ids:
                copy.write_row((i, *gateways[i]))
        raw.execute(
            """
            UPDATE gateways_gateway g SET status = v.status,
                last_seen_at = GREATEST(g.last_seen_at, v.seen_at),
                signal_strength = COALESCE(v.signal, g.signal_strength),
                firmware_version = COALESCE(NULLIF(v.firmware, ''), g.firmware_version)
            FROM mc_gateway_stage v
            WHERE g.id = v.id AND (g.status <> v.status OR g.last_seen_at IS NULL
                OR g.last_seen_at < v.seen_at - interval '5 seconds'
                OR v.signal IS NOT NULL OR v.firmware <> '')
            """
        )
        offline = [i for i in ids if gateways[i][0] == GatewayStatus.OFFLINE]
        if offline:
            cur.execute(
                "UPDATE inverters_inverter SET status = %s WHERE gateway_id = ANY(%s::bigint[]) "
                "AND status <> %s",
                [InverterStatus.OFFLINE, pg_array(offline), InverterStatus.OFFLINE],
            )
        return len(ids)


def gateway_serial(msg: Incoming) -> str:
    parts = msg.topic.split("/")
    return parts[2] if len(parts) > 2 else ""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def store_rejects(cur, rejects: Sequence[Reject]) -> None:
    limit = RejectedMessage.PAYLOAD_LIMIT
    cur.executemany(
        "INSERT INTO inverters_rejectedmessage (topic, gateway_serial, gateway_id, company_id, "
        "payload, payload_size, reason, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (
                r.message.topic[:255],
                (r.gateway_serial or gateway_serial(r.message))[:64],
                r.gateway.id if r.gateway else None,
                r.gateway.company_id if r.gateway else None,
                bytes(r.message.payload[:limit]),
                len(r.message.payload),
                r.reason[:500],
                _aware(r.message.received),
            )
            for r in rejects
        ],
    )


def _offline_after(upload_interval_s: int) -> float:
    factor = getattr(settings, "GATEWAY_OFFLINE_AFTER_INTERVALS", DEFAULT_OFFLINE_AFTER_INTERVALS)
    return float(factor) * (upload_interval_s or DEFAULT_UPLOAD_INTERVAL_S)
