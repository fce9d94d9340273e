"""Building a commissioning report (guide §6.2.7), in a worker: read the key settings of the
selected inverters live through the remote-operations engine, collect the site's data, the
devices and their recent alarms, draw the PDF with reportlab and store it; then mail it when
the report names an address.

Every write to the report is conditional on its `generation` (fleet.models): after Update or
Delete, a worker still busy with the old build changes nothing and throws its PDF away.
The services that start builds are in fleet/commissioning_services.py; the Celery tasks in
fleet/tasks.py.
"""

from __future__ import annotations

import io
import logging
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from reportlab.lib.pagesizes import letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, SimpleDocTemplate, Spacer

from alarms.models import Alarm
from devices.registermap import RegisterMap, UnknownModelError
from fleet import pdf
from fleet.device_tables import firmware_text
from fleet.models import IN_PROGRESS, CommissioningReport, ReportStatus, report_path
from gateways.models import Gateway
from inverters.models import Inverter
from maintenance.models import PENDING_STATES, OperationState, RemoteOperation
from maintenance.remote import OperationRefused, read_registers
from maintenance.tasks import execute_operation
from ui import units

if TYPE_CHECKING:
    from accounts.models import User

log = logging.getLogger("fleet.commissioning")

#: The settings a commissioning engineer checks, read live from every selected inverter (by
#: register key; a model whose map lacks one simply skips it).
KEY_SETTINGS: dict[str, Any] = {
    "work_mode": gettext_lazy("Operating mode"),
    "grid_code": gettext_lazy("Grid code (safety standard)"),
    "power_switch": gettext_lazy("Power on/off"),
    "export_limit_enable": gettext_lazy("Export limit"),
    "export_limit_power": gettext_lazy("Export limit power"),
    "active_power_limit": gettext_lazy("Active power limit"),
    "power_factor_setpoint": gettext_lazy("Power factor setpoint"),
    "batt_type": gettext_lazy("Battery type"),
    "batt_min_soc_on_grid": gettext_lazy("Minimum SOC on grid"),
    "batt_max_charge_soc": gettext_lazy("Maximum charge SOC"),
}
#: How long a read may wait for an offline gateway before the engine expires it; the report
#: itself does not wait for offline gateways.
READ_DEADLINE_S = 120
#: How long the report waits for the answers after the reads were sent.
READ_WAIT_S = 30
POLL_S = 0.2
ALARM_DAYS = 30
ALARM_LIMIT = 200
PROGRESS_READING = 5
PROGRESS_READ_DONE = 85
PROGRESS_BUILDING = 90

MISSING = units.MISSING


# --- reading the devices ----------------------------------------------------------------------


@dataclass
class SettingValue:
    label: str
    register: str
    display: str


@dataclass
class DeviceReading:
    """What the live read of one inverter gave: `state` is "answered", "no_answer" (the device
    or its gateway did not answer) or "not_read" (the read was refused before it was sent)."""

    inverter: Inverter
    state: str = "not_read"
    values: list[SettingValue] = field(default_factory=list)
    note: str = ""
    read_at: datetime | None = None

    @property
    def answered(self) -> bool:
        return self.state == "answered"


def key_settings(inverter: Inverter) -> list[str] | None:
    """The keys of KEY_SETTINGS the inverter's register map has; None without a map."""
    try:
        rm = RegisterMap.for_model(inverter.model)
    except UnknownModelError:
        return None
    return [key for key in KEY_SETTINGS if key in rm.points]


