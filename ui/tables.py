"""Tables whose columns a user chooses (the guide's "Optional") and downloads.

A page's table subclasses `BaseTable` and declares, besides django-tables2's `Meta.fields`:

    class Meta(BaseTable.Meta):
        model = Site
        fields = ("name", "status", "region", "capacity", "owner", "created")
        default_columns = ("name", "status", "capacity")  # until the user chooses
        required_columns = ("name",)                       # always shown, not in the chooser
        download_only = ("id",)                            # never on the page, always downloaded

Every other column is optional. What a user chose is stored per user and table
(`ui.models.TablePreference`, named by `Meta.preference_key`, default the class name).
Downloads take the visible columns (less those with `exclude_from_export=True`, such as a
row's "…" menu) plus `download_only`; a cell's text is the column's `value_<name>` method when
the table has one, else the column's value without HTML.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import django_tables2 as tables
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django_tables2.utils import Sequence

from ui.models import TablePreference


@dataclass(frozen=True)
class ColumnOption:
    """One column as the chooser offers it."""

    name: str
    label: str
    required: bool
    default: bool


class BaseTable(tables.Table):
    """A django-tables2 table with default, required, optional and download-only columns."""

    class Meta:
        template_name = "ui/table.html"
        attrs = {"class": "table table-hover align-middle mb-0"}

    def __init__(
        self,
        data: Any,
        *args: Any,
        htmx_target: str = "",
        columns: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data, *args, **kwargs)
        self.htmx_target = htmx_target
        if htmx_target:
            # Sorting swaps only the element that holds the table (see ui/table.html).
            self.attrs["thead"].update(
                {"hx-boost": "true", "hx-target": f"#{htmx_target}", "hx-swap": "outerHTML"}
            )
        self.show_only(self.default_columns() if columns is None else columns)

    # --- Declared options ---------------------------------------------------------------------

    @classmethod
    def option(cls, name: str, default: Any) -> Any:
        return getattr(cls.Meta, name, default)

    @classmethod
    def preference_key(cls) -> str:
        return cls.option("preference_key", cls.__name__)

    @classmethod
    def download_only(cls) -> tuple[str, ...]:
        return tuple(cls.option("download_only", ()))

    @classmethod
    def page_columns(cls) -> list[str]:
        """Every column that can appear on the page, in the table's order."""
        hidden = set(cls.download_only())
        return [name for name in cls._sequence_of_columns() if name not in hidden]

    @classmethod
    def required_columns(cls) -> tuple[str, ...]:
        names = cls.page_columns()
        return tuple(cls.option("required_columns", names[:1]))

    @classmethod
    def default_columns(cls) -> tuple[str, ...]:
        return tuple(cls.option("default_columns", cls.page_columns()))

    @classmethod
    def optional_columns(cls) -> list[str]:
        required = set(cls.required_columns())
        return [name for name in cls.page_columns() if name not in required]

    @classmethod
    def column_options(cls) -> list[ColumnOption]:
        """The columns in order, with their headers, for the chooser."""
        table = cls._empty()
        required, default = set(cls.required_columns()), set(cls.default_columns())
        return [
            ColumnOption(
                name=name,
                label=str(table.columns[name].verbose_name or name),
                required=name in required,
                default=name in default or name in required,
            )
            for name in cls.page_columns()
        ]

    @classmethod
    def _empty(cls) -> BaseTable:
        model = cls._meta.model
        return cls(model._default_manager.none() if model else [])

    @classmethod
    def _sequence_of_columns(cls) -> list[str]:
        """The declared order, resolved the way django-tables2 does it, without any data."""
        meta = cls._meta
        declared = meta.sequence or ((*meta.fields, "...") if meta.fields is not None else ("...",))
        excluded = set(meta.exclude or ())
        expanded = Sequence(list(declared)).expand(cls.base_columns.keys())
        return [name for name in expanded if name in cls.base_columns and name not in excluded]

    # --- One table ------------------------------------------------------------------------------

    def show_only(self, names: Iterable[str]) -> None:
        """Show the required columns and `names`; hide the others and the download-only ones."""
        wanted = set(names) | set(self.required_columns())
        hidden = set(self.download_only())
        for column in self.columns.iterall():
            if column.name in hidden or column.name not in wanted:
                self.columns.hide(column.name)
        self.visible_columns = [column.name for column in self.columns.iterall() if column.visible]

    def download_columns(self) -> list[tables.columns.BoundColumn]:
        """The columns of a download: the visible ones, then the download-only ones."""
        download_only = set(self.download_only())
        return [
            column
            for column in self.columns.iterall()
            if (column.visible or column.name in download_only)
            and not column.column.exclude_from_export
        ]


# --- Columns and cells that several tables share ------------------------------------------------


