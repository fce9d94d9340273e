"""Firmware in a browser, with real devices behind the pages: simulated gateways on a private
Mosquitto, the delivery service and the rollout engine ticking as beat would tick it.

An O&M engineer may download firmware but not publish it; the platform administrator publishes
a gateway release; the O&M engineer rolls it out in two waves to three gateways with
preconditions, the first device's transfer is corrupted, the task pauses itself and says why,
and "Retry failed" takes it to the end. Screenshots: the catalogue, the task list, the task's
page and an inverter's Upgrade tab.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from accounts.models import Role
from devices import ota
from gateways.models import Gateway, GatewayStatus
from maintenance.dispatch import close_reply_waiter
from simulator.clock import SimClock
from simulator.fleet import FleetThread
from simulator.gateway import GatewayOptions
from simulator.ota import OtaFault
from simulator.sources import GatewaySpec
from tests.browser import CHROMIUM, sign_in
from tests.factories import GatewayFactory, InverterFactory, SiteFactory, UserFactory
from tests.ota_helpers import running_delivery
from tests.rollout_helpers import make_release, make_task
from tests.services import Mosquitto
from upgrades.models import DeviceKind, FirmwareType, TargetState, TaskState, UpgradeTask
from upgrades.rollout import advance

SERIALS = ["GWDEMO0001", "GWDEMO0002", "GWDEMO0003"]
MODEL = "CPS WiFi Kit"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


class EngineTicks:
    """upgrades.tasks.advance_upgrades as beat runs it, every half second, in a thread."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.every):
                try:
                    advance()
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
        finally:
            connection.close()

    def __enter__(self) -> EngineTicks:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def broker(tmp_path):
    mosquitto = Mosquitto(tmp_path / "broker").start()
    yield mosquitto
    mosquitto.stop()


