"""A table column's cell for any record, computed as django-tables2 computes it, but with the
per-column work done once per table instead of once per cell.

django-tables2 looks up the signature of the cell function (`render_<name>`, `value_<name>`)
and the model field's choice labels for every cell, and the page template resolves each
column's `<td>` attributes per cell too. That made a 100,000-row download take minutes and a
20-row page spend more time in its cells than in its queries. `CellReader` does those lookups
once; `render_rows` draws a page's rows with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.template import Context
from django.template.base import render_value_in_context
from django.templatetags.l10n import localize, unlocalize
from django.utils.encoding import force_str
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django_tables2 import Column
from django_tables2.rows import BoundRow
from django_tables2.utils import A, signature


class CellReader:
    """One column's cell for any record: what the page shows (`render=True`: `render_<name>`
    or the column's render, the column's default for an empty value, its link) or what a
    download holds (`value_<name>`, else the render without markup; None when empty).

    Values are read like `BoundRow`: a choice field gives its display label, a column whose
    accessor does not resolve gives None.
    """

    def __init__(self, table: Any, bound_column: Any, *, render: bool = False) -> None:
        self.table = table
        self.bound_column = bound_column
        self.column = bound_column.column
        self.accessor = A(bound_column.accessor)
        self.rendering = render
        if render:
            self.function = bound_column.render
            self.default = bound_column.default
            self.link = bound_column.link
        else:
            self.function = bound_column.value
            if self.function == self.column.value and type(self.column).value is Column.value:
                # Column.value only calls render, looking up render's signature every time.
                self.function = self.column.render
            self.default = None
            self.link = None
        names, catch_all = signature(self.function)
        self.wanted = None if catch_all else frozenset(names)
        self.labels: dict[Any, dict[Any, str]] = {}  # model → raw value → choice label

    def __call__(self, record: Any, bound_row: BoundRow | None = None) -> Any:
        value = self.value(record)
        if value in self.column.empty_values:
            return self.default
        arguments = {
            "value": value,
            "record": record,
            "column": self.column,
            "bound_column": self.bound_column,
            "bound_row": bound_row,
            "table": self.table,
        }
        if bound_row is None and (self.wanted is None or "bound_row" in self.wanted):
            bound_row = BoundRow(record, table=self.table)
            arguments["bound_row"] = bound_row
        if self.wanted is not None:
            if not self.wanted <= arguments.keys():
                return self._as_django_tables2(record, bound_row)
            content = self.function(**{name: arguments[name] for name in self.wanted})
        else:
            content = self.function(**arguments)
        if self.link:
            return self.link(content, **arguments)
        return content

    def _as_django_tables2(self, record: Any, bound_row: BoundRow | None) -> Any:
        row = bound_row or BoundRow(record, table=self.table)
        name = self.bound_column.name
        return row.get_cell(name) if self.rendering else row.get_cell_value(name)

    def value(self, record: Any) -> Any:
        penultimate, remainder = self.accessor.penultimate(record)
        if isinstance(penultimate, models.Model):
            try:
                field = self.accessor.get_field(record)
            except FieldDoesNotExist:
                field = None
            if field is not None and getattr(field, "choices", None):
                raw = getattr(penultimate, field.attname)
                labels = self.labels.get(type(penultimate))
                if labels is None:
                    labels = {
                        key: force_str(label, strings_only=True) for key, label in field.flatchoices
                    }
                    self.labels[type(penultimate)] = labels
                return labels.get(raw, raw)
        try:
            return self.accessor.resolve(record)
        except Exception:  # noqa: BLE001 - a column without a field, as django-tables2 allows
            return None


def _fixed_td_attrs(table: Any, bound_column: Any) -> str | None:
    """The column's `<td>` attributes when they are the same for every row (no callables);
    None when they depend on the row."""
    attrs = {**table.attrs, **bound_column.column.attrs}
    cell = attrs.get("td", attrs.get("cell", {}))
    if any(callable(value) for value in cell.values()):
        return None
    bound_column.current_record = bound_column.current_value = None
    return bound_column.attrs["td"].as_html()


def render_rows(table: Any, context: Context) -> SafeString:
    """The `<tr>` rows of the table's current page, as django-tables2's template draws them
    (`<td>` attributes, `localize` of the column, the cell escaped unless it is safe)."""
    columns = list(table.columns)
    readers = [CellReader(table, column, render=True) for column in columns]
    td_attrs = [_fixed_td_attrs(table, column) for column in columns]
    return mark_safe("".join(_rows(table, context, columns, readers, td_attrs)))  # noqa: S308 - escaped below


def _rows(table, context, columns, readers, td_attrs) -> Iterator[str]:
    for row in table.paginated_rows:
        yield f"<tr {row.attrs.as_html()}>"
        for column, reader, attrs in zip(columns, readers, td_attrs, strict=True):
            cell = reader(row.record, row)
            if attrs is None:
                column.current_value, column.current_record = cell, row.record
                attrs = column.attrs["td"].as_html()
            if column.localize is None:
                text = render_value_in_context(cell, context)
            else:
                text = conditional_escape(localize(cell) if column.localize else unlocalize(cell))
            yield f"<td {attrs}>{text}</td>"
        yield "</tr>"
