"""The monthly site rollup (SiteEnergyMonthly) that the Energy tab's year and total views read:
ingest's storage path creates and updates it as samples arrive, in any order, and a late
sample that changes an earlier day changes its month (and the next month when it moves the
baseline of the month's first day)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Sum

from devices import protocol
from fleet.energy import Period, energy_bars
from ingest.batch import BatchProcessor, Incoming
from inverters.telemetry import EnergyDaily, SiteEnergyDaily, SiteEnergyMonthly
from tests.ingest_helpers import TH, make_fleet, reading, telemetry

pytestmark = pytest.mark.django_db

ROME = ZoneInfo("Europe/Rome")


def at(day: dt.date, hour: int, minute: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), ROME).timestamp() * 1000)


class Gateway:
    """Uploads of one simulated gateway, stored through ingest's batch processor."""

    def __init__(self, gateway, inverter) -> None:
        self.gateway, self.inverter = gateway, inverter
        self.processor = BatchProcessor()
        self.seq = 0

    def send(self, *uploads: tuple[int, float]) -> None:
        messages = []
        for ts_ms, pv_total in uploads:
            self.seq += 1
            values = {"pv_energy_total": pv_total, "load_energy_total": pv_total / 2}
            payload = telemetry(self.seq, ts_ms, reading(self.inverter, values))
            topic = protocol.topic(self.gateway.serial_number, protocol.TELEMETRY)
            messages.append(Incoming(topic, payload))
        report = self.processor.process(messages)
        assert report.rejected == 0


def month_row(site, month: dt.date) -> SiteEnergyMonthly:
    return SiteEnergyMonthly.objects.get(site=site, month=month)


def assert_months_sum_their_days(site) -> None:
    for row in SiteEnergyMonthly.objects.filter(site=site):
        days = SiteEnergyDaily.objects.filter(
            site=site,
            day__gte=row.month,
            day__lt=(row.month + dt.timedelta(days=32)).replace(day=1),
        )
        totals = days.aggregate(pv=Sum("pv_kwh"), load=Sum("load_kwh"))
        assert row.pv_kwh == pytest.approx(totals["pv"]), row.month
        assert row.load_kwh == pytest.approx(totals["load"]), row.month
        assert row.days == days.count(), row.month
        assert row.company_id == site.company_id


@pytest.fixture
def fleet(db):
    [(gateway, [inverter])] = make_fleet(models=(TH,), tz="Europe/Rome")
    return Gateway(gateway, inverter), inverter.site


def test_ingest_keeps_the_month_rows_of_a_site(fleet):
    uploads, site = fleet
    today = dt.datetime.now(ROME).date()
    month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)  # last month
    next_month = today.replace(day=1)
    d1, d2 = month + dt.timedelta(days=4), month + dt.timedelta(days=9)
    last_day = next_month - dt.timedelta(days=1)

    # A day of the month: its row is made.
    uploads.send((at(d2, 10), 100.0), (at(d2, 16), 110.0))
    row = month_row(site, month)
    assert (row.pv_kwh, row.load_kwh, row.days) == (pytest.approx(10), pytest.approx(5), 1)

    # An earlier day of the same month arrives later, with the day after it.
    uploads.send((at(d1, 12), 80.0), (at(d1, 18), 90.0), (at(d1 + dt.timedelta(days=1), 12), 96.0))
    row = month_row(site, month)
    assert (row.pv_kwh, row.days) == (pytest.approx(10 + 10 + 6), 3)

    # A late sample early on d1 changes that day, and so the month.
    uploads.send((at(d1, 6), 75.0))
    assert EnergyDaily.objects.get(inverter=uploads.inverter, day=d1).pv_kwh == pytest.approx(15)
    assert month_row(site, month).pv_kwh == pytest.approx(15 + 6 + 10)
    assert_months_sum_their_days(site)

    # The first day of the next month is its own month row …
    uploads.send((at(next_month, 0, 30), 160.0))
    assert month_row(site, next_month).pv_kwh == pytest.approx(0)
    # … until the month's last day arrives late: it becomes the first day's baseline, so both
    # months change.
    uploads.send((at(last_day, 12), 150.0), (at(last_day, 20), 152.0))
    assert month_row(site, month).pv_kwh == pytest.approx(31 + 2)
    assert month_row(site, next_month).pv_kwh == pytest.approx(160 - 152)
    assert_months_sum_their_days(site)

    # Resending everything changes nothing.
    before = list(SiteEnergyMonthly.objects.filter(site=site).values_list("month", "pv_kwh"))
    uploads.send((at(d2, 10), 100.0), (at(last_day, 20), 152.0), (at(d1, 6), 75.0))
    after = list(SiteEnergyMonthly.objects.filter(site=site).values_list("month", "pv_kwh"))
    assert after == before

    # The Energy tab's year view shows these month rows.
    bars = energy_bars(site, period=Period.YEAR, anchor=month)
    assert bars.values["pv"][month.month - 1] == pytest.approx(33)