def read_devices(
    inverters: list[Inverter], user: User | None, progress: Callable[[int], bool]
) -> list[DeviceReading] | None:
    """Read the key settings of `inverters` as `user`; None when `progress` says the build was
    superseded (Update, Delete).

    The reads are sent from this worker (the engine's `execute_operation`, called directly): a
    single worker process would otherwise wait for reads queued behind this very task. The
    copies the engine hands to the pool find the operations claimed and skip them.
    """
    readings = {inverter.pk: DeviceReading(inverter) for inverter in inverters}
    operations: dict[int, RemoteOperation] = {}
    for inverter in inverters:
        reading = readings[inverter.pk]
        keys = key_settings(inverter)
        if user is None:
            reading.note = _("The user who started the report no longer exists.")
        elif keys is None:
            reading.note = _("There is no register map for the model %(model)s.") % {
                "model": inverter.model
            }
        else:
            try:
                operations[inverter.pk] = read_registers(
                    inverter, keys, acting_user=user, deadline_s=READ_DEADLINE_S
                )
            except OperationRefused as refused:
                reading.note = refused.message
            except PermissionDenied as denied:
                reading.note = str(denied) or _("You may not read this inverter.")
    total = max(len(inverters), 1)
    done = len(inverters) - len(operations)
    if not progress(_read_progress(done, total)):
        return None
    waiting: dict[int, RemoteOperation] = {}
    for pk, operation in operations.items():
        if execute_operation(operation.pk) == "waiting":
            # Gateway offline (or the broker out of reach): the read stays queued until its
            # deadline, but the report does not wait for it.
            readings[pk].state = "no_answer"
            readings[pk].note = _("The gateway is offline.")
            done += 1
        else:
            operation.refresh_from_db()
            if operation.state in PENDING_STATES:
                waiting[pk] = operation
            else:
                _apply(readings[pk], operation)
                done += 1
        if not progress(_read_progress(done, total)):
            return None
    end = time.monotonic() + READ_WAIT_S
    while waiting and time.monotonic() < end:
        time.sleep(POLL_S)
        answered = RemoteOperation.objects.filter(
            pk__in=[op.pk for op in waiting.values()]
        ).exclude(state__in=PENDING_STATES)
        for operation in answered:
            _apply(readings[operation.inverter_id], operation)
            waiting.pop(operation.inverter_id, None)
            done += 1
        if not progress(_read_progress(done, total)):
            return None
    for pk in waiting:
        readings[pk].state = "no_answer"
        readings[pk].note = _("No answer before the report's time limit.")
    return [readings[inverter.pk] for inverter in inverters]


def _read_progress(done: int, total: int) -> int:
    return PROGRESS_READING + (PROGRESS_READ_DONE - PROGRESS_READING) * done // total


def _apply(reading: DeviceReading, operation: RemoteOperation) -> None:
    values = (operation.result or {}).get("values") or {}
    reading.values = [
        SettingValue(
            label=str(KEY_SETTINGS.get(key, entry.get("name", key))),
            register=str(entry.get("name", "")),
            display=str(entry.get("display", "")) or MISSING,
        )
        for key, entry in sorted(values.items(), key=lambda item: _setting_order(item[0]))
    ]
    reading.read_at = operation.finished_at
    reading.state = "answered" if values else "no_answer"
    if operation.state != OperationState.SUCCEEDED:
        reading.note = operation.error or str(operation.get_state_display())


def _setting_order(key: str) -> int:
    keys = list(KEY_SETTINGS)
    return keys.index(key) if key in keys else len(keys)


# --- the report's content ---------------------------------------------------------------------


@dataclass
class ReportData:
    """Everything the PDF shows, as text in the reader's language and the site's time zone."""

    title: str
    site_name: str
    time_zone: str
    site_rows: list[tuple[str, str]]
    gateway_rows: list[list[str]]
    inverter_rows: list[list[str]]
    readings: list[DeviceReading]
    alarm_rows: list[list[str]]
    alarms_total: int
    generated_at: str
    created_by: str
    built_by: str


