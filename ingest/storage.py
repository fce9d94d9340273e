"""Writing one ingest batch: binary COPY into staging tables, then set-based SQL.

One transaction per batch (the caller's): COPY the decoded samples and one row per inverter
into temporary tables, then

1. insert the new samples into the partitioned table (ON CONFLICT DO NOTHING: a resent upload
   is dropped) and, in the same statement, merge them into their (inverter, local day) energy
   rows, computing the day's energy from its counters;
2. mend the next day of every touched day whose stored baseline (the previous day's last
   reading) moved, which only happens when older data arrives late;
3. sum the touched days per site;
4. upsert the latest row of every inverter and its status.

Parameters that are long lists travel as one array literal (`pg_array`): Django's psycopg
cursor binds on the client and would quote them element by element in Python.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from devices.decoding import TYPED_COLUMNS, TYPED_POINTS, use_packed_arrays
from inverters.telemetry import SAMPLE_TABLE, pg_array

#: Daily rollup name → sample counter column (a day's energy is the counter's delta).
ENERGY_COUNTERS: tuple[tuple[str, str], ...] = (
    ("pv", "pv_energy_total"),
    ("charge", "charge_energy_total"),
    ("discharge", "discharge_energy_total"),
    ("import", "import_energy_total"),
    ("export", "export_energy_total"),
    ("load", "load_energy_total"),
)
_PG_TYPES = {"integer": "int4", "real": "float4", "double precision": "float8"}


@dataclass
class InverterBatchMeta:
    """Per inverter of a batch: scoping, the site's time zone and the newest state."""

    inverter_id: int
    company_id: int
    site_id: int | None
    tz: str
    seen_at: dt.datetime
    device_status: str | None = None
    faults_ts_ms: int | None = None
    fault_codes: list[str] | None = None
    device_info: dict[str, Any] | None = None
    firmware: dict[str, str] | None = None


@dataclass
class StoreResult:
    inserted: int = 0
    duplicates: int = 0
    days: int = 0
    site_days: int = 0


_STAGE_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS mc_sample_stage ("
    "inverter_id bigint, ts_ms bigint, layout_id integer, "
    + ", ".join(f"{c} {t}" for c, _, t in TYPED_POINTS)
    + ", fault_codes text[], vals real[]) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS mc_meta_stage ("
    "inverter_id bigint, company_id bigint, site_id bigint, tz text, seen_at timestamptz, "
    "device_status text, faults_ts_ms bigint, fault_codes text[], info jsonb, firmware jsonb) "
    "ON COMMIT DELETE ROWS"
)
_SAMPLE_TYPES = ["int8", "int8", "int4"] + [_PG_TYPES[t] for _, _, t in TYPED_POINTS]
_SAMPLE_TYPES += ["text[]", "float4[]"]
_META_TYPES = ["int8", "int8", "int8", "text", "timestamptz", "text", "int8", "text[]"]
_META_TYPES += ["jsonb", "jsonb"]
_TS = "'epoch'::timestamptz + {} * interval '1 millisecond'"


def _newer(edge: str) -> str:
    """SQL: the batch brings an earlier first / a later last counter reading."""
    op = "<" if edge == "first" else ">"
    col = f"{edge}_ts"
    return f"EXCLUDED.{col} IS NOT NULL AND (d.{col} IS NULL OR EXCLUDED.{col} {op} d.{col})"


def _delta(last: str, base: str, first: str) -> str:
    """A day's energy: last reading − (previous day's last, else the day's first); ≥ 0."""
    return f"GREATEST(COALESCE({last} - COALESCE({base}, {first}), 0), 0)"