def operations_column(template_name: str = "", **kwargs: Any) -> tables.Column:
    """A row's "Operation" column (its "…" menu or buttons): right-aligned, not sortable, never
    downloaded. With `template_name` it renders that template (add `extra_context=` for more
    than `record`); without, the table's `render_operations(record)` draws it."""
    options = {
        "verbose_name": _("Operation"),
        "orderable": False,
        "exclude_from_export": True,
        "attrs": {"th": {"class": "text-end"}, "td": {"class": "text-end"}},
        **kwargs,
    }
    if template_name:
        return tables.TemplateColumn(template_name=template_name, **options)
    return tables.Column(accessor="pk", empty_values=(), **options)


@dataclass(frozen=True)
class MenuAction:
    """One entry of a row's "…" menu: it loads `url` into the page's dialog."""

    url: str
    icon: str  # a bootstrap-icons name without "bi-"
    label: str
    danger: bool = False  # destructive: shown in red
    separated: bool = False  # a divider above it


_MENU_BUTTON = (
    '<div class="dropdown"><button class="btn btn-sm btn-light border" type="button" '
    'data-bs-toggle="dropdown" data-bs-config=\'{{"popperConfig": {{"strategy": '
    '"fixed"}}}}\' aria-expanded="false" aria-label="{}"><i class="bi bi-three-dots" '
    'aria-hidden="true"></i></button><ul class="dropdown-menu dropdown-menu-end shadow-sm">'
)
_MENU_ITEM = (
    '<li><a class="dropdown-item{}" href="{}" hx-get="{}" hx-target="#action-dialog" '
    'hx-swap="innerHTML" data-bs-toggle="modal" data-bs-target="#action-modal">'
    '<i class="bi bi-{} me-2" aria-hidden="true"></i>{}</a></li>'
)
_MENU_DIVIDER = '<li><hr class="dropdown-divider"></li>'


def row_menu(name: Any, actions: Iterable[MenuAction]) -> str:
    """A row's "…" menu, labelled "Operations for `name`": each action opens its confirmation
    or form in the page's dialog (ui/_dialog.html). Built here rather than from a template:
    a list draws one per row."""
    label = _("Operations for %(name)s") % {"name": name}
    parts = [format_html(_MENU_BUTTON, label)]
    for action in actions:
        if action.separated:
            parts.append(_MENU_DIVIDER)
        danger = " text-danger" if action.danger else ""
        parts.append(
            format_html(_MENU_ITEM, danger, action.url, action.url, action.icon, action.label)
        )
    parts.append("</ul></div>")
    return mark_safe("".join(parts))  # noqa: S308 - every part is format_html or a constant


def figure_column(verbose_name: Any, **kwargs: Any) -> tables.Column:
    """A number with its unit: right-aligned, kept on one line."""
    attrs = {"th": {"class": "text-end"}, "td": {"class": "text-nowrap text-end"}}
    return tables.Column(verbose_name=verbose_name, attrs=attrs, **kwargs)


def status_pill(label: Any, tone: str) -> str:
    """A status as a coloured pill (DESIGN §5); `tone` is a Bootstrap colour name."""
    return format_html(
        '<span class="badge rounded-pill text-bg-{} status-pill">{}</span>', tone, label
    )


def country_flag(country: Any) -> str:
    """A country (django-countries) as its flag and code; the name shows on hover."""
    return format_html(
        '<span title="{}"><img src="{}" alt="" class="flag me-1">{}</span>',
        country.name,
        country.flag,
        country.code,
    )


def truncated_text(value: str) -> str:
    """Long text cut to the column's width; the whole text shows on hover."""
    return format_html(
        '<span class="d-inline-block text-truncate align-bottom mw-14rem" title="{}">{}</span>',
        value,
        value,
    )


# --- Remembered choices -------------------------------------------------------------------------


def chosen_columns(user: Any, table_class: type[BaseTable]) -> list[str] | None:
    """The optional columns `user` chose for `table_class`, or None when they never chose.

    Names of columns the table no longer has are dropped.
    """
    if not getattr(user, "is_authenticated", False):
        return None
    stored = (
        TablePreference.objects.filter(user=user, table=table_class.preference_key())
        .values_list("columns", flat=True)
        .first()
    )
    if stored is None:
        return None
    known = set(table_class.optional_columns())
    return [name for name in stored if isinstance(name, str) and name in known]


def choose_columns(user: Any, table_class: type[BaseTable], columns: Iterable[str]) -> None:
    """Remember that `user` wants these optional columns of `table_class`."""
    known = table_class.optional_columns()
    chosen = set(columns)
    TablePreference.objects.update_or_create(
        user=user,
        table=table_class.preference_key(),
        defaults={"columns": [name for name in known if name in chosen]},
    )


def forget_columns(user: Any, table_class: type[BaseTable]) -> None:
    """Back to the table's default columns for `user`."""
    TablePreference.objects.filter(user=user, table=table_class.preference_key()).delete()


def visible_columns(user: Any, table_class: type[BaseTable]) -> tuple[str, ...]:
    """The columns `user` sees: their choice, else the table's defaults."""
    chosen = chosen_columns(user, table_class)
    return table_class.default_columns() if chosen is None else tuple(chosen)


__all__ = [
    "BaseTable",
    "ColumnOption",
    "choose_columns",
    "chosen_columns",
    "forget_columns",
    "visible_columns",
]