def local_time(moment: datetime | None, time_zone: str) -> str:
    """`2025-03-06 03:14:28-06:00`: the guide's way of writing a time, in `time_zone`."""
    if moment is None:
        return MISSING
    try:
        zone = ZoneInfo(time_zone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def _person(user: User | None) -> str:
    if user is None:
        return MISSING
    name = str(user)
    return f"{name} <{user.email}>" if name != user.email else user.email


def collect(
    report: CommissioningReport, inverters: list[Inverter], readings: list[DeviceReading]
) -> ReportData:
    site = report.site
    tz = site.time_zone
    gateway_ids = {g.pk for g in report.gateways.all()} | {
        i.gateway_id for i in inverters if i.gateway_id
    }
    gateways = Gateway.objects.filter(pk__in=gateway_ids, site=site).order_by("serial_number")
    since = timezone.now() - timedelta(days=ALARM_DAYS)
    alarms = (
        Alarm.objects.filter(site=site, inverter__in=inverters, occurred_at__gte=since)
        .select_related("inverter")
        .order_by("-occurred_at")
    )
    alarm_list = list(alarms[:ALARM_LIMIT])
    alarms_total = len(alarm_list) if len(alarm_list) < ALARM_LIMIT else alarms.count()
    gateway_serial = {g.pk: g.serial_number for g in gateways}
    return ReportData(
        title=report.name,
        site_name=site.name,
        time_zone=tz,
        site_rows=[
            (_("Site name"), site.name),
            (_("Company"), site.company.name),
            (_("Address"), site.address or MISSING),
            (_("Region"), str(site.country.name) or MISSING),
            (_("Time zone"), site.time_zone),
            (_("Site type"), str(site.get_site_type_display())),
            (_("Grid connection"), _("On-grid") if site.on_grid else _("Off-grid")),
            (_("Capacity"), units.kwp(site.capacity_kwp)),
            (
                _("Tariff"),
                _("%(amount)s per kWh")
                % {"amount": units.money(site.tariff_per_kwh, site.currency)},
            ),
            (
                _("Coordinates"),
                f"{units.number(site.latitude, 6)}, {units.number(site.longitude, 6)}",
            ),
        ],
        gateway_rows=[
            [
                g.serial_number,
                str(g.get_model_display()),
                g.firmware_version or MISSING,
                str(g.get_status_display()),
                local_time(g.last_seen_at, tz),
            ]
            for g in gateways
        ],
        inverter_rows=[
            [
                i.serial_number,
                gateway_serial.get(i.gateway_id, MISSING),
                str(i.modbus_address),
                i.model,
                firmware_text(i.firmware_versions) or MISSING,
                str(i.get_status_display()),
                local_time(i.last_seen_at, tz),
            ]
            for i in inverters
        ],
        readings=readings,
        alarm_rows=[
            [
                local_time(a.occurred_at, tz),
                a.inverter.serial_number,
                a.code,
                str(a.get_level_display()),
                a.message,
                str(a.get_status_display()),
            ]
            for a in alarm_list
        ],
        alarms_total=alarms_total,
        generated_at=local_time(timezone.now(), tz),
        created_by=_person(report.created_by),
        built_by=_person(report.run_by),
    )


# --- the PDF ----------------------------------------------------------------------------------

# The shared look of the portal's reports (fleet/pdf.py).
_styles = pdf.styles
_text = pdf.text
_table = pdf.table


def render_pdf(data: ReportData) -> bytes:
    """The report as a PDF (US Letter: the report is for North-American sites)."""
    styles = _styles()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=letter,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=data.title,
        author="MatriCloud",
        subject=_("Commissioning report of %(site)s") % {"site": data.site_name},
        creator="MatriCloud",
    )
    width = doc.width
    story: list[Any] = [
        _text(_("Commissioning report"), styles["title"]),
        _text(data.title, styles["h2"]),
        _table(
            None,
            [
                (_("Site"), data.site_name),
                (_("Generated"), data.generated_at),
                (_("Created by"), data.created_by),
                *([(_("Updated by"), data.built_by)] if data.built_by != data.created_by else []),
            ],
            [width * 0.25, width * 0.75],
            styles,
        ),
        _text(_("Site"), styles["h2"]),
        _table(None, data.site_rows, [width * 0.25, width * 0.75], styles),
        _text(_("Gateways"), styles["h2"]),
    ]
    if data.gateway_rows:
        story.append(
            _table(
                [_("Gateway SN"), _("Model"), _("Firmware"), _("Status"), _("Last seen")],
                data.gateway_rows,
                [width * f for f in (0.22, 0.18, 0.18, 0.14, 0.28)],
                styles,
            )
        )
    else:
        story.append(_text(_("No gateway was selected."), styles["muted"]))
    story.append(_text(_("Inverters"), styles["h2"]))
    if data.inverter_rows:
        story.append(
            _table(
                [
                    _("Inverter SN"),
                    _("Gateway SN"),
                    _("Address"),
                    _("Model"),
                    _("Firmware"),
                    _("Status"),
                    _("Last seen"),
                ],
                data.inverter_rows,
                [width * f for f in (0.16, 0.15, 0.09, 0.14, 0.18, 0.09, 0.19)],
                styles,
            )
        )
    else:
        story.append(_text(_("No inverter was selected."), styles["muted"]))
    heading = _text(_("Key settings, read live"), styles["h2"])
    if not data.readings:
        story += [heading, _text(_("No inverter was selected."), styles["muted"])]
    for index, reading in enumerate(data.readings):
        block = _reading_block(reading, data, styles, width)
        # The heading stays with the first inverter's settings.
        story.append(KeepTogether([heading, *block] if index == 0 else block))
    story.append(_text(_("Alarms of the last %(days)d days") % {"days": ALARM_DAYS}, styles["h2"]))
    if data.alarm_rows:
        story.append(
            _table(
                [_("Time"), _("Device SN"), _("Code"), _("Level"), _("Message"), _("Status")],
                data.alarm_rows,
                [width * f for f in (0.22, 0.17, 0.11, 0.1, 0.27, 0.13)],
                styles,
            )
        )
        if data.alarms_total > len(data.alarm_rows):
            story.append(
                _text(
                    _("The newest %(shown)d of %(total)d alarms.")
                    % {"shown": len(data.alarm_rows), "total": data.alarms_total},
                    styles["muted"],
                )
            )
    else:
        story.append(_text(_("No alarms in this period."), styles["muted"]))

    footer = _("MatriCloud · %(title)s · generated %(time)s") % {
        "title": data.title,
        "time": data.generated_at,
    }

    draw_footer = pdf.footer(footer)

    doc.build(story, onFirstPage=draw_footer, onLaterPages=draw_footer)
    return buffer.getvalue()


