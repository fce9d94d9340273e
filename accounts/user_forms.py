"""Forms of Account → User management (guide §5.2): add, edit, select role."""

from __future__ import annotations

from django import forms
from django.contrib.auth.password_validation import (
    password_validators_help_texts,
    validate_password,
)
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.company_forms import PreparedFormMixin
from accounts.models import Company, Role, User, normalize_email
from accounts.permissions import assignable_roles
from accounts.validators import validate_display_name
from ui.forms import StyledFormMixin

# What each role may do, in the words of guide §2.1.
ROLE_DESCRIPTIONS = {
    Role.ADMIN: _(
        "Merchant management, site management, gateway management, inverter management, "
        "upgrade management and maintenance services."
    ),
    Role.OM: _(
        "Merchant management (cannot delete merchants or change roles), site, gateway, "
        "inverter and upgrade management, and maintenance services."
    ),
    Role.OWNER: _("Views site, gateway and inverter information."),
}
ROLE_ICONS = {Role.ADMIN: "shield-lock", Role.OM: "tools", Role.OWNER: "house"}


class UserSearchForm(StyledFormMixin, forms.Form):
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=120,
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": _("Search by username or email"),
                "autocomplete": "off",
            }
        ),
    )


def _model_field(name: str, **kwargs) -> forms.Field:
    return User._meta.get_field(name).formfield(**kwargs)


def _supervisor_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        label=_("Supervisor"),
        queryset=User.objects.none(),
        required=False,
        empty_label=_("— None —"),
    )


def _role_choices(user: User) -> list[tuple[str, str]]:
    allowed = assignable_roles(user)
    return [(value, label) for value, label in Role.choices if value in allowed]


class RoleChoicesMixin:
    """A `role` radio limited to the roles the signed-in user may hand out."""

    def role_options(self) -> list[dict]:
        """Radio options with the guide's description of each role, for the template."""
        field = self["role"]
        return [
            {
                "value": value,
                "label": label,
                "description": ROLE_DESCRIPTIONS.get(value, ""),
                "icon": ROLE_ICONS.get(value, "person"),
                "checked": str(field.value()) == value,
                "id": f"{field.auto_id}_{index}",
            }
            for index, (value, label) in enumerate(self.fields["role"].choices)
        ]


class UserAddForm(RoleChoicesMixin, StyledFormMixin, PreparedFormMixin, forms.Form):
    """Step "Basic information" then step "Assign role" (guide §5.2.1), submitted together."""

    AUTOMATIC = "automatic"
    CUSTOM = "custom"
    STEP_ONE_FIELDS = (
        "username",
        "country",
        "email",
        "supervisor",
        "description",
        "password_mode",
        "password1",
        "password2",
    )

    username = _model_field("username", validators=[validate_display_name])
    country = _model_field("country", required=True)
    email = _model_field("email")
    supervisor = _supervisor_field()
    description = _model_field("description", required=False)
    password_mode = forms.ChoiceField(
        label=_("Set password"),
        choices=[
            (AUTOMATIC, _("Assigned automatically (a temporary password is emailed)")),
            (CUSTOM, _("Custom")),
        ],
        initial=AUTOMATIC,
        widget=forms.RadioSelect,
    )
    password1 = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Confirm password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    role = forms.ChoiceField(label=_("Role"), widget=forms.RadioSelect)

    context_kwargs = ("user", "company")

    def prepare(self, *, user: User, company: Company) -> None:
        self.company = company
        self.fields["supervisor"].queryset = User.objects.visible_to(user).filter(company=company)
        self.fields["role"].choices = _role_choices(user)
        self.fields["password1"].help_text = " ".join(password_validators_help_texts()[:1])
        if not self.is_bound and company.country:
            self.initial.setdefault("country", company.country.code)

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        # Emails are the sign-in, unique over the whole platform, not only what the actor sees.
        if User.objects.filter(email=email).exists():
            raise ValidationError(_("A user with this email address already exists."))
        return email

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password_mode") != self.CUSTOM:
            cleaned["password1"] = cleaned["password2"] = ""
            return cleaned
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if not password1:
            self.add_error("password1", _("Please enter a password."))
        elif password1 != password2:
            self.add_error("password2", _("The two passwords do not match."))
        else:
            candidate = User(
                email=cleaned.get("email", ""),
                username=cleaned.get("username", ""),
                company=self.company,
            )
            try:
                validate_password(password1, user=candidate)
            except ValidationError as error:
                self.add_error("password1", error)
        return cleaned

    @property
    def first_step_has_errors(self) -> bool:
        return any(name in self.errors for name in self.STEP_ONE_FIELDS) or bool(
            self.non_field_errors()
        )

    def service_kwargs(self) -> dict:
        """The keyword arguments for services.create_user."""
        data = self.cleaned_data
        return {
            "company": self.company,
            "email": data["email"],
            "username": data["username"],
            "role": data["role"],
            "country": data["country"],
            "supervisor": data["supervisor"],
            "description": data["description"],
            "password": data["password1"] if data["password_mode"] == self.CUSTOM else None,
        }


class UserEditForm(StyledFormMixin, PreparedFormMixin, forms.Form):
    """Basic information of a user (guide §5.2.2)."""

    username = _model_field("username", validators=[validate_display_name])
    country = _model_field("country", required=False)
    supervisor = _supervisor_field()
    description = _model_field("description", required=False)

    context_kwargs = ("user", "target")

    def prepare(self, *, user: User, target: User) -> None:
        self.initial.setdefault("username", target.username)
        self.initial.setdefault("country", target.country.code or "")
        self.initial.setdefault("supervisor", target.supervisor_id)
        self.initial.setdefault("description", target.description)
        self.fields["supervisor"].queryset = (
            User.objects.visible_to(user).filter(company_id=target.company_id).exclude(pk=target.pk)
        )


class UserRoleForm(RoleChoicesMixin, StyledFormMixin, PreparedFormMixin, forms.Form):
    """Select role (guide §5.2.2): only the roles the signed-in user may hand out."""

    role = forms.ChoiceField(label=_("Role"), widget=forms.RadioSelect)

    context_kwargs = ("user", "target")

    def prepare(self, *, user: User, target: User) -> None:
        self.initial.setdefault("role", target.role)
        self.fields["role"].choices = _role_choices(user)
