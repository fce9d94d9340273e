"""Site → Commissioning (guide §6.2.7): North-American sites only; an O&M engineer creates a
report of chosen gateways and inverters, a worker reads their key settings live through the
remote-operations engine and builds the PDF, the list shows its progress; Update, Delete and
Send Email; the PDF is served only to who may manage the site.

The first part checks pages, forms and permissions; the second runs everything for real: a
private Mosquitto, a `celery worker` subprocess on the test database, ingest in a thread, the
simulator's gateway and inverter, and an SMTP server (aiosmtpd) that the worker mails to.
"""

from __future__ import annotations

import base64
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm
from playwright.sync_api import expect

from accounts.models import AuditEvent
from fleet.models import CommissioningReport, ReportStatus
from gateways.models import GatewayStatus
from maintenance.dispatch import close_reply_waiter
from maintenance.models import OperationKind, RemoteOperation
from simulator.clock import SimClock
from simulator.environment import Site as SimSite
from simulator.fleet import FleetThread
from simulator.sources import GatewaySpec, InverterSpec
from tests.browser import PASSWORD, sign_in
from tests.device_rig import Mailbox, gateway_status, start_worker, stop_process, tasks_to
from tests.factories import (
    AlarmFactory,
    CommissioningReportFactory,
    GatewayFactory,
    InverterFactory,
    SiteFactory,
)
from tests.ingest_helpers import TH, running_ingest
from tests.permission_matrix import Expect, assert_matrix
from tests.services import Mosquitto, free_port, needs_mosquitto, wait_for

HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "commissioning-dialog"}
HTMX_LIST = {"HX-Request": "true", "HX-Target": "commissioning-reports"}


def tab_url(site) -> str:
    return reverse("sites:commissioning", args=[site.pk])


def create_url(site) -> str:
    return reverse("sites:commissioning_create", args=[site.pk])


def report_url(name: str, report) -> str:
    return reverse(f"sites:commissioning_{name}", args=[report.site_id, report.pk])


def pdf_text(content: bytes) -> bytes:
    """The page contents of a reportlab PDF, inflated (ASCII85 + Flate streams), with the
    metadata: enough to find the texts it shows without a PDF library."""
    assert content.startswith(b"%PDF-")
    text = content
    for match in re.finditer(
        rb"/ASCII85Decode /FlateDecode \] /Length \d+\s*>>\s*stream\r?\n(.*?)endstream",
        content,
        re.S,
    ):  # noqa: E501
        raw = match.group(1).strip().removesuffix(b"~>")
        text += zlib.decompress(base64.a85decode(raw))
    return text


def pdf_has(content: bytes, words: str) -> bool:
    escaped = words.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return escaped.encode("cp1252") in pdf_text(content)


# --- pages, forms and permissions ------------------------------------------------------------


@pytest.fixture
def na(tenants):
    """A SunFix site in Chicago, granted to the SunFix owner, with a gateway and two
    inverters, and a gateway without inverters; and a Nordlicht site in Toronto."""
    site = SiteFactory(
        company=tenants.sunfix,
        name="Lakeview Farm",
        country="US",
        time_zone="America/Chicago",
        address="1 Lake St, Chicago",
        latitude="41.880000",
        longitude="-87.630000",
    )
    assign_perm("pv_sites.view_site", tenants.owner, site)
    gateway = GatewayFactory(serial_number="GWLAKE0001", site=site, status=GatewayStatus.ONLINE)
    spare = GatewayFactory(serial_number="GWLAKE0002", site=site)
    first = InverterFactory(serial_number="INVLAKE001", gateway=gateway, status="running")
    second = InverterFactory(
        serial_number="INVLAKE002", gateway=gateway, modbus_address=2, status="offline"
    )
    foreign = SiteFactory(company=tenants.nordlicht, country="CA", time_zone="America/Toronto")
    return SimpleNamespace(
        site=site,
        gateway=gateway,
        spare=spare,
        inverters=[first, second],
        foreign_inverter=InverterFactory(gateway=GatewayFactory(site=foreign)),
    )


def finished_report(site, **fields) -> CommissioningReport:
    name = default_storage.save(f"commissioning/{site.pk}/test.pdf", ContentFile(b"%PDF-1.4 x"))
    return CommissioningReportFactory(site=site, pdf=name, **fields)


def valid_data(na, **overrides) -> dict:
    return {
        "name": "Commission Report",
        "email": "",
        "devices": [f"i{na.inverters[0].pk}", f"i{na.inverters[1].pk}", f"g{na.spare.pk}"],
        **overrides,
    }


