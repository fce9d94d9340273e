"""The inverter tabs that operate the device, besides Mode: Settings (guide §6.4.2.6, the
Parameters panel of Maintenance for this inverter), Intelligent Load (§6.4.2.9, Table 6-4),
Upgrade (§6.4.2.10, the firmware history) and Operations (this inverter's operations log)."""

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from maintenance.models import OperationKind, OperationState, RemoteOperation
from maintenance.tasks import sweep_operations
from tests.factories import RemoteOperationFactory
from tests.inverter_control_helpers import (
    HTMX_CURRENT,
    HTMX_DIALOG,
    HTMX_TAB,
    POLLING,
    finish,
    make_fleet,
    simulated_inverter,
    url,
)
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.parameters_helpers import HTMX_TABLE
from tests.permission_matrix import Expect, assert_matrix
from tests.services import needs_mosquitto

pytestmark = pytest.mark.django_db

PANEL = "maintenance/parameters/_panel.html"
LOAD_ORDER = [
    "Intelligent load off",
    "Manual control",
    "Battery energy control",
    "Time control",
    "Residual optical power control",
]


@pytest.fixture
def fleet(tenants):
    return make_fleet(tenants)


def operation_on(inverter, **kwargs):
    kwargs.setdefault("device_serial", inverter.serial_number)
    return RemoteOperationFactory(gateway=inverter.gateway, inverter=inverter, **kwargs)


# --- Permissions ------------------------------------------------------------------------------


@pytest.mark.matrix("inverters:settings")
def test_permission_matrix_of_the_settings_tab(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("settings", fleet.inverter), Expect())
    assert_matrix(tenants, client_for, url("settings", fleet.inverter), Expect(), headers=HTMX_TAB)
    assert_matrix(
        tenants,
        client_for,
        url("settings", fleet.inverter, q="BatFromGrid"),
        Expect(),
        headers=HTMX_TABLE,
    )


@pytest.mark.matrix("inverters:load", "inverters:load_current")
def test_permission_matrix_of_the_intelligent_load_tab(tenants, client_for, fleet):
    everyone = Expect(owner=200)
    assert_matrix(tenants, client_for, url("load", fleet.inverter), everyone)
    assert_matrix(
        tenants, client_for, url("load_current", fleet.inverter), everyone, headers=HTMX_CURRENT
    )


@pytest.mark.matrix("inverters:load_read", "inverters:load_set")
def test_permission_matrix_of_reading_and_setting_the_intelligent_load(tenants, client_for, fleet):
    sent = Expect(admin=302, om=302)
    assert_matrix(tenants, client_for, url("load_read", fleet.inverter), sent, method="post")
    assert_matrix(tenants, client_for, url("load_set", fleet.inverter, "manual"), Expect())
    assert_matrix(
        tenants,
        client_for,
        url("load_set", fleet.inverter, "off"),
        sent,
        method="post",
        data={
            "settings-smart_load_rated_power": "2",
            "settings-smart_load_min_on_time": "10",
            "settings-smart_load_offgrid_enable": "disabled",
        },
    )
    assert RemoteOperation.objects.filter(kind=OperationKind.SMART_LOAD).count() == 2


@pytest.mark.matrix("inverters:upgrade")
def test_permission_matrix_of_the_upgrade_tab(tenants, client_for, fleet):
    everyone = Expect(owner=200)
    assert_matrix(tenants, client_for, url("upgrade", fleet.inverter), everyone)
    assert_matrix(tenants, client_for, url("upgrade", fleet.inverter), everyone, headers=HTMX_TAB)


@pytest.mark.matrix("inverters:operations")
def test_permission_matrix_of_the_operations_tab(tenants, client_for, fleet):
    assert_matrix(tenants, client_for, url("operations", fleet.inverter), Expect())
    assert_matrix(tenants, client_for, url("operations", fleet.inverter, export="csv"), Expect())
    assert_matrix(
        tenants, client_for, url("operations", fleet.inverter), Expect(), headers=HTMX_TAB
    )


def test_owners_see_only_the_read_only_tabs(tenants, client_for, fleet):
    html = client_for(tenants.owner).get(url("mode", fleet.inverter)).content.decode()
    for name in ("mode", "load", "upgrade"):
        assert f'href="{url(name, fleet.inverter)}"' in html
    for name in ("settings", "operations"):
        assert f'href="{url(name, fleet.inverter)}"' not in html
    staff = client_for(tenants.sunfix_om).get(url("mode", fleet.inverter)).content.decode()
    for name in ("settings", "mode", "load", "upgrade", "operations"):
        assert f'href="{url(name, fleet.inverter)}"' in staff


