"""Telemetry storage: the sample table, its partitions, the decoder, latest rows and the
daily energy rollups (local days of the site, deltas across the day boundary, late data)."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from guardian.shortcuts import assign_perm

from devices import protocol
from devices.decoding import TYPED_POINTS, codec_for_model
from devices.registermap import RegisterMap, list_models
from ingest.batch import BatchProcessor, Incoming
from inverters.telemetry import (
    EnergyDaily,
    InverterLatest,
    SiteEnergyDaily,
    create_partitions_ahead,
    drop_expired_partitions,
    ensure_partitions,
    partition_days,
    partition_name,
    sample_counts,
)
from tests.factories import (
    EnergyDailyFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteEnergyDailyFactory,
    SiteFactory,
)
from tests.ingest_helpers import TH, make_fleet, reading, register_image, telemetry

pytestmark = pytest.mark.django_db


def test_sample_table_has_the_typed_columns_of_the_decoder():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'inverters_sample'"
        )
        columns = dict(cur.fetchall())
    for column, _, sql_type in TYPED_POINTS:
        assert columns[column] == sql_type
    assert columns["vals"] == "ARRAY" and columns["fault_codes"] == "ARRAY"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT partstrat FROM pg_partitioned_table "
            "WHERE partrelid = 'inverters_sample'::regclass"
        )
        assert cur.fetchone() == ("r",)


@pytest.mark.parametrize("model", list_models())
def test_fast_decoder_equals_the_register_map_decoder(model):
    rm = RegisterMap.for_model(model)
    codec = codec_for_model(model)
    rng = random.Random(model)
    for _ in range(100):
        blocks = [
            protocol.Block(b.table, b.start, tuple(rng.randrange(65536) for _ in range(b.count)))
            for b in rm.poll_blocks
        ]
        expected = rm.decode_blocks({(b.table, b.start): b.registers for b in blocks})
        assert codec.present(codec.decode(blocks)) == expected
    assert len(codec.keys) >= 80


def test_packed_arrays_are_what_psycopg_would_send():
    """Codec.pack_vals is a fast path: it must produce PostgreSQL's own binary float4[]."""
    from psycopg import pq
    from psycopg.adapt import Transformer

    from devices.decoding import FLOAT4_ARRAY_OID

    codec = codec_for_model(TH)
    rm = RegisterMap.for_model(TH)
    rng = random.Random(1)
    with connection.cursor() as cur:
        tx = Transformer(cur.cursor)
        float4_list = cur.cursor.adapters.get_dumper_by_oid(FLOAT4_ARRAY_OID, pq.Format.BINARY)
        for hourly in (True, False):
            blocks = [
                protocol.Block(b.table, b.start, tuple(rng.randrange(9999) for _ in range(b.count)))
                for b in rm.poll_blocks
                if hourly or b.interval_s < 3600
            ]
            decoded = codec.decode(blocks)
            assert (None in decoded.vals) is not hourly
            values = [None if v is None else float(v) for v in decoded.vals]
            expected = float4_list(list, tx).dump(values)
            assert bytes(codec.pack_vals(decoded)) == bytes(expected)


def test_partitions_are_created_ahead_and_dropped_by_retention():
    today = dt.date(2031, 3, 10)
    created = create_partitions_ahead(2, today=today)
    assert {partition_name(today + dt.timedelta(days=d)) for d in (-1, 0, 1, 2)} <= set(created)
    assert create_partitions_ahead(2, today=today) == []  # idempotent
    old = today - dt.timedelta(days=120)
    ensure_partitions([old])
    dropped = drop_expired_partitions(90, today=today)
    assert partition_name(old) in dropped
    days = partition_days()
    assert old not in days and today in days and today + dt.timedelta(days=2) in days


# ---------------------------------------------------------------------------------------------
# Rollups, through the batch processor (no broker needed)

ROME = ZoneInfo("Europe/Rome")


def local_ms(day: dt.date, hour: int, minute: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), ROME).timestamp() * 1000)


def upload(gateway, inverter, ts_ms: int, **values) -> Incoming:
    payload = telemetry(1, ts_ms, reading(inverter, values))
    return Incoming(protocol.topic(gateway.serial_number, protocol.TELEMETRY), payload)


@pytest.fixture
def site_fleet(db):
    [(gateway, [a, b])] = make_fleet(models=(TH, TH), tz="Europe/Rome")
    return gateway, a, b