@pytest.mark.django_db
@pytest.mark.matrix("sites:commissioning")
def test_permission_matrix_of_the_tab(tenants, client_for, na):
    assert_matrix(tenants, client_for, tab_url(na.site), Expect())
    assert_matrix(tenants, client_for, tab_url(na.site), Expect(), headers=HTMX_LIST)


@pytest.mark.django_db
@pytest.mark.matrix("sites:commissioning_create")
def test_permission_matrix_of_create(tenants, client_for, na):
    assert_matrix(tenants, client_for, create_url(na.site), Expect(), headers=HTMX_DIALOG)
    assert_matrix(
        tenants,
        client_for,
        create_url(na.site),
        Expect(admin=302, om=302),
        method="post",
        data=valid_data(na),
    )
    creators = CommissioningReport.objects.values_list("created_by__email", flat=True)
    assert sorted(creators) == ["admin@helios.example", "om@helios.example"]


@pytest.mark.django_db
@pytest.mark.matrix("sites:commissioning_update")
def test_permission_matrix_of_update(tenants, client_for, na):
    report = finished_report(na.site)
    assert_matrix(tenants, client_for, report_url("update", report), Expect())
    assert_matrix(
        tenants,
        client_for,
        lambda actor: report_url("update", finished_report(na.site)),
        Expect(admin=302, om=302),
        method="post",
    )
    assert CommissioningReport.objects.filter(status=ReportStatus.QUEUED).count() == 2


@pytest.mark.django_db
@pytest.mark.matrix("sites:commissioning_delete")
def test_permission_matrix_of_delete(tenants, client_for, na):
    report = finished_report(na.site)
    assert_matrix(tenants, client_for, report_url("delete", report), Expect())
    assert_matrix(
        tenants,
        client_for,
        lambda actor: report_url("delete", finished_report(na.site, name=f"For {actor}")),
        Expect(admin=302, om=302),
        method="post",
    )
    left = set(CommissioningReport.objects.values_list("name", flat=True))
    assert "For admin" not in left and "For om" not in left and "For owner" in left


@pytest.mark.django_db
@pytest.mark.matrix("sites:commissioning_send")
def test_permission_matrix_of_send(tenants, client_for, na):
    report = finished_report(na.site, email="ops@lakeview.example")
    assert_matrix(tenants, client_for, report_url("send", report), Expect(), headers=HTMX_DIALOG)
    assert_matrix(
        tenants,
        client_for,
        report_url("send", report),
        Expect(admin=302, om=302),
        method="post",
        data={"email": "site@lakeview.example"},
    )


@pytest.mark.django_db
@pytest.mark.matrix("sites:commissioning_pdf")
def test_permission_matrix_of_the_pdf(tenants, client_for, na):
    report = finished_report(na.site)
    assert_matrix(tenants, client_for, report_url("pdf", report), Expect())


@pytest.mark.django_db
def test_a_site_outside_north_america_has_no_commissioning(tenants, client_for):
    site = SiteFactory(company=tenants.sunfix, country="DE", time_zone="Europe/Berlin")
    inverter = InverterFactory(gateway=GatewayFactory(site=site))
    report = finished_report(site)
    client = client_for(tenants.helios_admin)
    urls = [tab_url(site), create_url(site)] + [
        report_url(name, report) for name in ("update", "delete", "send", "pdf")
    ]
    for url in urls:
        assert client.get(url).status_code == 404, url
    posted = client.post(create_url(site), {"name": "X", "devices": [f"i{inverter.pk}"]})
    assert posted.status_code == 404
    assert client.post(report_url("delete", report)).status_code == 404
    assert CommissioningReport.objects.count() == 1


@pytest.mark.django_db
def test_the_tab_bar_of_a_north_american_site_offers_commissioning(tenants, client_for, na):
    page = client_for(tenants.sunfix_om).get(tab_url(na.site)).content.decode()
    assert f'href="{tab_url(na.site)}"' in page and 'aria-current="page"' in page


@pytest.mark.django_db
def test_a_report_of_another_site_is_not_found(tenants, client_for, na):
    other = SiteFactory(company=tenants.sunfix, country="US", time_zone="America/Denver")
    report = finished_report(other)
    url = reverse("sites:commissioning_pdf", args=[na.site.pk, report.pk])
    assert client_for(tenants.helios_admin).get(url).status_code == 404