# --- Settings -----------------------------------------------------------------------------------


def test_settings_mounts_the_parameters_panel_for_this_inverter_only(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(url("settings", fleet.inverter))
    assert PANEL in {template.name for template in response.templates}
    html = response.content.decode()
    assert 'id="parameter-table"' in html and 'id="parameter-modal"' in html
    assert 'id="inverter-list"' not in html and "INVCTL002" not in html
    # Another inverter cannot be picked through the query string.
    other = client_for(tenants.sunfix_om).get(
        url("settings", fleet.inverter, inverter=fleet.other.pk)
    )
    assert other.context["inverter"] == fleet.inverter
    # Searches load this tab; Read and Write come back to it.
    assert f'hx-get="{url("settings", fleet.inverter)}"' in html
    assert f"return_to=%2Finverter%2F{fleet.inverter.pk}%2Fsettings%2F" in html


def test_settings_quick_and_group_search_show_address_value_and_description(
    tenants, client_for, fleet
):
    client = client_for(tenants.sunfix_om)
    response = client.get(url("settings", fleet.inverter, q="0x0700"))
    point, _cell = response.context["rows"][0]
    assert point.display_address == "[0X0700/1792]"
    html = response.content.decode()
    assert "[0X0700/1792]" in html and "Param description" in html
    group = client.get(url("settings", fleet.inverter, mode="group", group="TOU"))
    names = [point.name for point, _cell in group.context["rows"]]
    assert "BatFromGridPower" in names and "Read group" in group.content.decode()


def test_settings_write_only_for_holding_registers_with_the_range_shown(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    html = client.get(url("settings", fleet.inverter, q="BatFromGridPower")).content.decode()
    write = reverse(
        "maintenance:parameter_write", args=[fleet.inverter.pk, "tou_bat_from_grid_power"]
    )
    assert write in html
    dialog = client.get(write, headers={"HX-Request": "true", "HX-Target": "parameter-dialog"})
    assert "Value Range: [0,10] Offset value: 0.1" in dialog.content.decode()
    # Input registers have Read only.
    html = client.get(url("settings", fleet.inverter, q="0x0700")).content.decode()
    assert "/write/" not in html and ">Read<" in html
    # Writing an input register is refused: there is no Write for it.
    grid_power = reverse("maintenance:parameter_write", args=[fleet.inverter.pk, "grid_power_kw"])
    assert client.post(grid_power, {"value": "1"}).status_code == 404
    # Out of range: refused with the reason, nothing recorded.
    refused = client.post(
        write, {"value": "11"}, headers={"HX-Request": "true", "HX-Target": "parameter-dialog"}
    )
    assert "invalid-feedback" in refused.content.decode()
    assert not RemoteOperation.objects.exists()


@needs_mosquitto
def test_a_holding_register_written_from_settings_is_read_back_from_the_simulator(
    tenants, client_for, mosquitto, settings
):
    with simulated_inverter(tenants, mosquitto, settings, "SIMSETT01") as rig:
        client = client_for(tenants.sunfix_om)
        page = url("settings", rig.inverter, q="ExportLimitPower")
        write = reverse("maintenance:parameter_write", args=[rig.inverter.pk, "export_limit_power"])
        client.post(
            f"{write}?q=ExportLimitPower&return_to={url('settings', rig.inverter)}",
            {"value": "6.5"},
            headers={"HX-Request": "true", "HX-Target": "parameter-dialog"},
        )
        written = finish(RemoteOperation.objects.get(kind=OperationKind.WRITE))
        assert rig.settings()["export_limit_power"] == pytest.approx(6.5)
        assert written.after["values"]["export_limit_power"]["value"] == pytest.approx(6.5)
        read = reverse("maintenance:parameter_read", args=[rig.inverter.pk])
        client.post(read, {"key": "export_limit_power"}, headers={"HX-Request": "true"})
        finish(RemoteOperation.objects.get(kind=OperationKind.READ))
        response = client.get(page)
        point, cell = response.context["rows"][0]
        assert point.key == "export_limit_power" and cell.value == pytest.approx(6.5)
        assert "6.5 kW" in response.content.decode()


# --- Intelligent Load -------------------------------------------------------------------------


def test_the_five_load_modes_with_the_one_in_use_read_from_the_device(tenants, client_for, fleet):
    operation_on(
        fleet.inverter,
        result={"values": {"smart_load_mode": {"value": "time_control"}}},
    )
    response = client_for(tenants.sunfix_om).get(url("load", fleet.inverter))
    assert [option["label"] for option in response.context["options"]] == LOAD_ORDER
    assert [o["key"] for o in response.context["options"] if o["current"]] == ["time_control"]
    html = response.content.decode()
    assert html.count(">Setting<") == 5 and "Not used" in html
    owner = client_for(tenants.owner).get(url("load", fleet.inverter)).content.decode()
    assert "Time control" in owner and ">Setting<" not in owner


def test_a_load_setting_dialog_has_the_modes_and_the_common_settings(tenants, client_for, fleet):
    html = (
        client_for(tenants.sunfix_om)
        .get(url("load_set", fleet.inverter, "battery_energy"), headers=HTMX_DIALOG)
        .content.decode()
    )
    for name in ("SmartLoadSOC_On", "SmartLoadSOC_Off", "SmartLoadRatedPower"):
        assert name in html
    assert "Value Range: [10,100] Offset value: 1" in html


def test_a_load_setting_the_inverter_cannot_take_is_refused_with_the_reason(
    tenants, client_for, fleet
):
    response = client_for(tenants.sunfix_om).post(
        url("load_set", fleet.inverter, "battery_energy"),
        {
            "settings-smart_load_soc_on": "30",
            "settings-smart_load_soc_off": "60",
            "settings-smart_load_rated_power": "2",
            "settings-smart_load_min_on_time": "10",
            "settings-smart_load_offgrid_enable": "disabled",
        },
        headers=HTMX_DIALOG,
    )
    assert "switch-on SOC must be above" in response.content.decode()
    assert not RemoteOperation.objects.exists()


@needs_mosquitto
def test_a_load_mode_from_the_dialog_reaches_the_simulated_inverter(
    tenants, client_for, mosquitto, settings
):
    with simulated_inverter(tenants, mosquitto, settings, "SIMLOAD01") as rig:
        client = client_for(tenants.sunfix_om)
        answer = client.post(
            url("load_set", rig.inverter, "time_control"),
            {
                "settings-smart_load_start_time": "11:00",
                "settings-smart_load_stop_time": "15:30",
                "settings-smart_load_weekdays": ["sat", "sun"],
                "settings-smart_load_rated_power": "3",
                "settings-smart_load_min_on_time": "20",
                "settings-smart_load_offgrid_enable": "disabled",
            },
            headers=HTMX_DIALOG,
        )
        operation = RemoteOperation.objects.get(kind=OperationKind.SMART_LOAD)
        assert f'id="operation-state-{operation.pk}"' in answer.content.decode()
        finish(operation)
        device = rig.settings()
        assert device["smart_load_mode"] == "time_control"
        assert (device["smart_load_start_time"], device["smart_load_stop_time"]) == (
            "11:00",
            "15:30",
        )
        assert sorted(device["smart_load_weekdays"]) == ["sat", "sun"]
        assert device["smart_load_rated_power"] == pytest.approx(3)
        state = client.get(reverse("maintenance:operation_state", args=[operation.pk]))
        assert "Succeeded" in state.content.decode() and POLLING not in state.content.decode()
        response = client.get(url("load", rig.inverter))
        assert response.context["current"].key == "time_control"


def test_an_operation_the_device_never_answers_ends_expired_with_a_message(
    tenants, client_for, fleet, settings
):
    """No gateway answers here: past its deadline the sweep expires the operation, and the
    dialog's state block and the tab say so instead of waiting for ever."""
    client = client_for(tenants.sunfix_om)
    client.post(
        url("load_set", fleet.inverter, "off"),
        {
            "settings-smart_load_rated_power": "2",
            "settings-smart_load_min_on_time": "10",
            "settings-smart_load_offgrid_enable": "disabled",
        },
        headers=HTMX_DIALOG,
    )
    operation = RemoteOperation.objects.get()
    state = reverse("maintenance:operation_state", args=[operation.pk])
    assert POLLING in client.get(state).content.decode()
    RemoteOperation.objects.filter(pk=operation.pk).update(
        deadline=timezone.now() - dt.timedelta(seconds=1)
    )
    sweep_operations()
    operation.refresh_from_db()
    assert operation.state == OperationState.EXPIRED and operation.error
    html = client.get(state).content.decode()
    assert "Expired" in html and operation.error in html and POLLING not in html
    block = client.get(url("load_current", fleet.inverter), headers=HTMX_CURRENT)
    text = block.content.decode()
    assert "Expired" in text and POLLING not in text


# --- Upgrade ------------------------------------------------------------------------------------


def firmware_read(inverter, when, **versions):
    return operation_on(
        inverter,
        result={"values": {f"{k}_version": {"value": v} for k, v in versions.items()}},
        finished_at=when,
    )


def test_upgrade_shows_the_firmware_now_and_the_version_history(tenants, client_for, fleet):
    fleet.inverter.firmware_versions = {"DSP": "01.20", "LCD": "02.00"}
    fleet.inverter.save()
    day = timezone.now() - dt.timedelta(days=30)
    firmware_read(fleet.inverter, day, dsp="01.10", lcd="02.00")
    firmware_read(fleet.inverter, day + dt.timedelta(days=1), dsp="01.10", lcd="02.00")
    firmware_read(fleet.inverter, day + dt.timedelta(days=10), dsp="01.20", lcd="02.00")
    operation_on(fleet.other, result={"values": {"dsp_version": {"value": "09.99"}}})
    response = client_for(tenants.owner).get(url("upgrade", fleet.inverter))
    history = [(c.type, c.previous, c.version) for c in response.context["history"]]
    # Newest read first; within one read, in the register map's order.
    assert history == [("DSP", "01.10", "01.20"), ("DSP", "", "01.10"), ("LCD", "", "02.00")]
    now = response.context["firmware_now"]
    assert [(kind, version) for kind, version, *_rest in now] == [
        ("DSP", "01.20"),
        ("LCD", "02.00"),
    ]
    html = response.content.decode()
    assert "01.10 → " in html and "GWCTL0001" in html and "09.99" not in html
    # Owners view the history; only staff get the button that creates an upgrade task.
    assert "/upgrade/new/" not in html
    filtered = client_for(tenants.owner).get(url("upgrade", fleet.inverter, type="LCD"))
    assert [c.type for c in filtered.context["history"]] == ["LCD"]
    bad = client_for(tenants.owner).get(
        url("upgrade", fleet.inverter, start="2025-02-01", end="2025-01-01")
    )
    assert bad.status_code == 200 and "before the start date" in bad.content.decode()


def test_upgrade_without_any_read_says_how_the_history_starts(tenants, client_for, fleet):
    html = client_for(tenants.sunfix_om).get(url("upgrade", fleet.inverter)).content.decode()
    assert "No firmware version has been read from this inverter yet" in html


# --- Operations ---------------------------------------------------------------------------------


def test_operations_lists_only_this_inverters_operations(tenants, client_for, fleet):
    mine = operation_on(
        fleet.inverter,
        kind=OperationKind.MODE,
        summary="Mode: TOU Mode",
        user=tenants.sunfix_om,
        before={"values": {"work_mode": {"name": "WorkMode", "value": "self_consumption"}}},
        after={"values": {"work_mode": {"name": "WorkMode", "value": "tou"}}},
    )
    operation_on(fleet.other, summary="Read elsewhere")
    response = client_for(tenants.sunfix_om).get(url("operations", fleet.inverter))
    assert [row.record for row in response.context["table"].paginated_rows] == [mine]
    html = response.content.decode()
    assert "Mode: TOU Mode" in html and "om@sunfix.example" in html
    assert "WorkMode: self_consumption" in html and "WorkMode: tou" in html
    assert "Read elsewhere" not in html
    columns = response.context["table"].visible_columns
    assert "site" not in columns and "device_serial" not in columns and "user_email" in columns
    assert "site" not in response.context["filter_form"].fields


def test_operations_filters_and_download(tenants, client_for, fleet):
    operation_on(fleet.inverter, kind=OperationKind.READ, summary="Read A")
    operation_on(fleet.inverter, kind=OperationKind.SMART_LOAD, summary="Intelligent load: Off")
    client = client_for(tenants.sunfix_om)
    response = client.get(url("operations", fleet.inverter, kind="smart_load"))
    assert [r.record.summary for r in response.context["table"].paginated_rows] == [
        "Intelligent load: Off"
    ]
    download = client.get(url("operations", fleet.inverter, export="csv"))
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 3 and "Site" not in rows[0]
    assert download["Content-Disposition"].count("operations-invctl001")


def test_operations_poll_while_one_is_pending(tenants, client_for, fleet):
    operation_on(fleet.inverter, state=OperationState.SENT)
    html = client_for(tenants.sunfix_om).get(url("operations", fleet.inverter)).content.decode()
    assert POLLING in html
