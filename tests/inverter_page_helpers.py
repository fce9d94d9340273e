"""The setup the tests of the inverter list and the inverter tabs share (test_inverter_list.py,
test_inverter_tabs.py): an inverter on SunFix's site in Rome, granted to the owner, with its
newest values, and helpers that store samples and fill a fleet."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from devices.decoding import codec_for_model
from inverters.models import InverterStatus
from inverters.telemetry import layout_id_for
from tests.factories import (
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SampleFactory,
    SiteFactory,
)
from tests.fleet_helpers import TH, add_inverter

FIRMWARE = {"DSP": "01.90.06", "LCD": "01.56", "ARC": "00.10"}


def url(name: str, *args) -> str:
    return reverse(f"inverters:{name}", args=args)


def layout_and_vals(model: str, **values: float) -> dict:
    """`layout_id` and `vals` of a sample of `model` holding `values` (register keys) of the
    points that are not typed columns."""
    codec = codec_for_model(model)
    return {
        "layout_id": layout_id_for(codec),
        "vals": [values.get(key) for key in codec.rest_keys],
    }


@pytest.fixture(name="inverter")
def reporting_inverter(site):
    """ "Roof east" (ECH10K-TH-EU) on the site's gateway, running, with newest values. Import
    `reporting_inverter` (and `granted_site` from tests.fleet_helpers) to use `inverter`."""
    inverter = add_inverter(site, "INV-TH-0001")
    inverter.name = "Roof east"
    inverter.status = InverterStatus.RUNNING
    inverter.firmware_versions = FIRMWARE
    inverter.save()
    InverterLatestFactory(
        inverter=inverter,
        pv_power=3450.0,
        batt_soc=81.0,
        batt_soh=99.0,
        batt_temp=26.8,
        inv_temp=41.5,
        run_status=2,
        pv_energy_total=1234.5,
        fault_codes=["Warn0070"],
        **layout_and_vals(TH, batt_voltage=402.5, grid_frequency=50.02, pv1_voltage=612.3),
    )
    return inverter


def store_samples(inverter, start: dt.datetime, count: int, step_s: int = 60) -> None:
    """`count` samples of `inverter` every `step_s` seconds from `start`, with a rising SOC."""
    for i in range(count):
        SampleFactory(
            inverter=inverter,
            ts=start + dt.timedelta(seconds=i * step_s),
            pv_power=1000.0 + i,
            batt_soc=50.0 + i % 50,
            batt_soh=100.0,
            batt_temp=26.8,
            **layout_and_vals(
                inverter.model, batt_chg_limit_current=10.0, batt_dchg_limit_current=120.0
            ),
        )


def fill_fleet(company, sites: int, owner=None) -> None:
    """`sites` sites of `company`, each with a gateway and an inverter with newest values;
    every site granted to `owner` when given."""
    from guardian.shortcuts import assign_perm

    for n in range(sites):
        site = SiteFactory(company=company, name=f"Fleet {n:04d}")
        if owner is not None:
            assign_perm("pv_sites.view_site", owner, site)
        gateway = GatewayFactory(site=site)
        inverter = InverterFactory(gateway=gateway, firmware_versions=FIRMWARE)
        InverterLatestFactory(inverter=inverter, pv_power=100.0 * n)


#: What `bulk_samples` stores besides the typed columns, as SQL over `n` (the sample's
#: number) and `pv` (its PV power in W).
BULK_VALUES = {
    "pv1_power": "pv * 0.34",
    "pv2_power": "pv * 0.33",
    "pv3_power": "pv * 0.33",
    "pv1_voltage": "560 + 40 * sin(n / 300.0)",
    "pv1_current": "pv * 0.34 / 560",
    "batt_voltage": "400 + (n %% 80) * 0.2",
    "batt_current": "-8 + (n %% 16)",
    "batt_chg_limit_current": "25",
    "batt_dchg_limit_current": "25",
    "grid_frequency": "50 + 0.02 * sin(n / 7.0)",
    "grid_voltage_l1": "230 + 2 * sin(n / 50.0)",
    "inv_voltage_l1": "231 + 2 * sin(n / 50.0)",
    "inv_current_l1": "pv / 3 / 230",
    "inv_frequency": "50 + 0.02 * sin(n / 7.0)",
    "temp_heatsink": "35 + pv / 500",
}


def bulk_samples(inverter, start: dt.datetime, count: int, step_s: int = 10) -> None:
    """`count` samples every `step_s` seconds from `start`, written in one statement (a day
    of uploads): PV power a sine from 6 to 18 hours after `start`, the battery's SOC rising,
    grid and inverter values around their nominal values (BULK_VALUES)."""
    from django.db import connection

    from inverters.telemetry import SAMPLE_TABLE, ensure_partitions

    end = start + dt.timedelta(seconds=step_s * count)
    first = start.astimezone(dt.UTC).date()
    days = (end.astimezone(dt.UTC).date() - first).days
    ensure_partitions(first + dt.timedelta(days=d) for d in range(days + 1))
    codec = codec_for_model(inverter.model)
    vals = ", ".join(BULK_VALUES.get(key, "NULL") for key in codec.rest_keys)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SAMPLE_TABLE} (inverter_id, ts, layout_id, pv_power, batt_soc, "
            "batt_soh, batt_temp, batt_power, load_power, grid_power, inv_power, inv_temp, vals) "
            "SELECT %s, %s + make_interval(secs => n * %s), %s, pv, 20 + (n %% 80), 98, "
            "25 + (n %% 30) / 10.0, -1500 + (n %% 30) * 100, 800 + 300 * sin(n / 40.0), "
            f"pv - 800, pv * 0.97, 38 + pv / 1000, ARRAY[{vals}]::real[] "
            "FROM (SELECT n, 5000 * greatest(sin(pi() * (n * %s / 3600.0 - 6) / 12), 0) AS pv "
            "      FROM generate_series(0, %s - 1) AS n) AS s",
            [inverter.pk, start, step_s, layout_id_for(codec), step_s, count],
        )
