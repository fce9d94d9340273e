"""Values from the query string, parsed in one place, so that odd input (null bytes, digits of
other scripts, huge numbers) is a 4xx or a form error and never reaches the database raw.

Views read the query string through a form (a search box, a FilterSet) or through these
helpers; nothing else calls `int()` on `request.GET` or filters with a raw value.
"""

from __future__ import annotations

import re

from django import forms
from django.utils.translation import gettext_lazy as _

__all__ = ["SEARCH_MAX_LENGTH", "SearchForm", "ascii_int", "positive_int"]

SEARCH_MAX_LENGTH = 120
# At most 18 ASCII digits: every id and page number fits, and int() never sees a huge string.
_ASCII_NUMBER = re.compile(r"[0-9]{1,18}")


def ascii_int(value: str | None) -> int | None:
    """A whole number written with ASCII digits only (no sign, space, `²` or `٣`), else None."""
    if value is None or not _ASCII_NUMBER.fullmatch(value):
        return None
    return int(value)


def positive_int(value: str | None, default: int, maximum: int | None = None) -> int:
    """A positive number from the query string (capped at `maximum`), else `default`."""
    number = ascii_int(value)
    if number is None or number < 1:
        return default
    return min(number, maximum) if maximum else number


class SearchForm(forms.Form):
    """The `?q=` of a list: optional text; a null byte or an overlong text is a form error."""

    q = forms.CharField(label=_("Search"), required=False, max_length=SEARCH_MAX_LENGTH)
