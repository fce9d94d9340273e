"""Names that people and companies give themselves and each other: shown on every page, in
lists, emails and audit records, so they must be visible text."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Control (Cc), format (Cf: zero-width characters, bidirectional controls such as U+202E
# RIGHT-TO-LEFT OVERRIDE), private-use (Co), surrogate (Cs), line and paragraph separators (Zl,
# Zp): invisible, or able to disguise a name or reorder the text shown around it.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
# ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER belong to the spelling of Persian and Indic names:
# allowed between two letters, never on their own.
JOINERS = frozenset({"\u200c", "\u200d"})


def validate_display_name(value: str) -> None:
    """Refuse a name that is blank or holds an invisible or control character."""
    if not value.strip():
        raise ValidationError(_("Please enter a name."), code="blank_name")
    for index, char in enumerate(value):
        if unicodedata.category(char) not in REFUSED_CATEGORIES:
            continue
        if char in JOINERS and _between_letters(value, index):
            continue
        raise ValidationError(
            _(
                "A name cannot contain invisible, control or text-direction characters "
                "(found %(code_point)s)."
            ),
            code="invisible_character",
            params={"code_point": f"U+{ord(char):04X}"},
        )


def _between_letters(value: str, index: int) -> bool:
    if index == 0 or index == len(value) - 1:
        return False
    return all(unicodedata.category(value[i])[0] in "LM" for i in (index - 1, index + 1))
