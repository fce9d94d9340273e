"""Gateway → Settings (guide §6.3.2.2): every panel, its refusals, the operation state and its
end (done, failed, expired), values read from the gateway, and the permission matrix; then
the same pages against a real broker, Celery worker, ingest and simulated gateway, whose own
state and uploads show each change."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from gateways.models import GatewayStatus
from inverters.telemetry import Sample
from maintenance.dispatch import wait_until_finished
from maintenance.models import OperationKind, OperationState, RemoteOperation
from tests.browser import PASSWORD, sign_in
from tests.device_rig import gateway_status
from tests.factories import RemoteOperationFactory, SiteFactory
from tests.gateway_page_helpers import (  # noqa: F401
    HTMX_DIALOG,
    HTMX_PANEL,
    LIVE_INVERTER,
    gateway_fleet,
    live_gateway,
    settings_broker,
    settings_worker,
    simulated_config,
    url,
)
from tests.permission_matrix import Expect, assert_matrix
from tests.services import needs_mosquitto, wait_for

PANEL_KEYS = (
    "protocol",
    "forwarding",
    "serial_port",
    "tcp_forwarding",
    "upload_interval_s",
    "baud_rate",
    "reset",
)


def settings_page(client, gateway, panel: str, **headers):
    return client.get(f"{url('settings', gateway.pk)}?panel={panel}", headers=headers)


def reported(gateway, settings: dict, **fields) -> RemoteOperation:
    """A finished settings read whose answer carried `settings`."""
    return RemoteOperationFactory(
        gateway=gateway,
        device_serial=gateway.serial_number,
        kind=OperationKind.GATEWAY_READ,
        summary="Read gateway settings",
        after={"settings": settings},
        finished_at=timezone.now(),
        **fields,
    )


GATEWAY_SAYS = {
    "protocols": [{"protocol": "ECH10K-TH-EU", "address": 1}],
    "upload_interval_s": 300,
    "forwarding": "serial",
    "serial_port": {
        "port": 3,
        "baud_rate": 19200,
        "parity": "even",
        "stop_bits": 2,
        "protocol": "ModbusRTU",
    },
    "tcp_forwarding": {"enabled": True, "port": 5020, "protocol": "ModbusTCP"},
    "baud_rate": {"port_type": "RS232", "baud_rate": 38400},
}


# --- pages without devices -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("panel", PANEL_KEYS)
def test_every_panel_opens_and_says_when_the_gateway_has_not_reported(
    tenants, client_for, fleet, panel
):
    client = client_for(tenants.sunfix_om)
    response = settings_page(client, fleet.gateway, panel)
    assert response.status_code == 200
    html = response.content.decode()
    assert "has not reported its settings yet" in html
    assert "Read from gateway" in html
    partial = settings_page(client, fleet.gateway, panel, **HTMX_PANEL)
    assert partial.status_code == 200
    assert partial.content.decode().lstrip().startswith('<div id="gateway-settings-panel"')


@pytest.mark.django_db
def test_panels_show_what_the_gateway_reported_not_what_was_sent(tenants, client_for, fleet):
    fleet.gateway.settings = {**GATEWAY_SAYS, "upload_interval_s": 60}  # stored, not reported
    fleet.gateway.save()
    reported(fleet.gateway, GATEWAY_SAYS)
    # A change still on its way does not count as the gateway's value either.
    RemoteOperationFactory(
        gateway=fleet.gateway,
        kind=OperationKind.GATEWAY_CONFIG,
        state=OperationState.SENT,
        request={"changes": {"upload_interval_s": 900}, "restart": False},
        summary="Settings: upload_interval_s",
    )
    client = client_for(tenants.sunfix_om)
    form = settings_page(client, fleet.gateway, "upload_interval_s").context["form"]
    assert form.initial["upload_interval_s"] == 300
    form = settings_page(client, fleet.gateway, "serial_port").context["form"]
    assert form.initial["baud_rate"] == 19200 and form.initial["parity"] == "even"
    form = settings_page(client, fleet.gateway, "baud_rate").context["form"]
    assert form.initial == {"port_type": "RS232", "baud_rate": 38400}
    form = settings_page(client, fleet.gateway, "tcp_forwarding").context["form"]
    assert form.initial["enabled"] == "true" and form.initial["port"] == 5020
    formset = settings_page(client, fleet.gateway, "protocol").context["formset"]
    assert formset.initial == [{"protocol": "ECH10K-TH-EU", "address": 1}]
    html = settings_page(client, fleet.gateway, "upload_interval_s").content.decode()
    assert "As the gateway reported them" in html
    # The running change shows its state and polls; Submit waits for it.
    assert "Sent, waiting for the gateway" in html and 'hx-trigger="every 1s"' in html


def protocol_data(entries, add=False) -> dict:
    data = {
        "protocol-TOTAL_FORMS": str(len(entries)),
        "protocol-INITIAL_FORMS": str(len(entries)),
        "protocol-MIN_NUM_FORMS": "0",
        "protocol-MAX_NUM_FORMS": "32",
    }
    for i, (model, address) in enumerate(entries):
        data[f"protocol-{i}-protocol"] = model
        data[f"protocol-{i}-address"] = str(address)
    if add:
        data["add"] = "1"
    return data


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("panel", "data", "reason"),
    [
        (
            "protocol",
            protocol_data([("ECH10K-TH-EU", 1), ("ECH10K-TH-EU", 1)]),
            "Modbus address 1 is already used by entry 1.",
        ),
        ("protocol", protocol_data([("ECH10K-TH-EU", 248)]), "less than or equal to 247"),
        ("protocol", protocol_data([("NO-SUCH-MODEL", 2)]), "Select a valid choice"),
        ("protocol", protocol_data([]), "Add at least one protocol entry."),
        (
            "baud_rate",
            {"port_type": "RS485", "baud_rate": "1234", "restart": "yes"},
            "does not support 1234 baud",
        ),
        ("baud_rate", {"port_type": "USB", "baud_rate": "9600", "restart": "yes"}, "valid choice"),
        (
            "serial_port",
            {
                "port": "99",
                "baud_rate": "9600",
                "parity": "none",
                "stop_bits": "1",
                "protocol": "ModbusRTU",
                "restart": "no",
            },
            "less than or equal to 15",
        ),
        (
            "tcp_forwarding",
            {"enabled": "true", "port": "70000", "protocol": "ModbusTCP", "restart": "no"},
            "less than or equal to 65535",
        ),
        ("upload_interval_s", {"upload_interval_s": "7", "restart": "no"}, "valid choice"),
        ("forwarding", {"forwarding": "carrier-pigeon", "restart": "no"}, "valid choice"),
        ("forwarding", {"forwarding": "tcp", "restart": "maybe"}, "valid choice"),
    ],
)
def test_bad_input_is_refused_on_the_form_and_nothing_is_sent(
    tenants, client_for, fleet, panel, data, reason
):
    client = client_for(tenants.sunfix_om)
    response = client.post(url("settings_submit", fleet.gateway.pk, panel), data)
    assert response.status_code == 400
    assert reason in response.content.decode()
    partial = client.post(url("settings_submit", fleet.gateway.pk, panel), data, headers=HTMX_PANEL)
    assert partial.status_code == 200 and reason in partial.content.decode()
    assert not RemoteOperation.objects.exists()


@pytest.mark.django_db
def test_add_protocol_adds_an_empty_entry_without_sending(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).post(
        url("settings_submit", fleet.gateway.pk, "protocol"),
        protocol_data([("ECH10K-TH-EU", 1)], add=True),
        headers=HTMX_PANEL,
    )
    assert response.status_code == 200
    assert len(response.context["formset"].forms) == 2
    assert 'name="protocol-1-address"' in response.content.decode()
    assert not RemoteOperation.objects.exists()


@pytest.mark.django_db
def test_a_valid_submit_records_the_operation_with_the_restart_flag(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    response = client.post(
        url("settings_submit", fleet.gateway.pk, "baud_rate"),
        {"port_type": "RS485", "baud_rate": "19200", "restart": "no"},
        headers=HTMX_PANEL,
    )
    assert response.status_code == 200
    operation = RemoteOperation.objects.get()
    assert operation.kind == OperationKind.GATEWAY_CONFIG
    assert operation.command["params"] == {
        "baud_rate": {"port_type": "RS485", "baud_rate": 19200},
        "restart": False,
    }
    assert operation.user == tenants.sunfix_om
    html = response.content.decode()
    assert "Waiting to be sent" in html
    assert url("operation_state", fleet.gateway.pk, operation.pk) in html


@pytest.mark.django_db
def test_an_unanswered_operation_ends_as_expired_and_stops_polling(tenants, client_for, fleet):
    operation = RemoteOperationFactory(
        gateway=fleet.gateway,
        kind=OperationKind.GATEWAY_CONFIG,
        state=OperationState.QUEUED,
        request={"changes": {"upload_interval_s": 60}, "restart": False},
        summary="Settings: upload_interval_s",
        deadline=timezone.now() - dt.timedelta(seconds=1),
    )
    client = client_for(tenants.sunfix_om)
    state = client.get(url("operation_state", fleet.gateway.pk, operation.pk))
    html = state.content.decode()
    assert "Expired" in html and "No answer from the gateway before the deadline." in html
    assert "every 1s" not in html
    assert state["HX-Trigger"] == "gateway-settings-changed"
    panel = settings_page(client, fleet.gateway, "upload_interval_s").content.decode()
    assert "No answer from the gateway before the deadline." in panel
    assert "every 1s" not in panel
    # A finished failure shows the gateway's reason.
    RemoteOperation.objects.filter(pk=operation.pk).update(
        state=OperationState.FAILED, error="Gateway error: busy"
    )
    state = client.get(url("operation_state", fleet.gateway.pk, operation.pk))
    assert "Gateway error: busy" in state.content.decode()
    # Another gateway's operation is not found through this one.
    foreign = RemoteOperationFactory()
    assert client.get(url("operation_state", fleet.gateway.pk, foreign.pk)).status_code == 404


@pytest.mark.django_db
def test_intellisense_results_can_become_the_protocol_entries(tenants, client_for, fleet):
    RemoteOperationFactory(
        gateway=fleet.gateway,
        kind=OperationKind.SCAN,
        summary="Protocol scan of addresses 1–16",
        result={
            "devices": [
                {"address": 1, "model": "ECH10K-TH-EU", "serial": "INVPAGE001"},
                {"address": 5, "model": "ECH6K-SML-EU", "serial": "INVPAGE005"},
            ]
        },
    )
    client = client_for(tenants.sunfix_om)
    html = settings_page(client, fleet.gateway, "protocol").content.decode()
    assert "INVPAGE005" in html and "Use these as protocol entries" in html
    response = client.get(f"{url('settings', fleet.gateway.pk)}?panel=protocol&use_scan=1")
    assert response.context["formset"].initial == [
        {"protocol": "ECH10K-TH-EU", "address": 1},
        {"protocol": "ECH6K-SML-EU", "address": 5},
    ]
    refused = client.post(url("scan", fleet.gateway.pk), {"first": "20", "last": "3"})
    assert refused.status_code == 400
    assert "must not be below the first" in refused.content.decode()


@pytest.mark.django_db
def test_owners_have_no_settings_tab(tenants, client_for, fleet):
    client = client_for(tenants.owner)
    assert settings_page(client, fleet.gateway, "protocol").status_code == 403
    detail = client.get(url("detail", fleet.gateway.pk)).content.decode()
    assert url("settings", fleet.gateway.pk) not in detail


# --- permission matrix ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.matrix("gateways:settings")
def test_matrix_settings(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("settings", fleet.gateway.pk), Expect())


@pytest.mark.django_db
@pytest.mark.matrix("gateways:settings_submit")
def test_matrix_settings_submit(tenants, client_for, fleet):
    assert_matrix(
        tenants,
        client_for,
        url("settings_submit", fleet.gateway.pk, "forwarding"),
        Expect(admin=302, om=302),
        method="post",
        data={"forwarding": "tcp", "restart": "no"},
    )
    assert_matrix(
        tenants,
        client_for,
        url("settings_submit", fleet.gateway.pk, "nonsense"),
        Expect(admin=404, om=404),
        method="post",
    )


@pytest.mark.django_db
@pytest.mark.matrix("gateways:settings_read")
def test_matrix_settings_read(tenants, client_for, fleet):
    assert_matrix(
        tenants,
        client_for,
        url("settings_read", fleet.gateway.pk),
        Expect(admin=302, om=302),
        method="post",
    )


@pytest.mark.django_db
@pytest.mark.matrix("gateways:scan")
def test_matrix_scan(tenants, client_for, fleet):
    assert_matrix(
        tenants,
        client_for,
        url("scan", fleet.gateway.pk),
        Expect(admin=302, om=302),
        method="post",
        data={"first": "1", "last": "4"},
    )


@pytest.mark.django_db
@pytest.mark.matrix("gateways:reset")
def test_matrix_reset(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("reset", fleet.gateway.pk), Expect())
    assert_matrix(
        tenants,
        client_for,
        url("reset", fleet.gateway.pk),
        Expect(admin=302, om=302),
        method="post",
    )


@pytest.mark.django_db
@pytest.mark.matrix("gateways:operation_state")
def test_matrix_operation_state(tenants, client_for, fleet):
    operation = RemoteOperationFactory(gateway=fleet.gateway, kind=OperationKind.GATEWAY_RESET)
    assert_matrix(
        tenants, client_for, url("operation_state", fleet.gateway.pk, operation.pk), Expect()
    )


# --- with a simulated gateway --------------------------------------------------------------------


def newest_operation(kind: str) -> RemoteOperation:
    operation = RemoteOperation.objects.filter(kind=kind).order_by("-pk").first()
    assert operation is not None, f"no {kind} operation recorded"
    operation = wait_until_finished(operation, 30)
    assert operation.state == OperationState.SUCCEEDED, (operation.state, operation.error)
    return operation


def sample_times(live) -> list[dt.datetime]:
    return list(
        Sample.objects.filter(inverter_id=live.inverter.pk)
        .order_by("ts")
        .values_list("ts", flat=True)
    )


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_the_pages_change_the_simulated_gateway_and_show_what_it_reports(live, client_for):
    client = client_for(live.t.sunfix_om)
    gateway = live.gateway

    # Read from gateway: the simulator's own settings become the values shown.
    client.post(url("settings_read", gateway.pk), {"panel": "baud_rate"}, headers=HTMX_PANEL)
    newest_operation(OperationKind.GATEWAY_READ)
    page = settings_page(client, gateway, "baud_rate")
    assert page.context["form"].initial == simulated_config(live)["baud_rate"]
    assert "As the gateway reported them" in page.content.decode()

    # Baud rate, no restart.
    client.post(
        url("settings_submit", gateway.pk, "baud_rate"),
        {"port_type": "RS485", "baud_rate": "19200", "restart": "no"},
        headers=HTMX_PANEL,
    )
    operation = newest_operation(OperationKind.GATEWAY_CONFIG)
    assert simulated_config(live)["baud_rate"] == {"port_type": "RS485", "baud_rate": 19200}
    state = client.get(url("operation_state", gateway.pk, operation.pk))
    assert "The gateway applied the settings." in state.content.decode()
    assert settings_page(client, gateway, "baud_rate").context["form"].initial["baud_rate"] == 19200

    # Forwarding and the forwarding serial port.
    client.post(
        url("settings_submit", gateway.pk, "forwarding"), {"forwarding": "serial", "restart": "no"}
    )
    newest_operation(OperationKind.GATEWAY_CONFIG)
    client.post(
        url("settings_submit", gateway.pk, "serial_port"),
        {
            "port": "2",
            "baud_rate": "38400",
            "parity": "odd",
            "stop_bits": "2",
            "protocol": "ModbusASCII",
            "restart": "no",
        },
    )
    newest_operation(OperationKind.GATEWAY_CONFIG)
    client.post(
        url("settings_submit", gateway.pk, "tcp_forwarding"),
        {"enabled": "true", "port": "5020", "protocol": "ModbusTCP", "restart": "no"},
    )
    newest_operation(OperationKind.GATEWAY_CONFIG)
    config = simulated_config(live)
    assert config["forwarding"] == "serial"
    assert config["serial_port"] == {
        "port": 2,
        "baud_rate": 38400,
        "parity": "odd",
        "stop_bits": 2,
        "protocol": "ModbusASCII",
    }
    assert config["tcp_forwarding"] == {"enabled": True, "port": 5020, "protocol": "ModbusTCP"}

    # Upload interval with a safe restart: the gateway goes offline, comes back, and its
    # samples now arrive every minute of simulated time instead of every hour.
    before = len(sample_times(live))
    client.post(
        url("settings_submit", gateway.pk, "upload_interval_s"),
        {"upload_interval_s": "60", "restart": "yes"},
    )
    operation = newest_operation(OperationKind.GATEWAY_CONFIG)
    assert operation.result["restart_s"] > 0
    assert simulated_config(live)["upload_interval_s"] == 60
    gateway.refresh_from_db()
    assert gateway.upload_interval_s == 60
    wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 20, "back online")
    wait_for(lambda: len(sample_times(live)) >= before + 4, 30, "samples at the new rate")
    times = sample_times(live)[before:]
    gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
    # Timestamps are the simulated moments of reading (the clock runs 60× real time).
    assert all(abs(gap - 60) < 1 for gap in gaps), gaps

    # Intellisense finds the inverter on the bus.
    client.post(url("scan", gateway.pk), {"first": "1", "last": "3"}, headers=HTMX_PANEL)
    scan = newest_operation(OperationKind.SCAN)
    assert [d["address"] for d in scan.result["devices"]] == [1]
    html = settings_page(client, gateway, "protocol").content.decode()
    assert LIVE_INVERTER in html

    # Protocol entries: submitted with a restart, applied by the gateway.
    client.post(
        url("settings_submit", gateway.pk, "protocol"), protocol_data([("ECH10K-TH-EU", 1)])
    )
    newest_operation(OperationKind.GATEWAY_CONFIG)
    assert simulated_config(live)["protocols"] == [{"protocol": "ECH10K-TH-EU", "address": 1}]
    wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 20, "back online")

    # Reset: the gateway restarts.
    restarts = live.sim.call(
        lambda: live.sim.fleet.gateway(gateway.serial_number).stats["restarts"]
    )
    assert client.get(url("reset", gateway.pk), headers=HTMX_DIALOG).status_code == 200
    assert client.post(url("reset", gateway.pk)).status_code == 302
    newest_operation(OperationKind.GATEWAY_RESET)
    wait_for(
        lambda: (
            live.sim.call(lambda: live.sim.fleet.gateway(gateway.serial_number).stats["restarts"])
            > restarts
        ),
        10,
        "a restart",
    )
    html = settings_page(client, gateway, "reset").content.decode()
    assert "The gateway is restarting" in html


# --- in the browser ---------------------------------------------------------------------------


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_an_om_engineer_changes_the_upload_interval_in_the_browser(live, page, shots):
    """Gateway list → the gateway → Settings → Upload interval: the panel follows the operation
    until the gateway has applied it, then shows the value the gateway reports."""
    SiteFactory(company=live.t.sunfix, name="Villa Luna", address="Via Po 2, Torino")
    live.t.sunfix_om.set_password(PASSWORD)
    live.t.sunfix_om.save()
    sign_in(page, live.t.sunfix_om.email)
    page.goto("/gateway/")
    page.wait_for_selector("text=Gateway status")
    page.screenshot(path=shots / "gateway-list.png")
    page.get_by_role("button", name=f"Operations for {live.gateway.serial_number}").click()
    page.get_by_role("link", name="Distribute").click()
    page.wait_for_selector("#action-dialog >> text=Company belonging")
    page.screenshot(path=shots / "gateway-distribute.png")
    page.keyboard.press("Escape")

    page.goto(f"/gateway/{live.gateway.pk}/")
    page.wait_for_selector("text=Device list")
    page.screenshot(path=shots / "gateway-overview.png")
    page.click("#tab-panel-settings")
    page.wait_for_selector("text=Add Protocol")
    page.get_by_role("button", name="Read from gateway").click()
    page.wait_for_selector("text=As the gateway reported them", timeout=20_000)
    page.screenshot(path=shots / "gateway-settings-protocol.png")
    page.get_by_role("button", name="Add Protocol").click()
    page.wait_for_selector("select[name=protocol-1-protocol]")
    assert not RemoteOperation.objects.filter(kind=OperationKind.GATEWAY_CONFIG).exists()

    page.get_by_role("link", name="Upload interval").click()
    page.select_option("select[name=upload_interval_s]", "60")
    page.check("input[name=restart][value=yes]")
    page.get_by_role("button", name="Submit settings").click()
    page.wait_for_selector("text=is restarting", timeout=20_000)
    assert simulated_config(live)["upload_interval_s"] == 60
    # The panel reloads with the value the gateway reported.
    page.wait_for_function(
        "document.querySelector('select[name=upload_interval_s]').value === '60'"
    )
    page.screenshot(path=shots / "gateway-settings-upload-interval.png")
    before = len(sample_times(live))
    wait_for(lambda: len(sample_times(live)) >= before + 3, 30, "samples at the new rate")

    page.get_by_role("link", name="Baud rate").click()
    page.wait_for_selector("input[name=baud_rate]")
    page.fill("input[name=baud_rate]", "1234")
    page.get_by_role("button", name="Submit settings").click()
    page.wait_for_selector("text=does not support 1234 baud")
    page.screenshot(path=shots / "gateway-settings-baud-rate.png")
