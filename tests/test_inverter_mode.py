"""Inverter → Mode (guide §6.4.2.8, Table 6-3): the six modes with the one the inverter runs
marked from a read of the device, a Setting dialog per mode with the register map's fields and
ranges, and TOU with its slot schedule; everything a dialog sends reaches the simulated
inverter."""

from pathlib import Path

import pytest

from maintenance.models import OperationKind, OperationState, RemoteOperation
from maintenance.remote import read_registers
from tests.browser import CHROMIUM, sign_in
from tests.factories import InverterLatestFactory, RemoteOperationFactory, TelemetryLayoutFactory
from tests.inverter_control_helpers import (
    EVERY_DAY,
    EVERY_MONTH,
    HTMX_CURRENT,
    HTMX_DIALOG,
    HTMX_TAB,
    POLLING,
    finish,
    make_fleet,
    simulated_inverter,
    slot_data,
    tou_settings,
    url,
)
from tests.page_helpers import default_language_and_time_zone_afterwards  # noqa: F401
from tests.permission_matrix import Expect, assert_matrix
from tests.services import needs_mosquitto, wait_for

pytestmark = pytest.mark.django_db

GUIDE_ORDER = [
    "PV Mode",
    "Self-Consumption",
    "Full Feed-In",
    "Emergency Charging",
    "Forced Off-Grid",
    "TOU Mode",
]


@pytest.fixture
def fleet(tenants):
    return make_fleet(tenants)


def read_of(inverter, values, **kwargs):
    """A finished read of the inverter that returned `values` ({key: value})."""
    return RemoteOperationFactory(
        gateway=inverter.gateway,
        inverter=inverter,
        device_serial=inverter.serial_number,
        result={"values": {key: {"value": value} for key, value in values.items()}},
        **kwargs,
    )


# --- Permissions ------------------------------------------------------------------------------


@pytest.mark.matrix("inverters:mode", "inverters:mode_current")
def test_permission_matrix_of_the_mode_tab(tenants, client_for, fleet):
    # Every role sees the mode; the tab and its current-mode block are read-only for owners.
    everyone = Expect(owner=200)
    assert_matrix(tenants, client_for, url("mode", fleet.inverter), everyone)
    assert_matrix(tenants, client_for, url("mode", fleet.inverter), everyone, headers=HTMX_TAB)
    assert_matrix(
        tenants, client_for, url("mode_current", fleet.inverter), everyone, headers=HTMX_CURRENT
    )


@pytest.mark.matrix("inverters:mode_read", "inverters:mode_set")
def test_permission_matrix_of_reading_and_setting_the_mode(tenants, client_for, fleet):
    assert_matrix(
        tenants,
        client_for,
        url("mode_read", fleet.inverter),
        Expect(admin=302, om=302),
        method="post",
    )
    assert_matrix(tenants, client_for, url("mode_set", fleet.inverter, "tou"), Expect())
    assert_matrix(
        tenants,
        client_for,
        url("mode_set", fleet.inverter, "pv_mode"),
        Expect(admin=302, om=302),
        method="post",
    )
    assert RemoteOperation.objects.filter(kind=OperationKind.MODE).count() == 2


def test_owners_see_the_mode_read_only(tenants, client_for, fleet):
    read_of(fleet.inverter, {"work_mode": "tou"})
    html = client_for(tenants.owner).get(url("mode", fleet.inverter)).content.decode()
    assert "TOU Mode" in html and "In use" in html
    assert url("mode_set", fleet.inverter, "tou") not in html
    assert url("mode_read", fleet.inverter) not in html
    assert ">Setting<" not in html and 'hx-trigger="load"' not in html
    assert client_for(tenants.owner).post(url("mode_read", fleet.inverter)).status_code == 403
    assert not RemoteOperation.objects.filter(kind=OperationKind.MODE).exists()


# --- The modes and the current one ---------------------------------------------------------------


def test_the_six_modes_in_the_guides_order_with_the_current_one_read_from_the_device(
    tenants, client_for, fleet
):
    read = read_of(fleet.inverter, {"work_mode": "emergency_charging"})
    response = client_for(tenants.sunfix_om).get(url("mode", fleet.inverter))
    assert [option["label"] for option in response.context["options"]] == GUIDE_ORDER
    marked = [option["key"] for option in response.context["options"] if option["current"]]
    assert marked == ["emergency_charging"]
    assert response.context["cell"].source == read
    html = response.content.decode()
    assert "Read from the inverter at" in html
    assert html.count(">Setting<") == 6


