"""The AutoTest report (guide §6.4.2.7): one test of an Italian inverter's interface protection
as a PDF, drawn on request from the stored run (fleet.models.AutoTestRun) with the portal's
report look (fleet/pdf.py). A4: the test is for Italian sites."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.translation import gettext as _
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate, Spacer

from fleet import autotest, pdf
from fleet.commissioning import local_time
from fleet.device_tables import firmware_text
from fleet.models import AutoTestResult, AutoTestRun, AutoTestStatus, AutoTestStepState
from inverters.models import Inverter
from ui import units

if TYPE_CHECKING:
    from accounts.models import User

STANDARD = "CEI 0-21"


def render_report(run: AutoTestRun, inverter: Inverter, reader: User | None = None) -> bytes:
    """The report of `run` (of `inverter`), in the active language and the site's time."""
    site = inverter.site
    tz = site.time_zone
    sheet = pdf.styles()
    buffer = io.BytesIO()
    title = _("AutoTest report")
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=f"{title} {run.serial_number}",
        author="MatriCloud",
        subject=_("%(standard)s self-test of the interface protection of %(serial)s")
        % {"standard": STANDARD, "serial": run.serial_number},
        creator="MatriCloud",
    )
    width = doc.width
    status = AutoTestStatus(run.shown_status)
    verdict_style = {
        AutoTestStatus.PASSED: "h2",
        AutoTestStatus.FAILED: "alert",
    }.get(status, "body")
    story: list[Any] = [
        pdf.text(title, sheet["title"]),
        pdf.text(
            _("%(standard)s self-test of the interface protection (SPI)") % {"standard": STANDARD},
            sheet["h2"],
        ),
        pdf.table(
            None,
            [
                (_("Result"), str(status.label)),
                *([(_("Reason"), autotest.reason_text(run))] if autotest.reason_text(run) else []),
                (_("Started"), local_time(run.created_at, tz)),
                (_("Finished"), local_time(run.finished_at, tz)),
                (_("Started by"), run.started_by_email or "–"),
                (_("Test number on the inverter"), str(run.device_run or "–")),
            ],
            [width * 0.3, width * 0.7],
            sheet,
        ),
        pdf.text(_("Inverter and site"), sheet["h2"]),
        pdf.table(
            None,
            [
                (_("Inverter SN"), run.serial_number),
                (_("Model"), run.model or "–"),
                (_("Firmware"), firmware_text(run.firmware_versions) or units.MISSING),
                (_("Gateway SN"), inverter.gateway.serial_number if inverter.gateway else "–"),
                (_("Modbus address"), str(inverter.modbus_address)),
                (_("Site"), site.name),
                (_("Address"), site.address or "–"),
                (_("Region"), str(site.country.name) or "–"),
                (_("Time zone"), tz),
            ],
            [width * 0.3, width * 0.7],
            sheet,
        ),
        pdf.text(_("Test conditions"), sheet["h2"]),
        pdf.text(
            _(
                "Confirmed by %(user)s before the start. The inverter checks the first three "
                "itself and refuses to start otherwise."
            )
            % {"user": run.started_by_email or "–"},
            sheet["muted"],
        ),
    ]
    story += [pdf.text(f"• {condition}", sheet["body"]) for condition in autotest.CONDITIONS]
    story.append(pdf.text(_("Results"), sheet["h2"]))
    rows = []
    result_style = {
        AutoTestResult.PASS: ParagraphStyle("pass", parent=sheet["cell"], textColor=pdf.GOOD),
        AutoTestResult.FAIL: ParagraphStyle("fail", parent=sheet["cell"], textColor=pdf.ALERT),
    }
    for step in run.steps.all():
        result = {
            AutoTestResult.PASS: _("Pass"),
            AutoTestResult.FAIL: _("Fail"),
        }.get(step.result) or str(AutoTestStepState(step.state).label)
        tested = step.state == AutoTestStepState.DONE
        rows.append(
            [
                step.code,
                autotest.function_label(step.code),
                autotest.format_value(step.threshold, step.unit),
                autotest.format_ms(step.time_limit_ms),
                autotest.format_value(step.trip_value if tested else None, step.unit),
                autotest.format_ms(step.trip_time_ms if tested else None),
                pdf.text(result, result_style.get(step.result, sheet["cell"])),
            ]
        )
    story.append(
        pdf.table(
            [
                _("Protection"),
                _("Function"),
                _("Threshold"),
                _("Time limit"),
                _("Trip value"),
                _("Trip time"),
                _("Result"),
            ],
            rows,
            [width * f for f in (0.12, 0.28, 0.12, 0.12, 0.12, 0.12, 0.12)],
            sheet,
        )
    )
    verdict = {
        AutoTestStatus.PASSED: _("Every protection tripped within its limits: the test passed."),
        AutoTestStatus.FAILED: _(
            "At least one protection tripped outside its limits: the test failed. Have the "
            "inverter checked before it stays connected to the grid."
        ),
    }.get(status, _("The test did not run to its end: it has no overall result."))
    story += [Spacer(1, 6), pdf.text(verdict, sheet[verdict_style])]
    story.append(
        pdf.text(
            _(
                "A step passes when the trip value is within the protection's accuracy of the "
                "threshold (1 % of the nominal 230 V for voltage, 20 mHz for frequency) and the "
                "trip time is at most the limit plus 3 % and 20 ms. The inverter evaluates "
                "each step; the values are those it reported."
            ),
            sheet["muted"],
        )
    )
    generated = local_time(timezone.now(), tz)
    line = _("MatriCloud · AutoTest %(serial)s · generated %(time)s") % {
        "serial": run.serial_number,
        "time": generated,
    }
    if reader is not None:
        line += " · " + reader.email
    draw = pdf.footer(line)
    doc.build(story, onFirstPage=draw, onLaterPages=draw)
    return buffer.getvalue()
