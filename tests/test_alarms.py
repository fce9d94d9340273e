"""The alarm engine: a fault-word bit opens an alarm, clearing it recovers it, one row per
occurrence, replays and late uploads change nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from guardian.shortcuts import assign_perm

from alarms.engine import Occurrence, fault_transitions
from alarms.models import Alarm, AlarmLevel, AlarmStatus
from devices import protocol
from ingest.batch import BatchProcessor, Incoming
from inverters.models import InverterStatus
from tests.factories import AlarmFactory, SiteFactory
from tests.ingest_helpers import (
    make_fleet,
    now_ms,
    publisher,
    reading,
    running_ingest,
    settled,
    telemetry,
)
from tests.services import needs_mosquitto, wait_for

T = [dt.datetime(2026, 11, 20, 12, m, tzinfo=dt.UTC) for m in range(10)]


def test_transitions_open_and_recover_in_time_order():
    new, recovered = fault_transitions(
        {"Warn0010": T[0]},
        [(T[3], []), (T[1], ["Warn0010", "Protect0080"]), (T[2], ["Protect0080"])],
    )
    assert recovered == {"Warn0010": T[2]}
    assert new == [Occurrence("Protect0080", T[1], T[3])]


def test_a_code_that_returns_is_a_new_occurrence():
    new, recovered = fault_transitions({}, [(T[1], ["Warn0070"]), (T[2], []), (T[3], ["Warn0070"])])
    assert recovered == {}
    assert new == [Occurrence("Warn0070", T[1], T[2]), Occurrence("Warn0070", T[3])]


def _upload(gateway, inverter, ts_ms, codes=(), **values):
    words = {"warn_word_1": [], "protect_word_1": [], "fault_word_2": []}
    for code in codes:
        word = {"W": "warn_word_1", "P": "protect_word_1", "F": "fault_word_2"}[code[0]]
        words[word].append(code)
    payload = telemetry(1, ts_ms, reading(inverter, {**words, **values}))
    return Incoming(protocol.topic(gateway.serial_number, protocol.TELEMETRY), payload)


@pytest.mark.django_db
def test_fault_bits_open_and_recover_alarms_once():
    [(gateway, [inv])] = make_fleet()
    base = now_ms() - 600_000
    ts = [base + i * 60_000 for i in range(8)]
    processor = BatchProcessor()
    processor.process([_upload(gateway, inv, ts[1], ["Warn0070"])])
    alarm = Alarm.objects.get()
    assert (alarm.code, alarm.level, alarm.message) == (
        "Warn0070",
        AlarmLevel.COMMON,
        "Low Batt volt",
    )
    assert alarm.status == AlarmStatus.OCCURRING and alarm.occurred_at.timestamp() * 1000 == ts[1]
    assert (alarm.company_id, alarm.site_id) == (inv.company_id, inv.site_id)
    # A resend, and an upload older than what we know, change nothing.
    processor.process([_upload(gateway, inv, ts[1], ["Warn0070"])])
    processor.process([_upload(gateway, inv, ts[0], [])])
    assert Alarm.objects.count() == 1 and Alarm.objects.get().status == AlarmStatus.OCCURRING
    report = processor.process(
        [
            _upload(gateway, inv, ts[2], ["Warn0070", "Protect0080"], run_status="fault"),
            _upload(gateway, inv, ts[3], []),
        ]
    )
    assert (report.alarms_opened, report.alarms_recovered) == (1, 1)
    protect = Alarm.objects.get(code="Protect0080")
    assert protect.level == AlarmLevel.IMPORTANT and protect.status == AlarmStatus.RECOVERED
    assert protect.recovered_at.timestamp() * 1000 == ts[3]
    warn = Alarm.objects.get(code="Warn0070")
    assert warn.status == AlarmStatus.RECOVERED and warn.recovered_at.timestamp() * 1000 == ts[3]
    # The same code again later is a second occurrence.
    processor.process([_upload(gateway, inv, ts[4], ["Warn0070", "Fault0201"])])
    assert Alarm.objects.filter(code="Warn0070").count() == 2
    assert set(Alarm.objects.occurring().values_list("code", flat=True)) == {
        "Warn0070",
        "Fault0201",
    }
    # Replaying the whole history opens nothing new.
    processor.process([_upload(gateway, inv, t, ["Warn0070"]) for t in ts[:5]])
    assert Alarm.objects.count() == 4
    inv.refresh_from_db()
    assert inv.status == InverterStatus.RUNNING


@pytest.mark.django_db
def test_alarms_are_scoped_like_their_inverters(tenants):
    granted = SiteFactory(company=tenants.sunfix, name="Granted")
    foreign = SiteFactory(company=tenants.nordlicht, name="Foreign")
    assign_perm("pv_sites.view_site", tenants.owner, granted)
    alarms = {
        site.name: AlarmFactory(inverter__gateway__site=site, occurred_at=T[0])
        for site in (granted, foreign)
    }
    assert list(Alarm.objects.visible_to(tenants.helios_admin)) == [alarms["Granted"]]
    assert list(Alarm.objects.visible_to(tenants.owner)) == [alarms["Granted"]]
    assert list(Alarm.objects.visible_to(tenants.nordlicht_om)) == [alarms["Foreign"]]
    assert not Alarm.objects.visible_to(tenants.nordlicht_owner).exists()


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_injected_fault_over_mqtt_opens_and_clearing_recovers(mosquitto, clean_samples):
    [(gateway, [inv])] = make_fleet()
    ts = now_ms() - 120_000
    with running_ingest(mosquitto.broker) as service, publisher(mosquitto.broker) as pub:
        pub.telemetry(gateway, telemetry(1, ts, reading(inv, {"protect_word_1": ["Protect0080"]})))
        pub.flush()
        wait_for(settled(service, 1), what="the fault upload")
        alarm = Alarm.objects.get(inverter=inv)
        assert alarm.code == "Protect0080" and alarm.status == AlarmStatus.OCCURRING
        pub.telemetry(gateway, telemetry(2, ts + 60_000, reading(inv, {"protect_word_1": []})))
        pub.flush()
        wait_for(settled(service, 2), what="the clearing upload")
    alarm.refresh_from_db()
    assert alarm.status == AlarmStatus.RECOVERED
    assert alarm.recovered_at.timestamp() * 1000 == ts + 60_000
    assert service.counters.alarms_opened == service.counters.alarms_recovered == 1
