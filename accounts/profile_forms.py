"""Forms of User configuration (guide §3): profile, email, password, deregistration."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts import reauth
from accounts.auth_forms import (
    EMAIL_MAX_LENGTH,
    POLICY_HELP_TEXT,
    CodeCheckMixin,
    code_field,
    password_field,
)
from accounts.models import CodePurpose, User, normalize_email
from accounts.registration import email_is_registered
from accounts.stored_files import StoredImageField
from accounts.time_zones import TIME_ZONE_AREAS
from accounts.validators import validate_display_name
from ui.forms import StyledFormMixin


@cache
def _zones_by_area() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    zones = zoneinfo.available_timezones()
    return tuple(
        (
            area,
            tuple(
                (zone, zone.split("/", 1)[1].replace("_", " "))
                for zone in sorted(zones)
                if zone.startswith(f"{area}/")
            ),
        )
        for area in TIME_ZONE_AREAS
    )


def time_zone_choices() -> list:
    return [("UTC", "UTC"), *_zones_by_area()]


class AvatarField(StoredImageField):
    """An avatar: a JPEG, PNG, GIF or WebP image of at most AVATAR_MAX_BYTES and 4096 pixels a
    side, stored re-encoded without metadata under a random name (accounts/stored_files.py)."""

    max_bytes_setting = "AVATAR_MAX_BYTES"
    stored_side = 1024


def _avatar_help_text() -> str:
    return gettext("JPEG, PNG, GIF or WebP, at most %(max)s.") % {
        "max": filesizeformat(settings.AVATAR_MAX_BYTES)
    }


class ProfileForm(StyledFormMixin, forms.ModelForm):
    """Guide §3.1: avatar, username, currency unit (and language and time zone)."""

    avatar = AvatarField(
        label=_("Avatar"),
        required=False,
        help_text=lazy(_avatar_help_text, str)(),
        widget=forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"}),
    )
    remove_avatar = forms.BooleanField(label=_("Remove the current picture"), required=False)
    time_zone = forms.ChoiceField(label=_("Time zone"), choices=time_zone_choices)

    class Meta:
        model = User
        fields = ["avatar", "username", "currency", "language", "time_zone"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs["placeholder"] = _("Enter user name")
        self.fields["username"].validators.append(validate_display_name)

    def changes(self) -> dict:
        """The keyword arguments for profile_services.update_profile: a new picture wins over
        "remove"."""
        data = {
            name: self.cleaned_data[name]
            for name in ("username", "currency", "language", "time_zone")
        }
        if self.files.get("avatar"):
            data["avatar"] = self.cleaned_data["avatar"]
        elif self.cleaned_data.get("remove_avatar"):
            data["avatar"] = None
        return data


WRONG_CURRENT_PASSWORD = _("Your current password is incorrect.")


def current_password_field() -> forms.CharField:
    return password_field(
        _("Current password"),
        placeholder=_("Enter your current password"),
        autocomplete="current-password",
    )


class CurrentPasswordMixin:
    """A `password` field for the signed-in user's current password, checked like a sign-in
    (accounts/reauth.py): wrong ones count towards the lockout."""

    def __init__(self, *args, request, **kwargs) -> None:
        self.request = request  # before super(): StyledFormMixin cleans bound forms
        super().__init__(*args, **kwargs)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not reauth.check_current_password(self.request, password):
            raise ValidationError(WRONG_CURRENT_PASSWORD, code="password_incorrect")
        return password


class VerifyCurrentEmailForm(CurrentPasswordMixin, CodeCheckMixin, StyledFormMixin, forms.Form):
    """Guide §3.2 step 3–4: the code sent to the current address, and the current password."""

    code = code_field()
    password = current_password_field()

    def __init__(self, *args, user: User, **kwargs) -> None:
        self.user = user  # before super(): StyledFormMixin cleans bound forms
        super().__init__(*args, **kwargs)

    def clean(self) -> dict:
        cleaned = super().clean()
        self.check_code(self.user.email, CodePurpose.EMAIL_OLD)
        return cleaned


class NewEmailForm(CodeCheckMixin, StyledFormMixin, forms.Form):
    """Guide §3.2 step 5–6: the new address and the code sent to it."""

    # Named "email" like the other forms, so the "Send" button posts it as is.
    email = forms.EmailField(
        max_length=EMAIL_MAX_LENGTH,
        label=_("New email"),
        widget=forms.EmailInput(
            attrs={"placeholder": _("Enter new email"), "autocomplete": "email"}
        ),
    )
    code = code_field()

    def __init__(self, *args, user: User, **kwargs) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        if email == self.user.email:
            raise ValidationError(_("This is already your email address."), code="same_email")
        if email_is_registered(email):
            raise ValidationError(
                _("Another account already uses this email address."), code="duplicate_email"
            )
        return email

    def clean(self) -> dict:
        cleaned = super().clean()
        self.check_code(cleaned.get("email"), CodePurpose.EMAIL_NEW)
        return cleaned


class PortalPasswordChangeForm(StyledFormMixin, PasswordChangeForm):
    """Guide §3.3: old password, new password, repeat."""

    old_password = password_field(
        _("Old password"), placeholder=_("Enter old password"), autocomplete="current-password"
    )
    new_password1 = password_field(
        _("New password"), placeholder=_("Your new password"), help_text=POLICY_HELP_TEXT
    )
    new_password2 = password_field(_("Repeat password"), placeholder=_("Enter new password again"))

    def __init__(self, *args, request, **kwargs) -> None:
        self.request = request
        super().__init__(*args, **kwargs)

    def clean_old_password(self) -> str:
        old_password = self.cleaned_data["old_password"]
        if not reauth.check_current_password(self.request, old_password):
            raise ValidationError(
                self.error_messages["password_incorrect"], code="password_incorrect"
            )
        return old_password


class DeregisterForm(CurrentPasswordMixin, StyledFormMixin, forms.Form):
    """Guide §3.4: the confirmation below the Account Cancellation Notice, and the current
    password."""

    password = current_password_field()
    confirm = forms.BooleanField(
        label=_(
            "By applying for cancellation, you voluntarily waive all rights within the account "
            "and agree to withdraw."
        ),
        error_messages={"required": _("Please tick the box to confirm the cancellation.")},
    )