@pytest.mark.django_db
def test_the_create_dialog_lists_the_sites_devices_all_ticked(tenants, client_for, na):
    response = client_for(tenants.sunfix_om).get(create_url(na.site), headers=HTMX_DIALOG)
    html = response.content.decode()
    assert "<html" not in html  # only the dialog
    assert "GWLAKE0001 : INVLAKE001" in html and "GWLAKE0001 : INVLAKE002" in html
    assert "GWLAKE0002 : –" in html  # a gateway without inverters is a row of its own
    assert "Nordlicht" not in html and na.foreign_inverter.serial_number not in html
    assert html.count('name="devices"') == 3 and html.count(" checked") == 3
    assert "Running" in html and "Offline" in html
    assert 'placeholder="Please input email address"' in html
    assert "js/commissioning.js" in html


@pytest.mark.django_db
def test_create_queues_a_report_of_the_chosen_devices(tenants, client_for, na):
    client = client_for(tenants.sunfix_om)
    data = valid_data(na, email="ops@lakeview.example", devices=[f"i{na.inverters[0].pk}"])
    response = client.post(create_url(na.site), data, headers=HTMX_DIALOG)
    assert response.status_code == 200
    assert response["HX-Redirect"] == tab_url(na.site)
    report = CommissioningReport.objects.get()
    assert (report.name, report.email, report.status, report.progress) == (
        "Commission Report",
        "ops@lakeview.example",
        ReportStatus.QUEUED,
        0,
    )
    assert list(report.inverters.all()) == [na.inverters[0]]
    assert report.company == tenants.sunfix and report.created_by == tenants.sunfix_om
    event = AuditEvent.objects.get(action="commissioning.created")
    assert event.actor == tenants.sunfix_om and event.after["inverters"] == ["INVLAKE001"]
    page = client.get(tab_url(na.site)).content.decode()
    assert "is being generated" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
        ({"email": "not-an-address"}, "email", "Enter a valid email address."),
        ({"devices": []}, "devices", "Select at least one gateway or inverter."),
        ({"devices": ["i999999"]}, "devices", "Select only gateways and inverters of this site."),
    ],
)
def test_create_refuses_bad_input_on_the_field(tenants, client_for, na, change, field, message):
    response = client_for(tenants.sunfix_om).post(
        create_url(na.site), valid_data(na, **change), headers=HTMX_DIALOG
    )
    assert response.status_code == 200 and "HX-Redirect" not in response
    assert message in response.context["form"].errors[field]
    assert message in response.content.decode()
    assert not CommissioningReport.objects.exists()


@pytest.mark.django_db
def test_create_refuses_a_device_of_another_tenant(tenants, client_for, na):
    data = valid_data(na, devices=[f"i{na.foreign_inverter.pk}"])
    response = client_for(tenants.helios_admin).post(create_url(na.site), data)
    assert "Select only gateways and inverters of this site." in response.content.decode()
    assert not CommissioningReport.objects.exists()


@pytest.mark.django_db
def test_the_list_shows_status_progress_and_the_sites_time(tenants, client_for, na):
    running = CommissioningReportFactory(
        site=na.site, name="Running one", status=ReportStatus.READING, progress=45
    )
    CommissioningReport.objects.filter(pk=running.pk).update(
        created_at=datetime(2025, 3, 6, 9, 14, 28, tzinfo=UTC)
    )
    done = finished_report(na.site, name="Done one", email="ops@lakeview.example")
    failed = CommissioningReportFactory(
        site=na.site, name="Broken", status=ReportStatus.FAILED, progress=90, error="Boom."
    )
    client = client_for(tenants.sunfix_om)
    html = client.get(tab_url(na.site)).content.decode()
    assert "2025-03-06 03:14:28-06:00" in html  # Chicago, with its offset
    assert '<progress class="commissioning-progress" value="45" max="100"' in html
    assert "Reading" in html and "Finished" in html and "Boom." in html
    assert f'href="{report_url("pdf", done)}"' in html
    assert report_url("pdf", running) not in html and report_url("pdf", failed) not in html
    assert report_url("send", done) in html and report_url("send", running) not in html
    assert "ops@lakeview.example" in html
    assert 'hx-trigger="every 2s"' in html  # a report is being built: the list polls

    part = client.get(tab_url(na.site), headers=HTMX_LIST).content.decode()
    assert part.lstrip().startswith('<div id="commissioning-reports"') and "<h1" not in part
    CommissioningReport.objects.filter(pk=running.pk).update(status=ReportStatus.FINISHED)
    part = client.get(tab_url(na.site), headers=HTMX_LIST).content.decode()
    assert "hx-trigger" not in part  # nothing in progress: polling stops


