"""Forms of the signed-out pages: sign in, registration, forgotten password, and the choice of
a new password after signing in with a temporary one (guide §2)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import translation
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _
from django_countries import countries

from accounts import codes
from accounts.models import (
    NORTH_AMERICA,
    AuditAction,
    CodePurpose,
    CompanyType,
    User,
    normalize_email,
)
from accounts.passwords import PortalPasswordPolicy
from accounts.profile_services import change_password
from accounts.registration import (
    EUROPE,
    SELF_REGISTERING_TYPES,
    email_is_registered,
    register_account,
    superior_for_access_code,
)
from accounts.validators import validate_display_name
from ui.forms import StyledFormMixin

EMAIL_MAX_LENGTH = User._meta.get_field("email").max_length
ACCOUNT_TYPE_CHOICES = [(value, CompanyType(value).label) for value in SELF_REGISTERING_TYPES]
DUPLICATE_EMAIL = _("An account with this email already exists. Sign in or reset your password.")


def region_choices() -> list:
    """The countries the portal serves, grouped as the guide's two deployments."""

    def group(codes_: frozenset[str]) -> list[tuple[str, str]]:
        return sorted(((code, countries.name(code)) for code in codes_), key=lambda c: c[1])

    return [
        ("", _("Please select")),
        (_("Europe"), group(EUROPE)),
        (_("North America"), group(NORTH_AMERICA)),
    ]


def _policy_help_text() -> str:
    return PortalPasswordPolicy().get_help_text()


# Lazy, and on the declared fields: StyledFormMixin cleans bound forms inside __init__, so
# labels and help texts changed after super().__init__() would not show on a re-rendered form.
POLICY_HELP_TEXT = lazy(_policy_help_text, str)()


def password_field(
    label, *, placeholder=None, help_text="", autocomplete: str = "new-password"
) -> forms.CharField:
    attrs = {"autocomplete": autocomplete}
    if placeholder:
        attrs["placeholder"] = placeholder
    return forms.CharField(
        label=label, strip=False, help_text=help_text, widget=forms.PasswordInput(attrs=attrs)
    )


def code_field() -> forms.CharField:
    return forms.CharField(
        label=_("Code"),
        max_length=codes.CODE_DIGITS,
        widget=forms.TextInput(
            attrs={
                "inputmode": "numeric",
                "autocomplete": "one-time-code",
                "placeholder": _("Verification code"),
            }
        ),
    )


class CodeCheckMixin:
    """Check the emailed code in clean(), so a wrong code is a form error on `code`."""

    def check_code(self, email: str, purpose: str, field: str = "code") -> None:
        code = self.cleaned_data.get(field)
        if not email or not code:
            return
        try:
            codes.verify_code(email, purpose, code)
        except codes.CodeError as error:
            self.add_error(field, error.message)


class PasswordPairMixin:
    """A new password and its confirmation: equal, and within the password policy."""

    first = "password1"
    second = "password2"

    def check_passwords(self, user: User) -> None:
        password = self.cleaned_data.get(self.first)
        confirmation = self.cleaned_data.get(self.second)
        if password and confirmation and password != confirmation:
            self.add_error(self.second, _("The two passwords do not match."))
            return
        if password:
            try:
                validate_password(password, user)
            except ValidationError as error:
                self.add_error(self.first, error)


class EmailAuthenticationForm(StyledFormMixin, AuthenticationForm):
    username = forms.EmailField(
        max_length=EMAIL_MAX_LENGTH,
        label=_("Email"),
        widget=forms.EmailInput(
            attrs={"autofocus": True, "autocomplete": "email", "placeholder": _("Enter email")}
        ),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(
            attrs={"autocomplete": "current-password", "placeholder": _("Password")}
        ),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _("The email or password is incorrect."),
        "inactive": _("This account has been deactivated."),
    }

    def get_invalid_login_error(self) -> ValidationError:
        return ValidationError(self.error_messages["invalid_login"], code="invalid_login")

    def clean_username(self) -> str:
        # Normalised before authenticate(), so that django-axes counts failures per address
        # whatever its spelling.
        return normalize_email(self.cleaned_data["username"])


class AccountTypeForm(StyledFormMixin, forms.Form):
    account_type = forms.ChoiceField(
        label=_("Account type"),
        choices=ACCOUNT_TYPE_CHOICES,
        widget=forms.RadioSelect,
        error_messages={"required": _("Please choose an account type.")},
    )