@pytest.mark.django_db(transaction=True)
def test_firmware_from_catalogue_to_a_staged_rollout(
    page, tenants, shots, broker, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MQTT_URL = broker.url
    settings.FIRMWARE_CHUNK_BYTES = 4096
    close_reply_waiter()
    UserFactory(
        company=tenants.platform,
        role=Role.ADMIN,
        email="admin@matricloud.example",
        username="Platform Admin",
        is_superuser=True,
    )
    site = SiteFactory(company=tenants.sunfix, name="Haus Sonnenhang", time_zone="Europe/Berlin")
    gateways = [
        GatewayFactory(
            serial_number=sn,
            site=site,
            company=tenants.sunfix,
            model=MODEL,
            status=GatewayStatus.ONLINE,
            firmware_version="10.00",
        )
        for sn in SERIALS
    ]
    older = make_release(version="10.05", size=48 * 1024, seed="older")
    inverter = InverterFactory(
        gateway=gateways[0],
        site=site,
        company=tenants.sunfix,
        model="ECH10K-TH-EU",
        serial_number="ECH10T24100007",
        firmware_versions={"DSP": "01.22", "LCD": "02.00"},
    )
    dsp = make_release(
        kind=DeviceKind.INVERTER,
        firmware_type=FirmwareType.DSP,
        model="ECH10K-TH-EU",
        version="01.22",
        size=32 * 1024,
    )
    past = make_task(tenants.sunfix, dsp, [inverter], state=TaskState.COMPLETED)
    past.targets.update(state=TargetState.SUCCEEDED, from_version="01.20", reported_version="01.22")

    # --- O&M: the catalogue, download yes, upload no -----------------------------------------
    sign_in(page, "om@sunfix.example")
    page.goto(reverse("upgrades:index"))
    page.wait_for_selector("h1")
    assert page.locator("table >> text=10.05").count() == 1
    assert page.locator("a:has-text('Upload')").count() == 0
    refused = page.goto(reverse("upgrades:release_upload"))
    assert refused.status == 403
    page.goto(reverse("upgrades:releases"))
    with page.expect_download() as download:
        page.locator("tr:has-text('10.05') a:has-text('Download')").click()
    assert Path(download.value.path()).read_bytes() == older.file.open("rb").read()
    _log_out(page)

    # --- Platform administrator publishes 10.10 ------------------------------------------------
    sign_in(page, "admin@matricloud.example")
    page.goto(reverse("upgrades:releases"))
    page.click("a:has-text('Upload')")
    form = page.locator("form[action$='/releases/upload/']")
    form.locator("#id_file").wait_for()
    image = tmp_path / "cps-wifi-kit-10.10.bin"
    image.write_bytes(ota.build_image(MODEL, "gateway", "10.10", 64 * 1024))
    form.locator("#id_file").set_input_files(str(image))
    form.locator(f"input[name=gateway_models][value='{MODEL}']").check()
    form.locator("#id_version").fill("10.10")
    form.locator("#id_description").fill("Faster reconnect after a router restart")
    form.locator("button:has-text('Upload')").click()
    page.wait_for_selector("table >> text=Faster reconnect after a router restart")
    row = page.locator("tr:has-text('10.10')")
    assert "NEW" in row.inner_text()
    page.screenshot(path=str(shots / "upgrade-catalogue.png"), full_page=True)
    _log_out(page)

    # --- O&M: a staged task with preconditions; one injected failure pauses it ---------------
    specs = [GatewaySpec(serial=sn, inverters=(), firmware="10.00") for sn in SERIALS]
    options = GatewayOptions(restart_scale=0.02, ota_chunk_timeout_s=2.0)
    with (
        running_delivery(broker.broker),
        FleetThread(specs, mqtt_url=broker.url, clock=SimClock(speed=0), options=options) as sim,
        EngineTicks() as engine,
    ):
        sim.arm_ota_fault(SERIALS[0], OtaFault("corrupt_chunk"))
        sign_in(page, "om@sunfix.example")
        page.goto(reverse("upgrades:tasks") + "?kind=gateway")
        page.click("a:has-text('Add upgrade')")
        page.wait_for_selector("#task-add-form")
        page.select_option("#id_model", MODEL)
        page.wait_for_selector("#id_release >> option:has-text('10.10')", state="attached")
        page.select_option(
            "#id_release",
            label=page.locator("#id_release option:has-text('10.10')").inner_text().strip(),
        )
        page.fill("#id_waves", "1, 100")
        page.fill("#id_error_threshold_pct", "0")
        assert page.is_checked("#id_require_online")
        assert page.is_checked("#id_require_no_urgent_alarm")
        page.click("button[name=picker][value=select_all]")
        page.wait_for_selector("text=Selected devices: 3")
        page.evaluate("window.scrollTo(0, 0)")  # fixed header and menu stay at the top
        page.screenshot(path=str(shots / "upgrade-task-add.png"), full_page=True)
        page.click("button[name=confirm]")
        page.wait_for_url(re.compile(r"/upgrade/tasks/\d+/"))
        task = UpgradeTask.objects.exclude(pk=past.pk).get()
        assert task.waves == [1, 100] and task.require_online

        # The detail page refreshes itself: the first wave's device fails, the task pauses.
        page.wait_for_selector("text=SHA-256 mismatch", timeout=30_000)
        page.wait_for_selector("text=Paused", timeout=30_000)
        page.wait_for_selector("text=above the 0 % threshold")
        page.screenshot(path=str(shots / "upgrade-task-paused.png"), full_page=True)
        assert list(
            task.targets.values_list("state", flat=True).order_by("gateway__serial_number")
        ) == [
            TargetState.FAILED,
            TargetState.WAITING,
            TargetState.WAITING,
        ]

        page.click("button:has-text('Retry failed')")
        page.wait_for_selector("text=Completed", timeout=60_000)
        assert not engine.errors, engine.errors
        firmware = sim.call(lambda: {sn: sim.fleet.gateway(sn).firmware for sn in SERIALS})
    assert firmware == dict.fromkeys(SERIALS, "10.10")
    assert set(Gateway.objects.values_list("firmware_version", flat=True)) == {"10.10"}
    assert set(task.targets.values_list("state", flat=True)) == {TargetState.SUCCEEDED}
    assert "3" in page.locator("main").inner_text()
    page.screenshot(path=str(shots / "upgrade-task-details.png"), full_page=True)

    page.goto(reverse("upgrades:tasks") + "?kind=gateway")
    page.wait_for_selector("table >> text=Completed")
    page.screenshot(path=str(shots / "upgrade-task-list.png"), full_page=True)

    # --- The inverter's Upgrade tab: its history and the firmware-type dialog ---------------
    page.goto(reverse("inverters:upgrade", args=[inverter.pk]))
    page.wait_for_selector("text=01.22")
    page.screenshot(path=str(shots / "upgrade-inverter-tab.png"), full_page=True)
    page.click("a.btn:has-text('Upgrade')")
    dialog = page.locator("#action-dialog")
    dialog.locator("text=ECH10T24100007 (ECH10K-TH-EU) runs DSP 01.22").wait_for()
    tabs = dialog.locator("[aria-label='Firmware type'] a").all_inner_texts()
    # Only the boards the model's register map can install (no Trip Board, EXHMI, Senergy…).
    assert tabs == ["DSP", "Slave DSP", "LCD", "ARC"]
    page.screenshot(path=str(shots / "upgrade-inverter-dialog.png"))


def _log_out(page) -> None:
    """A fresh browser session for the next user."""
    page.context.clear_cookies()
