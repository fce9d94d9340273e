"""Inverter → AutoTest (guide §6.4.2.7): the CEI 0-21 self-test of an Italian inverter's
interface protection.

First the simulated inverter's sequence on a frozen clock (no database); then the tab, its
form, the permission matrix and the PDF; then everything for real: a private Mosquitto, a
`celery worker` subprocess on the test database, ingest in a thread, the simulator's gateway
and inverter on an accelerated clock, and the browser.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
import zlib
from types import SimpleNamespace

import pytest
from django.urls import reverse

from accounts.models import AuditAction, AuditEvent
from fleet import autotest
from fleet.models import AutoTestRun, AutoTestStatus
from gateways.models import GatewayStatus
from maintenance.dispatch import close_reply_waiter
from maintenance.models import OperationKind, OperationState, RemoteOperation
from simulator.clock import SimClock
from simulator.environment import Site as SimSite
from simulator.fleet import FleetThread
from simulator.inverter import SimulatedInverter
from simulator.physics import SELFTEST_RECONNECT_S
from simulator.sources import GatewaySpec, InverterSpec
from tests.autotest_helpers import italian_inverter, italian_site, stored_run, urls
from tests.browser import PASSWORD, sign_in
from tests.device_rig import gateway_status, start_worker, stop_process, tasks_to
from tests.factories import GatewayFactory, InverterFactory, SiteFactory
from tests.ingest_helpers import TH, running_ingest
from tests.permission_matrix import Expect, assert_matrix
from tests.services import Mosquitto, needs_mosquitto, wait_for

T0 = 1_750_000_000.0
CODES = ["59.S1", "59.S2", "27.S1", "27.S2", "81>.S1", "81<.S1", "81>.S2", "81<.S2"]
THRESHOLDS = [253.0, 264.5, 195.5, 34.5, 50.2, 49.8, 51.5, 47.5]
LIMITS_MS = [3000, 200, 1500, 200, 100, 100, 100, 100]
HTMX_RUN = {"HX-Request": "true", "HX-Target": "autotest-run"}


def pdf_text(content: bytes) -> bytes:
    """The page contents of a reportlab PDF, inflated (ASCII85 + Flate streams)."""
    assert content.startswith(b"%PDF-")
    text = content
    for match in re.finditer(
        rb"/ASCII85Decode /FlateDecode \] /Length \d+\s*>>\s*stream\r?\n(.*?)endstream",
        content,
        re.S,
    ):
        raw = match.group(1).strip().removesuffix(b"~>")
        text += zlib.decompress(base64.a85decode(raw))
    return text


def pdf_has(content: bytes, words: str) -> bool:
    escaped = words.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return escaped.encode("cp1252") in pdf_text(content)


# --- the simulated inverter's sequence --------------------------------------------------------


def frozen_inverter(model: str = TH) -> tuple[SimulatedInverter, SimClock]:
    clock = SimClock(start=T0, speed=0, catch_up=False)
    return SimulatedInverter("ATSIM0001", model, clock=clock, soc=70), clock


def steps_of(values: dict) -> list[tuple]:
    return [
        (
            values[f"autotest{i}_state"],
            values[f"autotest{i}_threshold"],
            values[f"autotest{i}_trip_value"],
            values[f"autotest{i}_trip_time"],
            values[f"autotest{i}_result"],
        )
        for i in range(1, 9)
    ]


@pytest.mark.parametrize("model", ["ECH10K-TH-EU", "ECH6K-SML-EU"])
def test_the_simulated_sequence_trips_every_protection_and_reconnects(model):
    inverter, clock = frozen_inverter(model)
    before = inverter.values()
    assert before["autotest_state"] == "idle" and before["run_status"] == "on_grid"
    assert [s[1] for s in steps_of(before)] == THRESHOLDS  # the settings, before any test

    inverter.write("autotest_command", "start")
    seen_states = set()
    for second in range(0, 45):
        clock.set(T0 + second + 0.5)
        values = inverter.values()
        seen_states.add((values["autotest_state"], values["autotest_step"]))
        if values["autotest_state"] == "running":
            assert values["run_status"] == "self_check"  # off the grid while it tests
    assert ("running", 1) in seen_states and ("running", 8) in seen_states

    clock.set(T0 + 40)
    done = inverter.values()
    assert done["autotest_state"] == "passed" and done["autotest_run_count"] == 1
    for index, ((state, threshold, value, trip_ms, result), limit) in enumerate(
        zip(steps_of(done), LIMITS_MS, strict=True)
    ):
        assert (state, result) == ("done", "pass")
        tolerance = 2.3 if index < 4 else 0.02  # 1 % of 230 V; 20 mHz
        assert abs(value - threshold) <= tolerance + 1e-6
        assert limit * 0.95 <= trip_ms <= limit * 1.03 + 20
    # The relay closes again once the reconnection delay has passed.
    assert inverter.values()["run_status"] == "waiting"
    clock.set(T0 + 40 + SELFTEST_RECONNECT_S + 10)
    after = inverter.values()
    assert after["run_status"] in ("on_grid", "standby") and after["autotest_state"] == "passed"


def test_the_registers_carry_the_results_as_the_map_encodes_them():
    inverter, clock = frozen_inverter()
    inverter.write("autotest_command", "start")
    clock.set(T0 + 60)
    inverter.refresh()
    rm = inverter.rm
    words = inverter.input.words(0x0C00, 0x46)  # what a Modbus read of the block answers
    assert rm.decode_point("autotest_state", words[0:1]) == "passed"
    # Step 2 (59.S2) at 0x0C10: state, threshold, trip value, time limit, trip time, result.
    step = words[0x10:0x16]
    assert rm.decode_point("autotest2_state", step[0:1]) == "done"
    assert rm.decode_point("autotest2_threshold", step[1:2]) == 264.5
    assert rm.decode_point("autotest2_time_limit", step[3:4]) == 200
    assert rm.decode_point("autotest2_result", step[5:6]) == "pass"
    assert "autotest_state" not in rm.telemetry_keys()  # read on demand, never uploaded


def test_a_step_that_trips_too_late_fails_the_test():
    inverter, clock = frozen_inverter()
    inverter.physics.selftest_slow = frozenset({2})
    inverter.write("autotest_command", "start")
    clock.set(T0 + 45)
    values = inverter.values()
    assert values["autotest_state"] == "failed"
    results = [s[4] for s in steps_of(values)]
    assert results == ["pass", "fail", "pass", "pass", "pass", "pass", "pass", "pass"]
    assert values["autotest2_trip_time"] > 200 * 1.03 + 20


def test_the_inverter_refuses_to_start_when_the_conditions_do_not_hold():
    inverter, clock = frozen_inverter()
    inverter.write("power_switch", "off")
    clock.set(T0 + 10)
    inverter.write("autotest_command", "start")
    values = inverter.values()
    assert (values["autotest_state"], values["autotest_reason"]) == ("refused", "power_off")
    assert values["run_status"] == "shutdown"
    assert {s[0] for s in steps_of(values)} == {"pending"}

    other, clock = frozen_inverter()
    other.inject_fault("Protect0080")  # grid undervoltage
    clock.set(T0 + 5)
    other.write("autotest_command", "start")
    assert other.values()["autotest_reason"] in ("fault_active", "grid_unstable")


def test_a_fault_or_a_power_off_aborts_a_running_test():
    inverter, clock = frozen_inverter()
    inverter.write("autotest_command", "start")
    clock.set(T0 + 12)
    inverter.inject_fault("Fault0108")
    values = inverter.values()
    assert (values["autotest_state"], values["autotest_reason"]) == ("aborted", "fault_active")
    states = [s[0] for s in steps_of(values)]
    assert states[0] == "done" and "skipped" in states and "pending" not in states

    other, clock = frozen_inverter()
    other.write("autotest_command", "start")
    clock.set(T0 + 3)
    other.write("autotest_command", "abort")
    assert other.values()["autotest_reason"] == "user_abort"
    # A new Start after the reconnection delay runs a new test.
    clock.set(T0 + 3 + SELFTEST_RECONNECT_S + 70)
    other.write("autotest_command", "start")
    again = other.values()
    assert (again["autotest_state"], again["autotest_run_count"]) == ("running", 2)


# --- the tab, its form, the permission matrix, the PDF ----------------------------------------


@pytest.fixture
def italy(tenants):
    inverter = italian_inverter(tenants, serial_number="ITAT000001")
    return SimpleNamespace(inverter=inverter, site=inverter.site, urls=urls(inverter))


@pytest.mark.django_db
@pytest.mark.matrix("inverters:autotest")
def test_permission_matrix_of_the_tab(tenants, client_for, italy):
    assert_matrix(tenants, client_for, italy.urls.tab, Expect())


@pytest.mark.django_db
@pytest.mark.matrix("inverters:autotest_start")
def test_permission_matrix_of_start(tenants, client_for, italy):
    assert_matrix(tenants, client_for, italy.urls.start, Expect(admin=405, om=405))

    def fresh(actor: str) -> str:
        return urls(italian_inverter(tenants, site=italy.site)).start

    assert_matrix(
        tenants, client_for, fresh, Expect(admin=302, om=302), method="post", data={"agree": "on"}
    )
    starters = AutoTestRun.objects.values_list("started_by__email", flat=True)
    assert sorted(starters) == ["admin@helios.example", "om@helios.example"]


@pytest.mark.django_db
@pytest.mark.matrix("inverters:autotest_run")
def test_permission_matrix_of_a_run(tenants, client_for, italy):
    run = stored_run(italy.inverter, tenants.sunfix_om)
    assert_matrix(tenants, client_for, urls(italy.inverter, run).run, Expect())
    assert_matrix(tenants, client_for, urls(italy.inverter, run).run, Expect(), headers=HTMX_RUN)


@pytest.mark.django_db
@pytest.mark.matrix("inverters:autotest_pdf")
def test_permission_matrix_of_the_pdf(tenants, client_for, italy):
    run = stored_run(italy.inverter, tenants.sunfix_om)
    assert_matrix(tenants, client_for, urls(italy.inverter, run).pdf, Expect())


@pytest.mark.django_db
def test_an_inverter_outside_italy_has_no_autotest(tenants, client_for):
    site = SiteFactory(company=tenants.sunfix, country="DE", time_zone="Europe/Berlin")
    inverter = InverterFactory(gateway=GatewayFactory(site=site, status=GatewayStatus.ONLINE))
    run = stored_run(inverter, tenants.sunfix_om)
    client = client_for(tenants.helios_admin)
    links = urls(inverter, run)
    for url in (links.tab, links.run, links.pdf):
        assert client.get(url).status_code == 404, url
    assert client.post(links.start, {"agree": "on"}).status_code == 404
    assert AutoTestRun.objects.count() == 1 and not RemoteOperation.objects.exists()
    details = client.get(reverse("inverters:detail", args=[inverter.pk])).content.decode()
    assert links.tab not in details  # no tab in the bar


@pytest.mark.django_db
def test_the_tab_shows_the_conditions_the_agreement_and_start(tenants, client_for, italy):
    client = client_for(tenants.sunfix_om)
    html = client.get(italy.urls.tab).content.decode()
    for text in (
        "The inverter is running and connected to the grid (on-grid).",
        "No fault or protection code is active on the inverter.",
        "An installer is present at the site",
        "CEI 0-21",
        'name="agree"',
        f'action="{italy.urls.start}"',
        "No AutoTest has been run on this inverter yet.",
    ):
        assert text in html, text
    assert "hx-trigger" not in html
    details = client.get(reverse("inverters:detail", args=[italy.inverter.pk])).content.decode()
    assert f'href="{italy.urls.tab}"' in details  # the tab is in the bar for an Italian site
    owner_page = client_for(tenants.owner).get(
        reverse("inverters:detail", args=[italy.inverter.pk])
    )
    assert italy.urls.tab not in owner_page.content.decode()


@pytest.mark.django_db
def test_start_needs_the_agreement_and_sends_nothing_without_it(tenants, client_for, italy):
    client = client_for(tenants.sunfix_om)
    response = client.post(italy.urls.start, {})
    assert response.status_code == 200
    assert "Confirm the test conditions to start." in response.content.decode()
    assert not AutoTestRun.objects.exists() and not RemoteOperation.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.AUTOTEST_STARTED).exists()


@pytest.mark.django_db
def test_start_records_the_command_the_run_and_the_audit_event(tenants, client_for, italy):
    client = client_for(tenants.sunfix_om)
    response = client.post(italy.urls.start, {"agree": "on"})
    run = AutoTestRun.objects.get()
    assert response.status_code == 302 and response["Location"] == urls(italy.inverter, run).run
    assert run.status == AutoTestStatus.STARTING and run.started_by == tenants.sunfix_om
    assert [s.code for s in run.steps.all()] == CODES
    assert [s.threshold for s in run.steps.all()] == THRESHOLDS
    operation = run.start_operation
    assert operation.kind == OperationKind.WRITE and operation.state == OperationState.QUEUED
    assert operation.request == {"values": {"autotest_command": "start"}}
    assert operation.user == tenants.sunfix_om
    event = AuditEvent.objects.get(action=AuditAction.AUTOTEST_STARTED)
    assert event.actor == tenants.sunfix_om and event.after["run"] == run.pk
    # The page polls the results while the test runs, and offers no second start.
    html = client.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 2s"' in html and 'name="agree"' not in html
    assert "A test of this inverter is running." in html
    again = client.post(italy.urls.start, {"agree": "on"})
    assert "An AutoTest of this inverter is already running." in again.content.decode()
    assert AutoTestRun.objects.count() == 1


@pytest.mark.django_db
def test_start_is_refused_while_the_gateway_is_offline(tenants, client_for, italy):
    italy.inverter.gateway.status = GatewayStatus.OFFLINE
    italy.inverter.gateway.save()
    response = client_for(tenants.sunfix_admin).post(italy.urls.start, {"agree": "on"})
    assert "gateway is offline" in response.content.decode()
    assert not AutoTestRun.objects.exists() and not RemoteOperation.objects.exists()


@pytest.mark.django_db
def test_the_results_show_each_step_and_stop_polling_at_the_end(tenants, client_for, italy):
    run = stored_run(italy.inverter, tenants.sunfix_om, status=AutoTestStatus.RUNNING, steps=3)
    client = client_for(tenants.sunfix_om)
    part = client.get(urls(italy.inverter, run).run, headers=HTMX_RUN).content.decode()
    assert part.lstrip().startswith('<div id="autotest-run"') and "<h1" not in part
    assert 'hx-trigger="every 2s"' in part
    assert "253.3 V" in part and "2949 ms" in part and "Pass" in part and "Pending" in part
    assert "50.20 Hz" in part  # the threshold of 81>.S1, not yet tested
    AutoTestRun.objects.filter(pk=run.pk).update(status=AutoTestStatus.FAILED)
    part = client.get(urls(italy.inverter, run).run, headers=HTMX_RUN).content.decode()
    assert "hx-trigger" not in part and "Failed" in part
    assert 'id="autotest-start" class="card h-100" hx-swap-oob="true"' in part  # Start is back
    assert urls(italy.inverter, run).pdf in part


@pytest.mark.django_db
def test_a_refused_test_says_why(tenants, client_for, italy):
    run = stored_run(
        italy.inverter,
        tenants.sunfix_om,
        status=AutoTestStatus.REFUSED,
        steps=0,
        reason="power_off",
    )
    html = client_for(tenants.sunfix_om).get(urls(italy.inverter, run).run).content.decode()
    assert "The inverter refused to start the test: The inverter is powered off." in html


@pytest.mark.django_db
def test_the_pdf_reports_every_step(tenants, client_for, italy):
    run = stored_run(italy.inverter, tenants.sunfix_om)
    response = client_for(tenants.sunfix_admin).get(urls(italy.inverter, run).pdf)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response["Content-Disposition"].startswith('inline; filename="autotest-itat000001-')
    content = response.content
    for text in ("AutoTest report", "CEI 0-21", "ITAT000001", "Cascina Lombarda", "59.S1"):
        assert pdf_has(content, text), text
    for text in ("253.0 V", "253.3 V", "2949 ms", "47.50 Hz", "Pass", "om@sunfix.example"):
        assert pdf_has(content, text), text
    assert pdf_has(content, "Every protection tripped within its limits: the test passed.")
    running = stored_run(italy.inverter, tenants.sunfix_om, status=AutoTestStatus.RUNNING)
    assert (
        client_for(tenants.sunfix_admin).get(urls(italy.inverter, running).pdf).status_code == 404
    )


@pytest.mark.django_db
def test_a_run_of_another_inverter_is_not_found(tenants, client_for, italy):
    other = italian_inverter(tenants, site=italy.site)
    run = stored_run(other, tenants.sunfix_om)
    url = reverse("inverters:autotest_run", args=[italy.inverter.pk, run.pk])
    assert client_for(tenants.helios_admin).get(url).status_code == 404


@pytest.mark.django_db
def test_store_keeps_what_a_read_of_the_registers_says(tenants, italy):
    run = stored_run(italy.inverter, tenants.sunfix_om, status=AutoTestStatus.RUNNING, steps=0)
    values = {
        "autotest_state": "running",
        "autotest_step": 2,
        "autotest_run_count": 7,
        "autotest1_state": "done",
        "autotest1_threshold": 253.0,
        "autotest1_trip_value": 253.4,
        "autotest1_time_limit": 3000,
        "autotest1_trip_time": 2931,
        "autotest1_result": "pass",
        "autotest2_state": "testing",
        "autotest2_trip_value": 248.1,
        "autotest2_trip_time": 0,
        "autotest2_result": "none",
    }
    assert autotest.store(run, values) == "running"
    run.refresh_from_db()
    first, second, third = list(run.steps.all())[:3]
    assert (run.current_step, run.device_run) == (2, 7)
    assert (first.trip_value, first.trip_time_ms, first.result) == (253.4, 2931, "pass")
    assert (second.state, second.trip_value, second.trip_time_ms) == ("testing", 248.1, None)
    assert (third.state, third.trip_value) == ("pending", None)


# --- the real thing: worker, broker, simulated gateway and inverter ----------------------------

GATEWAY_SN = "GWAT000001"
INVERTER_SN = "GWAT000001I1"
ABSENT_SN = "GWAT000001I2"


@pytest.fixture(scope="module")
def services(django_db_setup, tmp_path_factory):
    base = tmp_path_factory.mktemp("autotest")
    broker = Mosquitto(base / "broker").start()
    queue = f"autotest-{uuid.uuid4().hex[:8]}"
    log_path = base / "worker.log"
    worker = start_worker(queue, broker.url, log_path)
    try:
        yield SimpleNamespace(broker=broker, queue=queue, log=log_path)
    finally:
        stop_process(worker)
        broker.stop()


@pytest.fixture
def rig(tenants, services, settings):
    """An Italian site of SunFix with a simulated gateway and inverter (address 1), and a
    second inverter on the same bus that is not there (address 2). The simulated clock runs
    three times faster than the wall clock, so a sequence takes a quarter of a minute."""
    settings.MQTT_URL = services.broker.url
    site = italian_site(tenants, name="Cascina Lombarda")
    gateway = GatewayFactory(serial_number=GATEWAY_SN, site=site, upload_interval_s=3600)
    inverter = InverterFactory(
        serial_number=INVERTER_SN,
        model=TH,
        gateway=gateway,
        status="running",
        firmware_versions={"DSP": "01.23", "LCD": "02.00"},
    )
    absent = InverterFactory(
        serial_number=ABSENT_SN, model=TH, gateway=gateway, modbus_address=2, status="running"
    )
    spec = GatewaySpec(
        serial=GATEWAY_SN,
        inverters=(InverterSpec(INVERTER_SN, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(45.46, 9.19, "Europe/Rome"),
    )
    clock = SimClock(start=time.time() + 1, speed=3)
    with (
        tasks_to(services.queue),
        running_ingest(services.broker.broker, client_id=f"at-ingest-{uuid.uuid4().hex[:6]}"),
        FleetThread([spec], mqtt_url=services.broker.url, clock=clock) as sim,
    ):
        wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 15, "gateway online")
        try:
            yield SimpleNamespace(
                t=tenants, site=site, gateway=gateway, inverter=inverter, absent=absent, sim=sim
            )
        finally:
            close_reply_waiter()


def device(rig) -> SimulatedInverter:
    return rig.sim.fleet.inverter(INVERTER_SN)


def settled(run: AutoTestRun, timeout: float = 90) -> AutoTestRun:
    """The run once it ended; `seen` holds (status, step, states of the steps) polled meanwhile."""
    seen: list[tuple] = []

    def done() -> bool:
        run.refresh_from_db()
        seen.append((run.status, run.current_step, [s.state for s in run.steps.all()]))
        return not run.in_progress

    wait_for(done, timeout, f"AutoTest {run.pk} to end")
    run.seen = seen
    return run


def start(rig, client, inverter=None) -> AutoTestRun:
    inverter = inverter or rig.inverter
    response = client.post(urls(inverter).start, {"agree": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    return AutoTestRun.objects.filter(inverter=inverter).latest("pk")


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_an_autotest_runs_on_the_simulated_inverter_step_by_step(rig, client_for):
    client = client_for(rig.t.sunfix_om)
    run = settled(start(rig, client))

    assert run.status == AutoTestStatus.PASSED, (run.message, run.reason)
    assert run.finished_at is not None and run.device_run == 1
    steps = list(run.steps.all())
    assert [s.code for s in steps] == CODES
    for step, threshold, limit in zip(steps, THRESHOLDS, LIMITS_MS, strict=True):
        assert (step.state, step.result, step.threshold, step.time_limit_ms) == (
            "done",
            "pass",
            threshold,
            limit,
        )
        assert abs(step.trip_value - threshold) <= (2.3 if step.unit == "V" else 0.02) + 1e-6
        assert limit * 0.95 <= step.trip_time_ms <= limit * 1.03 + 20
    # The page followed it: running, with some steps done and others still pending.
    assert any(
        status == AutoTestStatus.RUNNING and "done" in states and "pending" in states
        for status, _step, states in run.seen
    ), run.seen
    # The inverter ran the test itself, and the portal talked to it through the engine only,
    # as the O&M engineer: the start write, then reads of the AutoTest registers.
    assert device(rig).physics.selftest.state(device(rig).clock.now()) == "passed"
    write = run.start_operation
    assert (write.state, write.user, write.kind) == (
        OperationState.SUCCEEDED,
        rig.t.sunfix_om,
        OperationKind.WRITE,
    )
    reads = RemoteOperation.objects.filter(inverter=rig.inverter, kind=OperationKind.READ)
    assert reads.count() >= 3 and set(reads.values_list("user", flat=True)) == {rig.t.sunfix_om.pk}
    assert reads.filter(state=OperationState.SUCCEEDED).count() >= 3
    assert AuditEvent.objects.filter(
        action=AuditAction.AUTOTEST_STARTED, actor=rig.t.sunfix_om
    ).exists()

    html = client.get(urls(rig.inverter, run).run).content.decode()
    assert "Passed" in html and "hx-trigger" not in html and 'name="agree"' in html
    response = client.get(urls(rig.inverter, run).pdf)
    assert response.status_code == 200
    assert pdf_has(response.content, INVERTER_SN) and pdf_has(response.content, "DSP: 01.23")
    first = steps[0]
    assert pdf_has(response.content, f"{first.trip_value:.1f} V")
    assert pdf_has(response.content, f"{first.trip_time_ms} ms")
    # The inverter reconnects afterwards (10 s on its clock).
    wait_for(
        lambda: device(rig).values()["run_status"] in ("on_grid", "standby"), 15, "reconnected"
    )


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_protection_that_trips_too_late_fails_the_test(rig, client_for):
    def slow_second_step() -> None:
        device(rig).physics.selftest_slow = frozenset({2})

    rig.sim.call(slow_second_step)
    run = settled(start(rig, client_for(rig.t.sunfix_admin)))
    assert run.status == AutoTestStatus.FAILED
    results = [s.result for s in run.steps.all()]
    assert results == ["pass", "fail", "pass", "pass", "pass", "pass", "pass", "pass"]
    html = client_for(rig.t.sunfix_admin).get(urls(rig.inverter, run).run).content.decode()
    assert "Failed" in html and "Fail" in html


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_powered_off_inverter_refuses_the_test(rig, client_for):
    rig.sim.call(lambda: device(rig).write("power_switch", "off"))
    run = settled(start(rig, client_for(rig.t.sunfix_om)))
    assert (run.status, run.reason) == (AutoTestStatus.REFUSED, "power_off")
    assert {s.state for s in run.steps.all()} == {"pending"}
    html = client_for(rig.t.sunfix_om).get(urls(rig.inverter, run).run).content.decode()
    assert "The inverter refused to start the test: The inverter is powered off." in html


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_an_inverter_that_does_not_answer_ends_the_run_as_expired(rig, client_for):
    run = settled(start(rig, client_for(rig.t.sunfix_om), inverter=rig.absent))
    assert run.status == AutoTestStatus.EXPIRED
    assert "No answer from the inverter at address 2" in run.message
    html = client_for(rig.t.sunfix_om).get(urls(rig.absent, run).run).content.decode()
    assert "Expired" in html and "No answer from the inverter at address 2" in html
    assert "hx-trigger" not in html


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_an_om_engineer_runs_autotest_in_the_browser(rig, page, shots):
    rig.t.sunfix_om.set_password(PASSWORD)
    rig.t.sunfix_om.save()
    sign_in(page, rig.t.sunfix_om.email)
    page.goto(urls(rig.inverter).tab)
    page.get_by_text("No AutoTest has been run on this inverter yet.").wait_for()
    page.get_by_role("button", name="Start").click()
    page.get_by_text("Confirm the test conditions to start.").wait_for()
    assert not AutoTestRun.objects.exists()
    page.get_by_label("I have checked the test conditions").check()
    page.get_by_role("button", name="Start").click()
    page.get_by_text("A test of this inverter is running.").wait_for()
    results = page.locator("#autotest-run")
    results.locator("#autotest-step-2").get_by_text("Pass").wait_for(timeout=30_000)
    page.screenshot(path=shots / "inverter-autotest-running.png")
    results.get_by_text("Passed").wait_for(timeout=60_000)
    page.get_by_label("I have checked the test conditions").wait_for()  # Start is back
    page.screenshot(path=shots / "inverter-autotest.png")
    assert AutoTestRun.objects.get().status == AutoTestStatus.PASSED