def test_opening_the_tab_reads_the_mode_from_the_device_once(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    html = client.get(url("mode", fleet.inverter)).content.decode()
    read_url = url("mode_read", fleet.inverter)
    assert f'hx-post="{read_url}" hx-trigger="load"' in html
    answer = client.post(read_url, headers=HTMX_CURRENT)
    operation = RemoteOperation.objects.get()
    assert operation.kind == OperationKind.READ and operation.state == OperationState.QUEUED
    assert "work_mode" in operation.request["keys"] and "tou1_mode" in operation.request["keys"]
    assert "emergency_charge_power" in operation.request["keys"]
    block = answer.content.decode()
    assert block.lstrip().startswith('<div id="control-current"') and POLLING in block
    assert "Reading from the inverter" in block and "Queued" in block
    # While it runs, neither the tab nor another Read queues a second one.
    assert 'hx-trigger="load"' not in client.get(url("mode", fleet.inverter)).content.decode()
    client.post(read_url, headers=HTMX_CURRENT)
    assert RemoteOperation.objects.count() == 1


def test_while_the_read_runs_the_latest_reported_mode_shows_with_its_time(
    tenants, client_for, fleet
):
    layout = TelemetryLayoutFactory(keys=["work_mode_active"])
    InverterLatestFactory(inverter=fleet.inverter, layout_id=layout.pk, vals=[2])
    RemoteOperationFactory(
        gateway=fleet.gateway,
        inverter=fleet.inverter,
        state=OperationState.SENT,
        request={"keys": ["work_mode"]},
    )
    response = client_for(tenants.sunfix_om).get(
        url("mode_current", fleet.inverter), headers=HTMX_CURRENT
    )
    assert response.context["reported"].key == "tou"
    html = response.content.decode()
    assert "Reported in the inverter's upload at" in html and POLLING in html
    assert "Sent" in html


def test_a_read_the_inverter_never_answered_ends_expired_with_a_message(tenants, client_for, fleet):
    read_of(fleet.inverter, {"work_mode": "self_consumption"})
    RemoteOperationFactory(
        gateway=fleet.gateway,
        inverter=fleet.inverter,
        state=OperationState.EXPIRED,
        error="The gateway did not answer before the deadline.",
        request={"keys": ["work_mode"]},
    )
    html = (
        client_for(tenants.sunfix_om)
        .get(url("mode_current", fleet.inverter), headers=HTMX_CURRENT)
        .content.decode()
    )
    assert "Expired" in html and "did not answer in time" in html
    assert POLLING not in html  # no spinner that spins forever
    assert "Self-Consumption" in html  # the last mode known stays marked


def test_an_inverter_without_gateway_cannot_be_read_or_set(tenants, client_for, fleet):
    fleet.inverter.gateway = None
    fleet.inverter.save()
    client = client_for(tenants.sunfix_om)
    html = client.get(url("mode", fleet.inverter)).content.decode()
    assert "not connected to a gateway" in html and 'hx-trigger="load"' not in html
    answer = client.post(url("mode_set", fleet.inverter, "pv_mode"), headers=HTMX_DIALOG)
    assert "This inverter is not connected to a gateway." in answer.content.decode()
    assert not RemoteOperation.objects.exists()


# --- Setting dialogs -----------------------------------------------------------------------


def test_a_setting_dialog_has_the_modes_fields_with_their_ranges(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).get(
        url("mode_set", fleet.inverter, "emergency_charging"), headers=HTMX_DIALOG
    )
    html = response.content.decode()
    assert "EmergChgPower" in html and "EmergChgTargetSOC" in html
    assert "Value Range: [0,10] Offset value: 0.1" in html
    assert "Value Range: [50,100] Offset value: 1" in html
    tou = client_for(tenants.sunfix_om).get(
        url("mode_set", fleet.inverter, "tou"), headers=HTMX_DIALOG
    )
    text = tou.content.decode()
    assert "BatFromGridPower" in text and "Value Range: [0,10] Offset value: 0.1" in text
    assert "FeedbackGridPower" in text and "Value Range: [0,12] Offset value: 0.1" in text
    assert 'name="slot-5-mode"' in text and 'name="slot-0-weekdays"' in text


def test_an_unknown_mode_is_not_found(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    assert client.get(url("mode_set", fleet.inverter, "turbo")).status_code == 404
    assert client.post(url("mode_set", fleet.inverter, "turbo")).status_code == 404
    assert not RemoteOperation.objects.exists()


def test_an_out_of_range_value_is_refused_on_the_form_and_nothing_is_sent(
    tenants, client_for, fleet
):
    response = client_for(tenants.sunfix_om).post(
        url("mode_set", fleet.inverter, "emergency_charging"),
        {
            "settings-emergency_charge_power": "12",
            "settings-emergency_charge_target_soc": "100",
        },
        headers=HTMX_DIALOG,
    )
    assert response.status_code == 200
    assert response.context["form"].errors["emergency_charge_power"]
    assert "invalid-feedback" in response.content.decode()
    assert not RemoteOperation.objects.exists()


def test_a_mode_without_settings_is_a_confirmation_whose_answer_follows_the_operation(
    tenants, client_for, fleet
):
    client = client_for(tenants.sunfix_om)
    dialog = client.get(url("mode_set", fleet.inverter, "pv_mode"), headers=HTMX_DIALOG)
    assert "has no settings of its own" in dialog.content.decode()
    answer = client.post(url("mode_set", fleet.inverter, "pv_mode"), headers=HTMX_DIALOG)
    operation = RemoteOperation.objects.get()
    assert operation.kind == OperationKind.MODE and operation.request == {
        "values": {"work_mode": "pv_mode"}
    }
    html = answer.content.decode()
    assert f'id="operation-state-{operation.pk}"' in html and POLLING in html
    # The page's current-mode block polls while the change runs.
    block = client.get(url("mode_current", fleet.inverter), headers=HTMX_CURRENT)
    assert POLLING in block.content.decode() and "Mode: PV Mode" in block.content.decode()


def test_without_javascript_a_setting_returns_to_the_tab(tenants, client_for, fleet):
    response = client_for(tenants.sunfix_om).post(url("mode_set", fleet.inverter, "full_feed_in"))
    assert response.status_code == 302 and response["Location"] == url("mode", fleet.inverter)
    assert RemoteOperation.objects.get().request["values"]["work_mode"] == "full_feed_in"


# --- TOU schedule ----------------------------------------------------------------------------


def tou_post(client, inverter, slots, **settings):
    return client.post(
        url("mode_set", inverter, "tou"),
        {**tou_settings(**settings), **slot_data(slots)},
        headers=HTMX_DIALOG,
    )


def charge_slot(start, end, days=EVERY_DAY, months=EVERY_MONTH, power="2"):
    return {
        "mode": "charge",
        "start": start,
        "end": end,
        "charge_power": power,
        "discharge_power": "0",
        "weekdays": list(days),
        "months": list(months),
    }


def test_overlapping_slots_are_refused_with_the_reason(tenants, client_for, fleet):
    response = tou_post(
        client_for(tenants.sunfix_om),
        fleet.inverter,
        [charge_slot("06:00", "12:00"), charge_slot("11:00", "14:00")],
    )
    html = response.content.decode()
    assert "Slots 1 and 2 overlap" in html and "11:00–12:00" in html
    assert not RemoteOperation.objects.exists()


def test_slots_on_different_days_or_seasons_may_share_hours(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    tou_post(
        client,
        fleet.inverter,
        [
            charge_slot("06:00", "12:00", days=["mon", "tue"]),
            charge_slot("06:00", "12:00", days=["sat", "sun"]),
            charge_slot("13:00", "15:00", months=["jun", "jul", "aug"]),
            charge_slot("13:00", "15:00", months=["dec", "jan", "feb"]),
        ],
    )
    operation = RemoteOperation.objects.get()
    values = operation.request["values"]
    assert values["work_mode"] == "tou"
    assert values["tou2_weekdays"] == ["sat", "sun"]
    assert sorted(values["tou4_months"]) == ["dec", "feb", "jan"]
    assert values["tou5_mode"] == "empty" and values["tou1_start"] == "06:00"


def test_a_slot_that_ends_before_it_starts_is_refused(tenants, client_for, fleet):
    response = tou_post(
        client_for(tenants.sunfix_om), fleet.inverter, [charge_slot("22:00", "06:00")]
    )
    assert "The slot ends before it starts" in response.content.decode()
    assert not RemoteOperation.objects.exists()


def test_an_active_slot_needs_a_day_and_a_charge_power(tenants, client_for, fleet):
    client = client_for(tenants.sunfix_om)
    response = tou_post(client, fleet.inverter, [charge_slot("01:00", "05:00", days=[])])
    assert "Choose at least one day." in response.content.decode()
    response = tou_post(client, fleet.inverter, [charge_slot("01:00", "05:00", power="0")])
    assert "enter a charge power above 0" in response.content.decode()
    assert not RemoteOperation.objects.exists()


def test_the_schedule_shows_what_the_device_holds(tenants, client_for, fleet):
    read_of(
        fleet.inverter,
        {
            "work_mode": "tou",
            "tou1_mode": "charge",
            "tou1_start": "01:00",
            "tou1_end": "05:00",
            "tou1_charge_power": 2.5,
            "tou1_weekdays": ["mon", "wed"],
            "tou1_months": ["jan", "feb"],
            "tou2_mode": "empty",
        },
    )
    response = client_for(tenants.owner).get(url("mode", fleet.inverter))
    first = response.context["schedule"][0]
    assert (first.mode, first.start, first.end, first.weekdays) == (
        "charge",
        "01:00",
        "05:00",
        ["mon", "wed"],
    )
    html = response.content.decode()
    assert "TOU schedule" in html and "As read from the inverter" in html
    assert "01:00–05:00" in html and "2.5 kW" in html
    # The dialog starts from the schedule the device holds.
    dialog = client_for(tenants.sunfix_om).get(
        url("mode_set", fleet.inverter, "tou"), headers=HTMX_DIALOG
    )
    assert dialog.context["formset"].forms[0].initial["start"] == "01:00"


# --- On a simulated inverter ---------------------------------------------------------------


@needs_mosquitto
def test_tou_with_a_schedule_from_the_dialog_reaches_the_simulated_inverter(
    tenants, client_for, mosquitto, settings
):
    with simulated_inverter(tenants, mosquitto, settings, "SIMMODE01") as rig:
        client = client_for(tenants.sunfix_om)
        tou_post(
            client,
            rig.inverter,
            [
                charge_slot("01:00", "05:00", power="3.5"),
                {
                    "mode": "discharge",
                    "start": "18:00",
                    "end": "22:00",
                    "charge_power": "0",
                    "discharge_power": "2",
                    "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                    "months": EVERY_MONTH,
                },
            ],
            tou_grid_charge_enable="enabled",
            tou_bat_from_grid_power="4",
        )
        operation = finish(RemoteOperation.objects.get(kind=OperationKind.MODE))
        device = rig.settings()
        assert device["work_mode"] == "tou"
        assert (device["tou1_mode"], device["tou1_start"], device["tou1_end"]) == (
            "charge",
            "01:00",
            "05:00",
        )
        assert device["tou1_charge_power"] == pytest.approx(3.5)
        assert device["tou2_mode"] == "discharge"
        assert sorted(device["tou2_weekdays"]) == sorted(["mon", "tue", "wed", "thu", "fri"])
        assert device["tou_grid_charge_enable"] == "enabled"
        assert device["tou3_mode"] == "empty"

        # The tab marks TOU from the values read back, and shows the schedule.
        response = client.get(url("mode", rig.inverter))
        assert response.context["current"].key == "tou"
        assert response.context["cell"].source == operation
        assert [slot.mode for slot in response.context["schedule"][:3]] == [
            "charge",
            "discharge",
            "empty",
        ]

        # A fresh read from the tab reads the same from the device.
        client.post(url("mode_read", rig.inverter), headers=HTMX_CURRENT)
        read = finish(RemoteOperation.objects.get(kind=OperationKind.READ))
        assert read.result["values"]["work_mode"]["value"] == "tou"
        assert read.result["values"]["tou2_discharge_power"]["value"] == pytest.approx(2)

        # Back to PV mode.
        client.post(url("mode_set", rig.inverter, "pv_mode"), headers=HTMX_DIALOG)
        finish(RemoteOperation.objects.filter(kind=OperationKind.MODE).latest("id"))
        assert rig.settings()["work_mode"] == "pv_mode"
        html = client.get(url("mode_current", rig.inverter), headers=HTMX_CURRENT).content
        assert POLLING not in html.decode()
        assert client.get(url("mode", rig.inverter)).context["current"].key == "pv_mode"


# --- In a browser ---------------------------------------------------------------------------


def run_next(kind, done: set) -> RemoteOperation:
    """Wait for the page's next operation of `kind`, then run it against the simulator."""
    operation = wait_for(
        lambda: RemoteOperation.objects.filter(kind=kind).exclude(pk__in=done).first(),
        15,
        f"a {kind} operation",
    )
    done.add(operation.pk)
    return finish(operation)


@needs_mosquitto
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_om_engineer_operates_an_inverter_from_its_tabs(page, tenants, mosquitto, settings, shots):
    """Mode (read from the device, then TOU with a schedule), Intelligent Load, Settings,
    Upgrade and Operations on a simulated inverter; with MATRICLOUD_SCREENSHOTS=1 the tabs'
    screenshots go to docs/screenshots/."""
    from playwright.sync_api import expect

    with simulated_inverter(tenants, mosquitto, settings, "SIMBROWSE1") as rig:
        done: set[int] = set()
        inverter = rig.inverter
        # A firmware read gives the Upgrade tab its first history rows.
        finish(read_registers(inverter, group="Firmware", acting_user=tenants.sunfix_om))
        done.update(RemoteOperation.objects.values_list("pk", flat=True))
        sign_in(page, tenants.sunfix_om.email)

        # Mode: opening the tab reads the mode from the device.
        page.goto(url("mode", inverter))
        run_next(OperationKind.READ, done)
        current = page.locator("#control-current")
        expect(current).to_contain_text("Read from the inverter at", timeout=10_000)
        expect(current.locator("li[aria-current=true]")).to_contain_text("Self-Consumption")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=shots / "inverter-mode.png")

        # TOU with a charging slot at night and a discharging one in the evening.
        current.locator("li", has_text="TOU Mode").get_by_role("link", name="Setting").click()
        dialog = page.locator("#control-dialog")
        dialog.locator("select[name=slot-0-mode]").select_option("charge")
        dialog.locator("input[name=slot-0-start]").fill("01:00")
        dialog.locator("input[name=slot-0-end]").fill("05:00")
        dialog.locator("input[name=slot-0-charge_power]").fill("3")
        dialog.locator("select[name=slot-1-mode]").select_option("discharge")
        dialog.locator("input[name=slot-1-start]").fill("18:00")
        dialog.locator("input[name=slot-1-end]").fill("22:00")
        dialog.locator("input[name=slot-1-discharge_power]").fill("2")
        page.screenshot(path=shots / "inverter-mode-tou-setting.png")
        dialog.get_by_role("button", name="Confirm").click()
        expect(dialog).to_contain_text("Queued")
        run_next(OperationKind.MODE, done)
        expect(dialog).to_contain_text("Succeeded", timeout=10_000)
        assert rig.settings()["work_mode"] == "tou"
        dialog.get_by_role("button", name="Close").last.click()
        expect(current.locator("li[aria-current=true]")).to_contain_text("TOU Mode")
        expect(current).to_contain_text("01:00–05:00")
        page.screenshot(path=shots / "inverter-mode-tou.png")

        # Intelligent Load.
        page.goto(url("load", inverter))
        run_next(OperationKind.READ, done)
        expect(page.locator("#control-current")).to_contain_text("Read from the inverter at")
        page.screenshot(path=shots / "inverter-load.png")
        current = page.locator("#control-current")
        current.locator("li", has_text="Battery energy control").get_by_role(
            "link", name="Setting"
        ).click()
        expect(page.locator("#control-dialog")).to_contain_text("SmartLoadSOC_On")
        page.screenshot(path=shots / "inverter-load-setting.png")
        page.locator("#control-dialog").get_by_role("button", name="Cancel").click()

        # Settings: the TOU group, read from the device.
        page.goto(url("settings", inverter, mode="group", group="TOU"))
        page.get_by_role("button", name="Read group").click()
        run_next(OperationKind.READ, done)
        expect(page.locator("#value-tou1_start")).to_contain_text("01:00", timeout=10_000)
        expect(page.locator("#parameter-table")).not_to_contain_text("Queued", timeout=10_000)
        page.screenshot(path=shots / "inverter-settings.png")

        # Settings: write a holding register; the value shown is the inverter's read-back.
        page.goto(url("settings", inverter, q="ExportLimitPower"))
        page.locator("tr", has_text="ExportLimitPower").get_by_role("link", name="Write").click()
        page.wait_for_selector("#parameter-dialog >> text=Value Range")
        page.fill("#parameter-dialog input[type=number]", "6.5")
        page.click("#parameter-dialog button[type=submit]")
        run_next(OperationKind.WRITE, done)
        expect(page.locator("#value-export_limit_power")).to_contain_text("6.5 kW", timeout=10_000)
        assert rig.settings()["export_limit_power"] == 6.5

        page.goto(url("upgrade", inverter))
        expect(page.locator("table")).to_contain_text("DSP")
        expect(page.locator(".list-group")).to_contain_text("DSP")
        page.screenshot(path=shots / "inverter-upgrade.png")

        page.goto(url("operations", inverter))
        expect(page.locator("#operation-table")).to_contain_text("Mode: TOU Mode")
        page.screenshot(path=shots / "inverter-operations.png")
