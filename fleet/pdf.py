"""What the portal's PDF reports share (reportlab): colours, paragraph styles, text cells,
ruled tables and the page footer. The commissioning report (fleet/commissioning.py) and the
AutoTest report (fleet/autotest_pdf.py) are drawn with them, so they look alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Table, TableStyle

INK = colors.HexColor("#1f2937")
MUTED = colors.HexColor("#6b7280")
RULE = colors.HexColor("#d1d5db")
HEAD = colors.HexColor("#eef2f7")
ALERT = colors.HexColor("#b42318")
GOOD = colors.HexColor("#067647")


def styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontSize=9, leading=11.5, textColor=INK)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=18, alignment=0),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=12.5, spaceBefore=10),
        "h3": ParagraphStyle(
            "h3", parent=base["Heading3"], fontName="Helvetica-Bold", fontSize=10.5, spaceBefore=6
        ),
        "body": body,
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=10),
        "head": ParagraphStyle(
            "head", parent=body, fontSize=8, leading=10, fontName="Helvetica-Bold"
        ),
        "muted": ParagraphStyle("muted", parent=body, textColor=MUTED),
        "alert": ParagraphStyle("alert", parent=body, textColor=ALERT),
    }


def text(value: Any, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text (escaped: device values are never markup)."""
    return Paragraph(escape(str(value)), style)


def table(
    header: Iterable[str] | None,
    rows: Iterable[Iterable[Any]],
    widths: list[float],
    style_sheet: dict[str, ParagraphStyle],
) -> Table:
    """A ruled table of text cells (a cell may also be a ready paragraph)."""
    data = [[text(cell, style_sheet["head"]) for cell in header]] if header else []
    data += [
        [cell if isinstance(cell, Paragraph) else text(cell, style_sheet["cell"]) for cell in row]
        for row in rows
    ]
    result = Table(data, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    commands = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), HEAD))
    result.setStyle(TableStyle(commands))
    return result


def footer(line: str) -> Callable[[Any, Any], None]:
    """The page callback that writes `line` and the page number at the foot of each page."""

    def draw(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(MUTED)
        canvas.drawString(document.leftMargin, 10 * mm, line)
        canvas.drawRightString(
            document.leftMargin + document.width,
            10 * mm,
            _("Page %(page)d") % {"page": document.page},
        )
        canvas.restoreState()

    return draw
