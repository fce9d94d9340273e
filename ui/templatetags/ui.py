"""Template helpers of the shared page pieces."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.core.paginator import Page
from django.http import QueryDict

register = template.Library()

# Parameters that never carry over to another page of the same list.
_DROPPED = ("export",)


@register.simple_tag(takes_context=True)
def page_url(context: template.Context, parameter: str, number: Any) -> str:
    """`?…` for page `number` of the list: every other parameter (filters, search, sort)
    stays as it is."""
    request = context.get("request")
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    for name in _DROPPED:
        params.pop(name, None)
    params[parameter] = number
    return f"?{params.urlencode()}"


@register.filter
def page_range(page: Page) -> Iterable[Any]:
    """The page numbers around the current page, with the paginator's ellipsis between."""
    return page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)


@register.simple_tag(takes_context=True)
def table_rows(context: template.Context, table: Any) -> str:
    """The rows of a django-tables2 table's page (ui.cells.render_rows)."""
    from ui.cells import render_rows

    return render_rows(table, context)