def _reading_block(
    reading: DeviceReading, data: ReportData, styles: dict[str, ParagraphStyle], width: float
) -> list[Any]:
    inverter = reading.inverter
    block: list[Any] = [
        _text(f"{inverter.serial_number} · {inverter.model}", styles["h3"]),
    ]
    if reading.answered:
        block.append(
            _text(
                _("Read at %(time)s") % {"time": local_time(reading.read_at, data.time_zone)},
                styles["muted"],
            )
        )
        block.append(
            _table(
                [_("Setting"), _("Value"), _("Register")],
                [(v.label, v.display, v.register) for v in reading.values],
                [width * 0.4, width * 0.35, width * 0.25],
                styles,
            )
        )
        if reading.note:
            block.append(_text(reading.note, styles["alert"]))
    else:
        label = _("Not answering") if reading.state == "no_answer" else _("Not read")
        note = f"{label}: {reading.note}" if reading.note else label
        block.append(_text(note, styles["alert"]))
    block.append(Spacer(1, 4))
    return block


# --- the build --------------------------------------------------------------------------------


def _advance(report_id: int, generation: int, **fields: Any) -> bool:
    """Change the report while this build is the current one and still running."""
    return bool(
        CommissioningReport.objects.filter(
            pk=report_id, generation=generation, status__in=IN_PROGRESS
        ).update(**fields)
    )


def language_of(report: CommissioningReport) -> str:
    user = report.run_by or report.created_by
    return (user.language if user is not None else "") or settings.LANGUAGE_CODE