def test_daily_energy_uses_the_local_day_and_the_previous_days_last_counter(site_fleet):
    gateway, a, b = site_fleet
    d0 = dt.datetime.now(ROME).date() - dt.timedelta(days=3)
    d1 = d0 + dt.timedelta(days=1)
    day0 = [
        upload(gateway, a, local_ms(d0, 22), pv_energy_total=100.0, pv_power=10, batt_soc=40),
        upload(gateway, a, local_ms(d0, 23, 59), pv_energy_total=105.0, pv_power=0, batt_soc=35),
    ]
    day1 = [
        # 00:01 in Rome is still the previous day in UTC: it belongs to d1 all the same.
        upload(gateway, a, local_ms(d1, 0, 1), pv_energy_total=105.5, pv_power=0, batt_soc=34),
        upload(gateway, a, local_ms(d1, 12), pv_energy_total=120.0, pv_power=6100, batt_soc=90),
        upload(
            gateway,
            a,
            local_ms(d1, 23),
            pv_energy_total=130.0,
            pv_power=0,
            batt_soc=60,
            grid_import_energy_total=7.5,
        ),
        upload(gateway, b, local_ms(d1, 11), pv_energy_total=10.0, pv_power=2000, batt_soc=20),
        upload(gateway, b, local_ms(d1, 13), pv_energy_total=12.0, pv_power=2500, batt_soc=95),
    ]
    processor = BatchProcessor()
    # Day 1 arrives first (a gateway backfilling out of order) …
    report = processor.process(day1)
    assert report.samples == 5 and report.rejected == 0
    first_pass = EnergyDaily.objects.get(inverter=a, day=d1)
    assert first_pass.pv_kwh == pytest.approx(24.5)  # no previous day yet: its own first
    # … then day 0: day 1's baseline becomes day 0's last counter.
    processor.process(day0)
    a0 = EnergyDaily.objects.get(inverter=a, day=d0)
    a1 = EnergyDaily.objects.get(inverter=a, day=d1)
    assert a0.pv_kwh == pytest.approx(5.0)
    assert a1.pv_kwh == pytest.approx(25.0)
    assert (a1.samples, a1.peak_power_w, a1.min_soc, a1.max_soc) == (3, 6100, 34, 90)
    assert a1.company_id == a.company_id and a1.site_id == a.site_id
    b1 = EnergyDaily.objects.get(inverter=b, day=d1)
    assert b1.pv_kwh == pytest.approx(2.0)
    site1 = SiteEnergyDaily.objects.get(site=a.site, day=d1)
    assert site1.pv_kwh == pytest.approx(27.0) and site1.inverters == 2
    assert (site1.min_soc, site1.max_soc, site1.peak_power_w) == (20, 95, 6100 + 2500)
    assert SiteEnergyDaily.objects.get(site=a.site, day=d0).pv_kwh == pytest.approx(5.0)
    # Resending everything changes nothing.
    again = processor.process(day0 + day1)
    assert again.samples == 0 and again.duplicates == 7
    assert EnergyDaily.objects.get(inverter=a, day=d1).samples == 3
    assert EnergyDaily.objects.get(inverter=a, day=d1).pv_kwh == pytest.approx(25.0)
    assert SiteEnergyDaily.objects.get(site=a.site, day=d1).pv_kwh == pytest.approx(27.0)
    assert sample_counts([a.id, b.id]) == 7
    # The newest upload is the latest row, whatever order the batches came in.
    latest = InverterLatest.objects.get(inverter=a)
    assert latest.ts == dt.datetime.fromtimestamp(local_ms(d1, 23) / 1000, dt.UTC)
    assert latest.pv_energy_total == 130.0 and latest.import_energy_total == 7.5


def test_latest_keeps_points_the_newest_upload_did_not_carry(site_fleet):
    gateway, a, _ = site_fleet
    processor = BatchProcessor()
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    hourly = telemetry(1, now - 60_000, reading(a, {"dsp_version": "02.07"}, hourly=True))
    processor.process([Incoming(protocol.topic(gateway.serial_number, "telemetry"), hourly)])
    processor.process([upload(gateway, a, now, pv_power=4321)])
    latest = InverterLatest.objects.get(inverter=a)
    assert latest.pv_power == 4321 and latest.values()["pv_power"] == 4321
    assert latest.device_info["dsp_version"] == "02.07"
    shown = latest.display_values()
    assert shown["model_name"] == TH and "model_name" not in latest.values()
    # What pages show equals the register map's own decoding of the newest upload.
    expected = RegisterMap.for_model(TH).decode_blocks(register_image(TH, {"pv_power": 4321}))
    for key, value in expected.items():
        if key in latest.device_info:
            continue
        if isinstance(value, float):
            assert shown[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert shown[key] == value, key
    # An older upload that arrives late does not overwrite newer values.
    processor.process([upload(gateway, a, now - 120_000, pv_power=1)])
    assert InverterLatest.objects.get(inverter=a).pv_power == 4321
    a.refresh_from_db()
    assert a.firmware_versions["DSP"] == "02.07"


def test_rollups_and_latest_rows_are_scoped_like_their_inverters(tenants):
    granted = SiteFactory(company=tenants.sunfix, name="Granted")
    other = SiteFactory(company=tenants.sunfix, name="Other")
    foreign = SiteFactory(company=tenants.nordlicht, name="Foreign")
    assign_perm("pv_sites.view_site", tenants.owner, granted)
    day = dt.date(2026, 1, 1)
    rows = {}
    for site in (granted, other, foreign):
        inv = InverterFactory(gateway__site=site)
        rows[site.name] = EnergyDailyFactory(inverter=inv, day=day)
        SiteEnergyDailyFactory(site=site, day=day)
        InverterLatestFactory(inverter=inv, ts=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert set(EnergyDaily.objects.visible_to(tenants.helios_om)) == {
        rows["Granted"],
        rows["Other"],
    }
    assert list(EnergyDaily.objects.visible_to(tenants.nordlicht_admin)) == [rows["Foreign"]]
    assert list(EnergyDaily.objects.visible_to(tenants.owner)) == [rows["Granted"]]
    assert SiteEnergyDaily.objects.visible_to(tenants.owner).get().site == granted
    assert InverterLatest.objects.visible_to(tenants.owner).get().site == granted
    assert not InverterLatest.objects.visible_to(tenants.nordlicht_owner).exists()
