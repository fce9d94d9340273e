"""The guide's password policy: 6–18 characters with upper case, lower case, digit and symbol."""

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

MIN_LENGTH = 6
MAX_LENGTH = 18


class PortalPasswordPolicy:
    def validate(self, password: str, user=None) -> None:
        problems = []
        if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
            problems.append(
                _("The password must be %(min)d to %(max)d characters long.")
                % {"min": MIN_LENGTH, "max": MAX_LENGTH}
            )
        if not re.search(r"[A-Z]", password):
            problems.append(_("The password must contain an upper-case letter."))
        if not re.search(r"[a-z]", password):
            problems.append(_("The password must contain a lower-case letter."))
        if not re.search(r"\d", password):
            problems.append(_("The password must contain a digit."))
        if not re.search(r"[^A-Za-z0-9]", password):
            problems.append(_("The password must contain a special character."))
        if problems:
            raise ValidationError(problems, code="password_policy")

    def get_help_text(self) -> str:
        return _(
            "6 to 18 characters, with upper-case and lower-case letters, digits and special "
            "characters."
        )