def build(report_id: int, generation: int) -> str:
    """Run build `generation` of the report: `finished`, `failed`, or `superseded` when the
    report was updated or deleted meanwhile."""
    if not _advance(report_id, generation, status=ReportStatus.READING, progress=PROGRESS_READING):
        return "superseded"
    report = CommissioningReport.objects.select_related(
        "site", "site__company", "created_by", "run_by"
    ).get(pk=report_id)
    last = [PROGRESS_READING]

    def progress(value: int) -> bool:
        if value == last[0]:
            return True
        last[0] = value
        return _advance(report_id, generation, progress=value)

    try:
        with translation.override(language_of(report)):
            inverters = list(
                report.inverters.filter(site_id=report.site_id)
                .select_related("gateway", "site")
                .order_by("gateway__serial_number", "modbus_address", "serial_number")
            )
            readings = read_devices(inverters, report.run_by, progress)
            if readings is None or not _advance(
                report_id, generation, status=ReportStatus.BUILDING, progress=PROGRESS_BUILDING
            ):
                return "superseded"
            content = render_pdf(collect(report, inverters, readings))
    except SoftTimeLimitExceeded:
        _fail(report_id, generation, _("Building the report took too long."))
        return "failed"
    except Exception:
        log.exception("commissioning report %s could not be built", report_id)
        _fail(report_id, generation, _("The report could not be built."))
        return "failed"
    if not _store(report, generation, content):
        return "superseded"
    if report.email:
        email_report(report_id)
    return "finished"


def _fail(report_id: int, generation: int, reason: str) -> None:
    _advance(
        report_id,
        generation,
        status=ReportStatus.FAILED,
        error=reason[:500],
        finished_at=timezone.now(),
    )


def _store(report: CommissioningReport, generation: int, content: bytes) -> bool:
    """Save the PDF and finish the report; False (and the file removed) when superseded."""
    storage = report.pdf.storage
    name = storage.save(report_path(report, "report.pdf"), ContentFile(content))
    with transaction.atomic():
        current = (
            CommissioningReport.objects.select_for_update()
            .filter(pk=report.pk, generation=generation, status__in=IN_PROGRESS)
            .values_list("pdf", flat=True)
            .first()
        )
        if current is None:
            stored = False
        else:
            CommissioningReport.objects.filter(pk=report.pk).update(
                pdf=name,
                status=ReportStatus.FINISHED,
                progress=100,
                error="",
                finished_at=timezone.now(),
            )
            stored = True
    if not stored:
        delete_file(storage, name)
        return False
    if current and current != name:
        delete_file(storage, current)
    return True


def delete_file(storage, name: str) -> None:
    try:
        storage.delete(name)
    except OSError:
        log.warning("could not delete the report file %s", name, exc_info=True)


# --- mail -------------------------------------------------------------------------------------


def pdf_filename(report: CommissioningReport) -> str:
    return f"{slugify(report.name) or 'commissioning-report'}.pdf"


def email_report(report_id: int) -> str:
    """Mail the finished PDF to the report's address: `sent`, `failed` or `skipped`."""
    report = (
        CommissioningReport.objects.select_related("site", "created_by", "run_by")
        .filter(pk=report_id)
        .first()
    )
    if report is None or not report.has_pdf or not report.email:
        return "skipped"
    address = report.email
    with translation.override(language_of(report)):
        subject = _("Commissioning report “%(name)s” of %(site)s") % {
            "name": report.name,
            "site": report.site.name,
        }
        body = render_to_string(
            "emails/commissioning_report.txt",
            {
                "report": report,
                "site": report.site,
                "sender": _person(report.run_by or report.created_by),
                "finished": local_time(report.finished_at, report.site.time_zone),
            },
        )
    try:
        with report.pdf.open("rb") as handle:
            content = handle.read()
        message = EmailMessage(subject, body, to=[address])
        message.attach(pdf_filename(report), content, "application/pdf")
        message.send()
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("commissioning report %s could not be mailed: %s", report_id, exc)
        CommissioningReport.objects.filter(pk=report_id).update(
            email_error=(_("The email could not be sent: %(reason)s") % {"reason": exc})[:300]
        )
        return "failed"
    CommissioningReport.objects.filter(pk=report_id).update(
        emailed_at=timezone.now(), emailed_to=address, email_error=""
    )
    return "sent"
