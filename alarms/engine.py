"""The alarm engine: fault-word transitions → one Alarm row per occurrence.

Ingest calls `apply_fault_samples` inside its batch transaction with every sample that carried
fault words. A code that appears opens an alarm at that sample's time; a code that disappears
recovers it. The inverter's watermark (`InverterLatest.faults_ts`) makes replays harmless: a
sample at or before it was applied already (a resend, or an out-of-order upload older than
what we know, which must not reopen or recover anything). Two unique constraints back this up
when workers race: one occurrence per (inverter, code, occurred_at), one open alarm per code.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from alarms.models import AlarmLevel, AlarmStatus
from devices.registermap import RegisterMap, UnknownModelError
from inverters.telemetry import pg_array


@dataclass(frozen=True)
class Occurrence:
    code: str
    occurred_at: dt.datetime
    recovered_at: dt.datetime | None = None


@dataclass(frozen=True)
class InverterRef:
    company_id: int
    site_id: int | None
    model: str


def fault_transitions(
    open_codes: Mapping[str, dt.datetime],
    samples: Iterable[tuple[dt.datetime, Sequence[str]]],
) -> tuple[list[Occurrence], dict[str, dt.datetime]]:
    """Walk samples in time order from the currently open codes.

    Returns the new occurrences (possibly already recovered within these samples) and the
    recovery time of codes that were open before.
    """
    current = dict(open_codes)
    new: dict[str, dt.datetime] = {}
    new_rows: list[Occurrence] = []
    recovered_old: dict[str, dt.datetime] = {}
    for ts, codes in sorted(samples, key=lambda s: s[0]):
        active = set(codes)
        for code in active - current.keys():
            current[code] = ts
            new[code] = ts
        for code in list(current.keys() - active):
            started = current.pop(code)
            if new.get(code) == started:
                new_rows.append(Occurrence(code, started, ts))
                del new[code]
            else:
                recovered_old[code] = ts
    new_rows.extend(Occurrence(code, started) for code, started in new.items())
    return new_rows, recovered_old


@functools.lru_cache(maxsize=4096)
def describe(model: str, code: str) -> tuple[str, str]:
    """(level, message) of a fault code from the model's fault catalogue."""
    try:
        fault = RegisterMap.for_model(model).fault_code(code)
    except UnknownModelError:
        fault = None
    if fault is None:  # an unlisted bit: keep it visible rather than lose it
        return AlarmLevel.COMMON, f"Unlisted fault bit {code}"
    return fault.level, fault.text


@dataclass
class AlarmStats:
    opened: int = 0
    recovered: int = 0


def apply_fault_samples(
    cursor,
    samples: Mapping[int, list[tuple[dt.datetime, Sequence[str]]]],
    inverters: Mapping[int, InverterRef],
) -> AlarmStats:
    """Apply the fault codes of one batch (inverter id → [(ts, active codes)])."""
    stats = AlarmStats()
    ids = sorted(samples)
    if not ids:
        return stats
    cursor.execute(
        "SELECT inverter_id, code FROM alarms_alarm "
        "WHERE status = %s AND inverter_id = ANY(%s::bigint[])",
        [AlarmStatus.OCCURRING, pg_array(ids)],
    )
    open_now: dict[int, set[str]] = {}
    for inverter_id, code in cursor.fetchall():
        open_now.setdefault(inverter_id, set()).add(code)
    # Only inverters whose codes differ from what is open can change anything.
    candidates = [
        i for i in ids if any(set(codes) != open_now.get(i, set()) for _, codes in samples[i])
    ]
    if not candidates:
        return stats
    # Lock the watermarks: concurrent workers handling the same inverter take turns.
    cursor.execute(
        "SELECT inverter_id, faults_ts FROM inverters_inverterlatest "
        "WHERE inverter_id = ANY(%s::bigint[]) ORDER BY inverter_id FOR UPDATE",
        [pg_array(candidates)],
    )
    watermark = dict(cursor.fetchall())
    cursor.execute(
        "SELECT id, inverter_id, code, occurred_at FROM alarms_alarm "
        "WHERE status = %s AND inverter_id = ANY(%s::bigint[])",
        [AlarmStatus.OCCURRING, pg_array(candidates)],
    )
    open_rows: dict[int, dict[str, tuple[int, dt.datetime]]] = {}
    for alarm_id, inverter_id, code, occurred_at in cursor.fetchall():
        open_rows.setdefault(inverter_id, {})[code] = (alarm_id, occurred_at)

    inserts: list[tuple] = []
    recoveries: list[tuple[dt.datetime, int]] = []
    for inverter_id in candidates:
        mark = watermark.get(inverter_id)
        fresh = [(ts, c) for ts, c in samples[inverter_id] if mark is None or ts > mark]
        if not fresh:
            continue
        rows = open_rows.get(inverter_id, {})
        new, recovered = fault_transitions({c: r[1] for c, r in rows.items()}, fresh)
        ref = inverters[inverter_id]
        for occ in new:
            level, message = describe(ref.model, occ.code)
            status = AlarmStatus.OCCURRING if occ.recovered_at is None else AlarmStatus.RECOVERED
            inserts.append(
                (
                    inverter_id,
                    ref.company_id,
                    ref.site_id,
                    occ.code,
                    level,
                    message[:200],
                    occ.occurred_at,
                    occ.recovered_at,
                    status,
                )
            )
        recoveries.extend((ts, rows[code][0]) for code, ts in recovered.items())
    if recoveries:
        ids, times = zip(*((alarm_id, ts) for ts, alarm_id in recoveries), strict=True)
        cursor.execute(
            "UPDATE alarms_alarm a SET status = 'recovered', recovered_at = v.ts "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, ts) "
            "WHERE a.id = v.id AND a.status = 'occurring'",
            [list(ids), list(times)],
        )
        stats.recovered = len(recoveries)
    if inserts:
        # After the recoveries: a code that clears and comes back in one batch needs its old
        # occurrence closed before the new one may be the open one.
        cursor.execute(
            "INSERT INTO alarms_alarm (inverter_id, company_id, site_id, code, level, message, "
            "occurred_at, recovered_at, status, created_at) "
            "SELECT *, now() FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], "
            "%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[]) "
            "ON CONFLICT DO NOTHING",
            [list(column) for column in zip(*inserts, strict=True)],
        )
        stats.opened = len(inserts)
    return stats