@pytest.mark.django_db
def test_an_empty_list_offers_the_first_report(tenants, client_for, na):
    html = client_for(tenants.sunfix_admin).get(tab_url(na.site)).content.decode()
    assert "There are no commissioning reports for this site yet." in html
    assert "Create the first report" in html and "hx-trigger" not in html


@pytest.mark.django_db
def test_update_is_refused_while_the_report_is_being_built(tenants, client_for, na):
    report = CommissioningReportFactory(site=na.site, status=ReportStatus.READING, progress=20)
    client = client_for(tenants.sunfix_om)
    response = client.post(report_url("update", report), follow=True)
    assert "is being generated. Update it when it has finished." in response.content.decode()
    report.refresh_from_db()
    assert (report.generation, report.status) == (1, ReportStatus.READING)
    # A build whose worker died long ago may be started again.
    CommissioningReport.objects.filter(pk=report.pk).update(
        started_at=timezone.now() - timedelta(hours=1)
    )
    client.post(report_url("update", report))
    report.refresh_from_db()
    assert (report.generation, report.status, report.progress) == (2, ReportStatus.QUEUED, 0)
    assert report.run_by == tenants.sunfix_om


@pytest.mark.django_db
def test_delete_removes_the_report_and_its_pdf(
    tenants, client_for, na, django_capture_on_commit_callbacks
):
    report = finished_report(na.site, name="Old report")
    name = report.pdf.name
    client = client_for(tenants.sunfix_om)
    dialog = client.get(report_url("delete", report), headers=HTMX_DIALOG).content.decode()
    assert "Delete the commissioning report “Old report”?" in dialog
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(report_url("delete", report))
    assert response.status_code == 302 and response["Location"] == tab_url(na.site)
    assert not CommissioningReport.objects.exists()
    assert not default_storage.exists(name)
    assert AuditEvent.objects.filter(action="commissioning.deleted").exists()


@pytest.mark.django_db
def test_send_email_needs_a_valid_address_and_a_finished_report(tenants, client_for, na):
    client = client_for(tenants.sunfix_om)
    report = finished_report(na.site)
    response = client.post(report_url("send", report), {"email": "nope"}, headers=HTMX_DIALOG)
    assert "Enter a valid email address." in response.content.decode()
    building = CommissioningReportFactory(site=na.site, status=ReportStatus.BUILDING)
    response = client.post(
        report_url("send", building), {"email": "a@b.example"}, headers=HTMX_DIALOG
    )
    assert "The report can be sent when it has finished." in response.content.decode()