def _insert_and_merge_sql() -> str:
    """Insert new samples; merge them into their (inverter, local day) rows in one statement.

    The previous day's last readings are stored in the day row (`*_base`) when it is created,
    so the day's energy is computed right here; `_rebase_sql` mends the rare next day whose
    base moved because an older day received late samples.
    """
    counters = [c for _, c in ENERGY_COUNTERS]
    names = [n for n, _ in ENERGY_COUNTERS]
    has_counter = " OR ".join(f"{c} IS NOT NULL" for c in counters)
    cols = ", ".join(TYPED_COLUMNS)
    firsts = ", ".join(f"f.{c} AS {n}_first" for n, c in ENERGY_COUNTERS)
    lasts = ", ".join(f"l.{c} AS {n}_last" for n, c in ENERGY_COUNTERS)
    # A new day row takes the previous day's last readings as its base.
    new_counters = ", ".join(
        f"x.{n}_first, x.{n}_last, p.{n}_last, "
        + _delta(f"x.{n}_last", f"p.{n}_last", f"x.{n}_first")
        for n in names
    )
    counter_cols = ", ".join(f"{n}_first, {n}_last, {n}_base, {n}_kwh" for n in names)
    merged = []
    for n in names:
        first = f"CASE WHEN {_newer('first')} THEN EXCLUDED.{n}_first ELSE d.{n}_first END"
        last = f"CASE WHEN {_newer('last')} THEN EXCLUDED.{n}_last ELSE d.{n}_last END"
        merged += [f"{n}_first = {first}", f"{n}_last = {last}"]
        merged.append(f"{n}_kwh = {_delta(last, f'd.{n}_base', first)}")
    merged_sql = ",\n            ".join(merged)
    return f"""
    WITH ins AS (
        INSERT INTO {SAMPLE_TABLE} (inverter_id, ts, layout_id, {cols}, fault_codes, vals)
        SELECT inverter_id, {_TS.format("ts_ms")}, layout_id, {cols}, fault_codes, vals
        FROM mc_sample_stage
        ON CONFLICT DO NOTHING
        RETURNING inverter_id, ts, pv_power, batt_soc, {", ".join(counters)}
    ), r AS (
        SELECT ins.*, m.company_id, m.site_id, (ins.ts AT TIME ZONE m.tz)::date AS day,
               ({has_counter}) AS has_counter
        FROM ins JOIN mc_meta_stage m USING (inverter_id)
    ), agg AS (
        SELECT inverter_id, day, min(company_id) AS company_id, min(site_id) AS site_id,
               count(*) AS n, max(pv_power) AS peak, min(batt_soc) AS min_soc,
               max(batt_soc) AS max_soc
        FROM r GROUP BY inverter_id, day
    ), f AS (
        SELECT DISTINCT ON (inverter_id, day) * FROM r WHERE has_counter
        ORDER BY inverter_id, day, ts
    ), l AS (
        SELECT DISTINCT ON (inverter_id, day) * FROM r WHERE has_counter
        ORDER BY inverter_id, day, ts DESC
    ), x AS (
        SELECT a.*, f.ts AS first_ts, l.ts AS last_ts, {firsts}, {lasts}
        FROM agg a LEFT JOIN f USING (inverter_id, day) LEFT JOIN l USING (inverter_id, day)
    ), up AS (
        INSERT INTO inverters_energydaily AS d (
            inverter_id, company_id, site_id, day, samples, peak_power_w, min_soc, max_soc,
            first_ts, last_ts, {counter_cols}, updated_at)
        SELECT x.inverter_id, x.company_id, x.site_id, x.day, x.n, x.peak, x.min_soc,
               x.max_soc, x.first_ts, x.last_ts,
               {new_counters}, now()
        FROM x LEFT JOIN inverters_energydaily p
            ON p.inverter_id = x.inverter_id AND p.day = x.day - 1
        ORDER BY x.inverter_id, x.day
        ON CONFLICT (inverter_id, day) DO UPDATE SET
            samples = d.samples + EXCLUDED.samples,
            peak_power_w = GREATEST(d.peak_power_w, EXCLUDED.peak_power_w),
            min_soc = LEAST(d.min_soc, EXCLUDED.min_soc),
            max_soc = GREATEST(d.max_soc, EXCLUDED.max_soc),
            company_id = EXCLUDED.company_id,
            site_id = EXCLUDED.site_id,
            updated_at = now(),
            {merged_sql},
            first_ts = CASE WHEN {_newer("first")} THEN EXCLUDED.first_ts ELSE d.first_ts END,
            last_ts = CASE WHEN {_newer("last")} THEN EXCLUDED.last_ts ELSE d.last_ts END
        RETURNING inverter_id, day, site_id
    )
    SELECT (SELECT count(*) FROM ins), array_agg(inverter_id), array_agg(day),
           array_agg(site_id) FROM up
    """


def _rebase_sql() -> str:
    """Next days whose stored base is no longer their previous day's last reading."""
    names = [n for n, _ in ENERGY_COUNTERS]
    sets = ", ".join(
        f"{n}_base = d.{n}_last, "
        + f"{n}_kwh = {_delta(f'n.{n}_last', f'd.{n}_last', f'n.{n}_first')}"
        for n in names
    )
    stale = " OR ".join(f"n.{n}_base IS DISTINCT FROM d.{n}_last" for n in names)
    return f"""
    UPDATE inverters_energydaily n SET {sets}
    FROM inverters_energydaily d
    JOIN unnest(%s::bigint[], %s::date[]) AS k(inverter_id, day)
        ON d.inverter_id = k.inverter_id AND d.day = k.day
    WHERE n.inverter_id = d.inverter_id AND n.day = d.day + 1 AND ({stale})
    RETURNING n.site_id, n.day
    """


