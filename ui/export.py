"""Downloads of a list (the guide's "Download"): CSV or XLSX of exactly the rows the page's
filters, search and sort select, with the columns the user sees.

Rows are read with `QuerySet.iterator(chunk_size=...)` while the response streams, so a large
download holds one chunk of objects at a time. XLSX is written by openpyxl in write-only mode,
which keeps rows on disk rather than in memory; the finished file is streamed in blocks.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import html
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.encoding import force_str
from django.utils.html import strip_tags
from django.utils.safestring import SafeData

from ui.cells import CellReader

FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", "CSV"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "Excel (XLSX)"),
}
CHUNK_SIZE = 2000
FILE_BLOCK = 64 * 1024
# A leading character that a spreadsheet would read as the start of a formula ("-" only when
# what follows is not a number).
_FORMULA_START = ("=", "+", "@", "\t", "\r")


def table_rows(
    table: Any, queryset: QuerySet | Iterable, chunk_size: int = CHUNK_SIZE
) -> Iterator[list]:
    """The header, then one list of cell values per row of `queryset`, in its order.

    The cells are the table's values (`value_<name>`, else what the page shows without its
    HTML), so a download reads like the page.
    """
    columns = table.download_columns()
    yield [force_str(column.header) for column in columns]
    records = (
        queryset.iterator(chunk_size=chunk_size) if isinstance(queryset, QuerySet) else queryset
    )
    cells = [CellReader(table, column) for column in columns]
    for record in records:
        yield [plain(cell(record)) for cell in cells]


def plain(value: Any) -> Any:
    """A cell value without markup: numbers and dates stay as they are, the rest is text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | decimal.Decimal | datetime.date | datetime.time):
        return value
    text = force_str(value)
    # A `render_<name>` method's HTML, when the table has no `value_<name>`: its text only.
    return html.unescape(strip_tags(text)).strip() if isinstance(value, SafeData) else text


def in_request_locale(rows: Callable[[], Iterator[list]]) -> Iterator[list]:
    """`rows()` run with the request's time zone and language.

    A streamed body is produced after the view has returned, when the middleware has reset
    both; they are taken now and re-activated while the rows are made.
    """
    zone = timezone.get_current_timezone()
    language = translation.get_language()

    def produce() -> Iterator[list]:
        with timezone.override(zone), translation.override(language):
            yield from rows()

    return produce()


def csv_text(value: Any) -> str:
    """Text for a CSV cell; text a spreadsheet would run as a formula is quoted with `'`."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if not isinstance(value, str):
        return "" if value is None else str(value)
    if value.startswith(_FORMULA_START) or (value.startswith("-") and not _is_number(value)):
        return f"'{value}"
    return value


def _is_number(text: str) -> bool:
    try:
        float(text.split(" ", 1)[0])
    except ValueError:
        return False
    return True


class _Echo:
    """A file-like object for csv.writer that hands each written line back."""

    def write(self, value: str) -> str:
        return value


def csv_stream(rows: Iterable[list]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([csv_text(value) for value in row])


def xlsx_stream(rows: Iterable[list], title: str = "") -> Iterator[bytes]:
    """The rows as one worksheet; the file is written to disk, then streamed in blocks."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=_sheet_title(title))

    def cell(value: Any) -> Any:
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = timezone.localtime(value).replace(tzinfo=None)  # Excel has no time zones
        if not isinstance(value, str):
            return value
        text = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
        text.data_type = "s"  # never a formula, whatever the text starts with
        return text

    for row in rows:
        sheet.append([cell(value) for value in row])
    with tempfile.TemporaryFile() as file:
        workbook.save(file)
        file.seek(0)
        while block := file.read(FILE_BLOCK):
            yield block


def _sheet_title(title: str) -> str:
    cleaned = "".join(c for c in title if c not in "[]:*?/\\")[:31]
    return cleaned or "Sheet1"


def download_response(
    rows: Callable[[], Iterator[list]], fmt: str, filename: str, title: str = ""
) -> StreamingHttpResponse:
    """A streamed CSV or XLSX attachment named `filename` (without extension)."""
    content_type, _label = FORMATS[fmt]
    produced = in_request_locale(rows)
    body = csv_stream(produced) if fmt == "csv" else xlsx_stream(produced, title)
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response