class RegistrationForm(CodeCheckMixin, PasswordPairMixin, StyledFormMixin, forms.Form):
    """Guide Table 2-1."""

    company_name = forms.CharField(
        label=_("Company name"),
        max_length=120,
        validators=[validate_display_name],
        widget=forms.TextInput(attrs={"placeholder": _("Enter company name")}),
    )
    country = forms.ChoiceField(label=_("Region"), choices=region_choices)
    email = forms.EmailField(
        max_length=EMAIL_MAX_LENGTH,
        label=_("Email"),
        widget=forms.EmailInput(attrs={"placeholder": _("Enter email"), "autocomplete": "email"}),
    )
    password1 = password_field(
        _("Password"), placeholder=_("New password"), help_text=POLICY_HELP_TEXT
    )
    password2 = password_field(_("Confirm password"), placeholder=_("Confirm password"))
    code = code_field()
    access_code = forms.CharField(
        label=_("Access code"),
        max_length=16,
        widget=forms.TextInput(attrs={"placeholder": _("Access code"), "autocomplete": "off"}),
        help_text=_(
            "The organisational code of your superior service provider: ask your distributor or "
            "installer for it. Your superior can then manage the sites of your company."
        ),
    )
    accept_terms = forms.BooleanField(
        label=_("I accept the Terms of Use and have read the Privacy Policy"),
        error_messages={"required": _("Please accept the Terms of Use and the Privacy Policy.")},
    )

    def __init__(self, *args, account_type: str, **kwargs) -> None:
        self.account_type = account_type  # before super(): StyledFormMixin cleans bound forms
        super().__init__(*args, **kwargs)

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])

    def clean_access_code(self) -> str:
        access_code = self.cleaned_data["access_code"].strip().upper()
        superior_for_access_code(self.account_type, access_code)
        return access_code

    def clean(self) -> dict:
        cleaned = super().clean()
        email = cleaned.get("email")
        self.check_passwords(User(email=email or "", username=cleaned.get("company_name", "")))
        self.check_code(email, CodePurpose.REGISTER)
        if email and "code" not in self.errors and email_is_registered(email):
            # Only after the code: an address with an account gets no code, only a notice,
            # so this tells nothing to someone who does not read that inbox.
            self.add_error("email", ValidationError(DUPLICATE_EMAIL, code="duplicate_email"))
        return cleaned

    def save(self) -> User:
        """Create the company and its first user, using up the code in the same transaction.

        Raises ValidationError (by field) or codes.CodeError when something changed since
        clean(), e.g. a concurrent registration of the same email.
        """
        data = self.cleaned_data
        with transaction.atomic():
            codes.consume(data["email"], CodePurpose.REGISTER, data["code"])
            return register_account(
                account_type=self.account_type,
                company_name=data["company_name"],
                country=data["country"],
                email=data["email"],
                password=data["password1"],
                access_code=data["access_code"],
                language=translation.get_language(),
            )


class SendCodeForm(forms.Form):
    """The data of a "Send" button: which code, and where to."""

    purpose = forms.ChoiceField(choices=CodePurpose.choices)
    email = forms.EmailField(required=False, max_length=EMAIL_MAX_LENGTH)

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])


class ForgotPasswordForm(CodeCheckMixin, PasswordPairMixin, StyledFormMixin, forms.Form):
    """Guide Table 2-2. Never tells whether an email has an account."""

    first = "new_password1"
    second = "new_password2"

    email = forms.EmailField(
        max_length=EMAIL_MAX_LENGTH,
        label=_("Email"),
        widget=forms.EmailInput(attrs={"placeholder": _("Enter email"), "autocomplete": "email"}),
    )
    code = code_field()
    new_password1 = password_field(_("New password"), help_text=POLICY_HELP_TEXT)
    new_password2 = password_field(_("Confirm password"))

    def __init__(self, *args, **kwargs) -> None:
        self.user: User | None = None  # before super(): StyledFormMixin cleans bound forms
        super().__init__(*args, **kwargs)

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])

    def clean(self) -> dict:
        cleaned = super().clean()
        email = cleaned.get("email")
        if email:
            self.user = User.objects.filter(email=email, is_active=True).first()
        self.check_passwords(self.user or User(email=email or ""))
        self.check_code(email, CodePurpose.RESET_PASSWORD)
        return cleaned

    def save(self) -> User | None:
        data = self.cleaned_data
        with transaction.atomic():
            codes.consume(data["email"], CodePurpose.RESET_PASSWORD, data["code"])
            if self.user is None:  # a decoy code was guessed: there is nothing to reset
                return None
            # Proven by the emailed code: the user acts on their own account.
            change_password(
                self.user,
                acting_user=self.user,
                new_password=data["new_password1"],
                action=AuditAction.PASSWORD_RECOVERED,
            )
        return self.user


class NewPasswordForm(StyledFormMixin, SetPasswordForm):
    """The password chosen right after signing in with a temporary one: no old password."""

    new_password1 = password_field(_("New password"), help_text=POLICY_HELP_TEXT)
    new_password2 = password_field(_("Confirm password"))

    def save(self, commit: bool = True) -> User:
        if not commit:
            raise ValueError("the password is saved by profile_services.change_password")
        return change_password(
            self.user, acting_user=self.user, new_password=self.cleaned_data["new_password1"]
        )