def _site_days_sql() -> str:
    sums = ", ".join(f"sum(e.{n}_kwh)" for n, _ in ENERGY_COUNTERS)
    kwh = ", ".join(f"{n}_kwh" for n, _ in ENERGY_COUNTERS)
    sets = ", ".join(f"{n}_kwh = EXCLUDED.{n}_kwh" for n, _ in ENERGY_COUNTERS)
    return f"""
    INSERT INTO inverters_siteenergydaily AS s (
        site_id, company_id, day, {kwh}, peak_power_w, min_soc, max_soc, inverters, updated_at)
    SELECT e.site_id, si.company_id, e.day, {sums}, sum(e.peak_power_w), min(e.min_soc),
           max(e.max_soc), count(*), now()
    FROM inverters_energydaily e JOIN pv_sites_site si ON si.id = e.site_id
    WHERE (e.site_id, e.day) IN (SELECT * FROM unnest(%s::bigint[], %s::date[]))
    GROUP BY e.site_id, si.company_id, e.day
    ORDER BY e.site_id, e.day
    ON CONFLICT (site_id, day) DO UPDATE SET {sets},
        company_id = EXCLUDED.company_id, peak_power_w = EXCLUDED.peak_power_w,
        min_soc = EXCLUDED.min_soc, max_soc = EXCLUDED.max_soc,
        inverters = EXCLUDED.inverters, updated_at = now()
    """


def _site_months_sql() -> str:
    """Re-sum the months of the site days just written (at most 31 rows each)."""
    kwh = ", ".join(f"{n}_kwh" for n, _ in ENERGY_COUNTERS)
    sums = ", ".join(f"sum(d.{n}_kwh)" for n, _ in ENERGY_COUNTERS)
    sets = ", ".join(f"{n}_kwh = EXCLUDED.{n}_kwh" for n, _ in ENERGY_COUNTERS)
    return f"""
    INSERT INTO inverters_siteenergymonthly AS m (
        site_id, company_id, month, {kwh}, days, updated_at)
    SELECT d.site_id, d.company_id, k.month, {sums}, count(*), now()
    FROM (SELECT DISTINCT site_id, date_trunc('month', day)::date AS month
          FROM unnest(%s::bigint[], %s::date[]) AS u(site_id, day)) k
    JOIN inverters_siteenergydaily d ON d.site_id = k.site_id
        AND d.day >= k.month AND d.day < (k.month + interval '1 month')::date
    GROUP BY d.site_id, d.company_id, k.month
    ORDER BY d.site_id, k.month
    ON CONFLICT (site_id, month) DO UPDATE SET {sets},
        company_id = EXCLUDED.company_id, days = EXCLUDED.days, updated_at = now()
    """


def _latest_sql() -> str:
    cols = ", ".join(TYPED_COLUMNS)
    s_cols = ", ".join(f"s.{c}" for c in TYPED_COLUMNS)
    keep = ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, l.{c})" for c in TYPED_COLUMNS)
    return f"""
    INSERT INTO inverters_inverterlatest AS l (
        inverter_id, company_id, site_id, ts, received_at, device_status, {cols},
        fault_codes, faults_ts, layout_id, vals, device_info)
    SELECT DISTINCT ON (s.inverter_id) s.inverter_id, m.company_id, m.site_id,
           {_TS.format("s.ts_ms")}, m.seen_at, COALESCE(m.device_status, ''), {s_cols},
           COALESCE(m.fault_codes, '{{}}'), {_TS.format("m.faults_ts_ms")}, s.layout_id,
           s.vals, COALESCE(m.info, '{{}}')
    FROM mc_sample_stage s JOIN mc_meta_stage m USING (inverter_id)
    ORDER BY s.inverter_id, s.ts_ms DESC
    ON CONFLICT (inverter_id) DO UPDATE SET
        company_id = EXCLUDED.company_id, site_id = EXCLUDED.site_id, ts = EXCLUDED.ts,
        received_at = EXCLUDED.received_at,
        device_status = COALESCE(NULLIF(EXCLUDED.device_status, ''), l.device_status),
        {keep},
        fault_codes = CASE WHEN EXCLUDED.faults_ts IS NULL OR EXCLUDED.faults_ts < l.faults_ts
                      THEN l.fault_codes ELSE EXCLUDED.fault_codes END,
        faults_ts = GREATEST(l.faults_ts, EXCLUDED.faults_ts),
        layout_id = EXCLUDED.layout_id, vals = EXCLUDED.vals,
        device_info = CASE WHEN EXCLUDED.device_info = '{{}}' THEN l.device_info
                      ELSE EXCLUDED.device_info END
    WHERE EXCLUDED.ts >= l.ts
    """