@pytest.mark.django_db
def test_the_pdf_is_served_inline_with_its_own_policy(tenants, client_for, na):
    report = finished_report(na.site, name="Lakeview handover")
    response = client_for(tenants.sunfix_om).get(report_url("pdf", report))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 x"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'inline; filename="lakeview-handover.pdf"'
    assert response["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response["X-Content-Type-Options"] == "nosniff"
    unfinished = CommissioningReportFactory(site=na.site, status=ReportStatus.BUILDING)
    assert client_for(tenants.sunfix_om).get(report_url("pdf", unfinished)).status_code == 404


# --- the real thing: worker, broker, simulated devices, SMTP ---------------------------------

GATEWAY_SN = "GWCOM00001"
ANSWERING_SN = "GWCOM00001I1"
SILENT_SN = "GWCOM00001I2"


@pytest.fixture(scope="module")
def services(django_db_setup, tmp_path_factory):
    """A broker, an SMTP server and a `celery worker` on the test database that mails there
    and stores files in a media folder this module shares with it."""
    base = tmp_path_factory.mktemp("commissioning")
    broker = Mosquitto(base / "broker").start()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    media = base / "media"
    queue = f"commissioning-{uuid.uuid4().hex[:8]}"
    log_path = base / "worker.log"
    worker = start_worker(
        queue,
        broker.url,
        log_path,
        MEDIA_ROOT=str(media),
        EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
    )
    try:
        yield SimpleNamespace(
            broker=broker, mailbox=mailbox, media=media, queue=queue, log=log_path
        )
    finally:
        stop_process(worker)
        smtp.stop()
        broker.stop()


@pytest.fixture
def rig(tenants, services, settings):
    """A Chicago site of SunFix with a simulated gateway and inverter (address 1), a second
    inverter on the same bus that is not there (address 2), and an alarm last week."""
    settings.MQTT_URL = services.broker.url
    settings.MEDIA_ROOT = str(services.media)
    services.mailbox.messages.clear()
    site = SiteFactory(
        company=tenants.sunfix,
        name="Prairie Storage",
        country="US",
        time_zone="America/Chicago",
        address="200 Prairie Ave, Springfield",
    )
    gateway = GatewayFactory(
        serial_number=GATEWAY_SN, site=site, upload_interval_s=3600, firmware_version="10.00"
    )
    answering = InverterFactory(
        serial_number=ANSWERING_SN,
        model=TH,
        gateway=gateway,
        firmware_versions={"DSP": "01.23", "LCD": "02.00"},
    )
    silent = InverterFactory(serial_number=SILENT_SN, model=TH, gateway=gateway, modbus_address=2)
    AlarmFactory(
        inverter=answering,
        code="Warn0070",
        message="Low Batt volt",
        occurred_at=timezone.now() - timedelta(days=6),
    )
    spec = GatewaySpec(
        serial=GATEWAY_SN,
        inverters=(InverterSpec(ANSWERING_SN, TH, 1),),
        upload_interval_s=3600,
        site=SimSite(41.88, -87.63, "America/Chicago"),
    )
    clock = SimClock(speed=0, start=timezone.now().timestamp() - 6 * 3600)
    with (
        tasks_to(services.queue),
        running_ingest(services.broker.broker, client_id=f"com-ingest-{uuid.uuid4().hex[:6]}"),
        FleetThread([spec], mqtt_url=services.broker.url, clock=clock) as sim,
    ):
        wait_for(lambda: gateway_status(gateway) == GatewayStatus.ONLINE, 15, "gateway online")
        try:
            yield SimpleNamespace(
                t=tenants,
                site=site,
                gateway=gateway,
                answering=answering,
                silent=silent,
                sim=sim,
                services=services,
            )
        finally:
            close_reply_waiter()


def settled(report: CommissioningReport, timeout: float = 90) -> CommissioningReport:
    """The report once its build ended; `seen` holds the (status, progress) polled meanwhile."""
    seen: list[tuple[str, int]] = []

    def done() -> bool:
        report.refresh_from_db()
        seen.append((report.status, report.progress))
        return not report.in_progress

    wait_for(done, timeout, f"report {report.name} to finish")
    report.seen = seen
    return report


def create(rig, client, **data) -> CommissioningReport:
    devices = [f"i{rig.answering.pk}", f"i{rig.silent.pk}"]
    response = client.post(
        create_url(rig.site), {"name": "Handover", "devices": devices, **data}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200 and response["HX-Redirect"] == tab_url(rig.site)
    return CommissioningReport.objects.latest("pk")


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_report_reads_the_devices_live_and_builds_the_pdf(rig, client_for):
    rig.sim.call(lambda: rig.sim.fleet.inverter(ANSWERING_SN).write("export_limit_power", 6.5))
    client = client_for(rig.t.sunfix_om)
    report = settled(create(rig, client))

    assert report.status == ReportStatus.FINISHED, report.error
    assert report.progress == 100 and report.finished_at is not None
    # The list showed it being read, with a progress between start and end.
    assert any(s == ReportStatus.READING and 0 < p < 100 for s, p in report.seen), report.seen
    # The settings were read through the remote-operations engine, as the O&M engineer.
    reads = RemoteOperation.objects.filter(kind=OperationKind.READ, user=rig.t.sunfix_om)
    assert sorted(reads.values_list("device_serial", flat=True)) == [ANSWERING_SN, SILENT_SN]

    html = client.get(tab_url(rig.site)).content.decode()
    assert "Finished" in html and 'value="100"' in html and "hx-trigger" not in html
    response = client.get(report_url("pdf", report))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    content = b"".join(response.streaming_content)
    assert content.startswith(b"%PDF-")
    for text in (
        "Prairie Storage",
        "200 Prairie Ave, Springfield",
        "America/Chicago",
        "United States of America",
        GATEWAY_SN,
        ANSWERING_SN,
        SILENT_SN,
        "DSP: 01.23",
        "Export limit power",
        "6.5 kW",  # the value just written into the simulated inverter, read live
        "Warn0070",
        "Low Batt volt",
        "om@sunfix.example",  # who created it
    ):
        assert pdf_has(content, text), text
    # The inverter that is not on the bus is reported, and the report still finished.
    assert pdf_has(content, "Not answering: No answer from the inverter at address 2")
    assert re.search(
        rb"\(Generated\).*?\(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d-0[56]:00\)", pdf_text(content), re.S
    )
    assert not rig.services.mailbox.messages  # no address, no mail


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_the_finished_report_is_mailed_and_can_be_sent_again(rig, client_for):
    client = client_for(rig.t.sunfix_admin)
    report = settled(create(rig, client, email="installer@prairie.example"))
    assert report.status == ReportStatus.FINISHED, report.error
    mailbox = rig.services.mailbox
    wait_for(lambda: len(mailbox.messages) == 1, 15, "the report's mail")
    wait_for(lambda: CommissioningReport.objects.get(pk=report.pk).emailed_at, 10, "emailed_at")
    message = mailbox.messages[0]
    assert message["X-Envelope-To"] == "installer@prairie.example"
    assert "Handover" in message["Subject"] and "Prairie Storage" in message["Subject"]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "handover.pdf"
    assert pdf_has(attachment.get_content(), ANSWERING_SN)
    assert "Prairie Storage" in message.get_body(("plain",)).get_content()

    html = client.get(tab_url(rig.site)).content.decode()
    assert "Sent to installer@prairie.example at" in html

    response = client.post(
        report_url("send", report), {"email": "owner@prairie.example"}, headers=HTMX_DIALOG
    )
    assert response["HX-Redirect"] == tab_url(rig.site)
    wait_for(lambda: len(mailbox.messages) == 2, 15, "the mail sent again")
    assert mailbox.messages[1]["X-Envelope-To"] == "owner@prairie.example"
    report.refresh_from_db()
    assert report.email == report.emailed_to == "owner@prairie.example"


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_update_builds_again_with_current_data_and_delete_removes_everything(rig, client_for):
    client = client_for(rig.t.sunfix_om)
    report = settled(create(rig, client))
    first_pdf = report.pdf.name
    assert report.status == ReportStatus.FINISHED, report.error
    rig.sim.call(lambda: rig.sim.fleet.inverter(ANSWERING_SN).write("export_limit_power", 4.2))

    client.post(report_url("update", report))
    report = settled(report)
    assert report.status == ReportStatus.FINISHED and report.generation == 2
    assert report.pdf.name != first_pdf and not report.pdf.storage.exists(first_pdf)
    content = b"".join(client.get(report_url("pdf", report)).streaming_content)
    assert pdf_has(content, "4.2 kW")

    client.post(report_url("delete", report))
    assert not CommissioningReport.objects.filter(pk=report.pk).exists()
    wait_for(lambda: not report.pdf.storage.exists(report.pdf.name), 5, "the PDF deleted")


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_an_om_engineer_creates_a_report_in_the_browser_and_opens_it(rig, page, shots):
    rig.t.sunfix_om.set_password(PASSWORD)
    rig.t.sunfix_om.save()
    sign_in(page, rig.t.sunfix_om.email)
    page.goto(tab_url(rig.site))
    page.get_by_text("There are no commissioning reports for this site yet.").wait_for()
    page.locator(".card-header").get_by_role("link", name="Create").click()
    dialog = page.locator("#commissioning-dialog")
    dialog.get_by_text("Gateway SN : Inverter SN").wait_for()
    select_all = dialog.locator("#commissioning-select-all")
    expect(select_all).to_be_checked()  # the dialog's script sets it once the swap settled
    select_all.uncheck()
    assert dialog.locator('input[name="devices"]:checked').count() == 0
    dialog.get_by_role("button", name="Confirm").click()
    dialog.get_by_text("Select at least one gateway or inverter.").wait_for()
    assert not CommissioningReport.objects.exists()

    dialog.get_by_label("Report name").fill("Handover")
    dialog.locator(f"#device-i{rig.answering.pk}").check()
    assert select_all.evaluate("box => box.indeterminate")
    page.screenshot(path=shots / "site-commissioning-create.png")
    dialog.get_by_role("button", name="Confirm").click()
    page.get_by_text("The commissioning report “Handover” is being generated.").wait_for()
    # The list follows the build by itself until the report's link appears.
    link = page.locator("#commissioning-reports").get_by_role("link", name="Handover")
    link.wait_for(timeout=60_000)
    assert page.locator("#commissioning-reports progress").get_attribute("value") == "100"
    pdf = page.request.get(link.get_attribute("href"))
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    assert pdf_has(pdf.body(), ANSWERING_SN) and not pdf_has(pdf.body(), SILENT_SN)