# A device that answers again is no longer offline; `off` (powered down) shows as standby.
# last_seen_at is refreshed every five minutes only (InverterLatest.received_at has every
# upload), so a steady inverter costs no row update per upload.
_INVERTER_STATUS_SQL = """
UPDATE inverters_inverter i SET status = x.status, last_seen_at = x.seen_at,
    firmware_versions = CASE WHEN x.firmware IS NULL THEN i.firmware_versions
                        ELSE i.firmware_versions || x.firmware END
FROM (
    SELECT m.inverter_id, m.seen_at, m.firmware,
           CASE WHEN m.device_status = 'off' THEN 'standby'
                WHEN m.device_status IS NOT NULL THEN m.device_status
                WHEN i2.status IN ('offline', 'unknown') THEN 'unknown'
                ELSE i2.status END AS status
    FROM mc_meta_stage m JOIN inverters_inverter i2 ON i2.id = m.inverter_id
) x
WHERE i.id = x.inverter_id AND (
    i.status <> x.status OR i.last_seen_at IS NULL
    OR i.last_seen_at < x.seen_at - interval '5 minutes'
    OR (x.firmware IS NOT NULL AND NOT i.firmware_versions @> x.firmware))
"""


@functools.cache
def _statements() -> dict[str, str]:
    return {
        "insert": _insert_and_merge_sql(),
        "rebase": _rebase_sql(),
        "sites": _site_days_sql(),
        "months": _site_months_sql(),
        "latest": _latest_sql(),
    }


def store_batch(
    cursor, rows: Sequence[tuple], metas: Sequence[InverterBatchMeta]
) -> tuple[StoreResult, list[tuple[int, dt.date]]]:
    """Write one batch inside the caller's transaction.

    `rows` are staging tuples: (inverter_id, ts_ms, layout_id, *typed, fault_codes, vals),
    vals a list or (faster) the `PackedArray` of `Codec.pack_vals`.
    Returns counts and the (inverter, day) pairs whose rollups changed.
    """
    result = StoreResult()
    if not rows:
        return result, []
    sql = _statements()
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor  # Django wrapper → psycopg
    use_packed_arrays(raw)
    raw.execute(_STAGE_SQL)
    with raw.copy("COPY mc_meta_stage FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_META_TYPES)
        for m in metas:
            copy.write_row(
                (
                    m.inverter_id,
                    m.company_id,
                    m.site_id,
                    m.tz,
                    m.seen_at,
                    m.device_status,
                    m.faults_ts_ms,
                    m.fault_codes,
                    m.device_info,
                    m.firmware,
                )
            )
    with raw.copy("COPY mc_sample_stage FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_SAMPLE_TYPES)
        write = copy.write_row
        for row in rows:
            write(row)
    raw.execute(sql["insert"])
    inserted, inv_ids, days, sites = raw.fetchone()
    result.inserted = inserted
    result.duplicates = len(rows) - inserted
    touched = list(zip(inv_ids or [], days or [], strict=True))
    result.days = len(touched)
    if touched:
        site_days = {(s, d) for s, d in zip(sites, days, strict=True) if s is not None}
        raw.execute(sql["rebase"], [pg_array(inv_ids), pg_array(days)])
        site_days.update((s, d) for s, d in raw.fetchall() if s is not None)
        if site_days:
            sites, sdays = zip(*sorted(site_days), strict=True)
            raw.execute(sql["sites"], [pg_array(sites), pg_array(sdays)])
            raw.execute(sql["months"], [pg_array(sites), pg_array(sdays)])
            result.site_days = len(site_days)
    return result, touched


def store_latest_and_status(cursor) -> None:
    """Latest rows and inverter status from the staged batch (after the alarm engine ran)."""
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
    raw.execute(_statements()["latest"])
    raw.execute(_INVERTER_STATUS_SQL)


def rebuild_energy_days(inverter_id: int, days: Iterable[dt.date]) -> None:
    """Re-derive stored bases and energy of the days after `days` (repair tool)."""
    days = sorted(set(days))
    if not days:
        return
    with connection.cursor() as cur:
        cur.execute(_statements()["rebase"], [[inverter_id] * len(days), days])
        site_days = {(s, d) for s, d in cur.fetchall() if s is not None}
        if site_days:
            sites, sdays = zip(*sorted(site_days), strict=True)
            cur.execute(_statements()["sites"], [list(sites), list(sdays)])
            cur.execute(_statements()["months"], [list(sites), list(sdays)])
