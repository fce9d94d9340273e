"""Forms of Account → Company (guide §5.1): add a company, edit its information."""

from __future__ import annotations

from functools import partial

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from accounts.models import Company, CompanyType, User
from accounts.services import ALLOWED_SUPERIOR_TYPES, check_superior
from accounts.stored_files import StoredImageField
from accounts.validators import validate_display_name
from ui.forms import StyledFormMixin

ADDABLE_TYPES = [
    (CompanyType.DISTRIBUTOR.value, CompanyType.DISTRIBUTOR.label),
    (CompanyType.INSTALLER.value, CompanyType.INSTALLER.label),
]
EM_SPACE = "\u2003"


class PreparedFormMixin:
    """Calls `prepare(**context)` as soon as the fields exist, so every form scopes its
    querysets and choices in one place. `context_kwargs` names the constructor keywords handed
    to prepare().
    """

    context_kwargs: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs) -> None:
        context = {name: kwargs.pop(name) for name in self.context_kwargs}
        super().__init__(*args, **kwargs)
        self.prepare(**context)

    def prepare(self, **context) -> None:
        pass


def _model_field(name: str, **kwargs) -> forms.Field:
    """The form field Company declares, so labels and lengths live in the model only."""
    return Company._meta.get_field(name).formfield(**kwargs)


class CompanySearchForm(StyledFormMixin, forms.Form):
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=120,
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": _("Search by company name"),
                "autocomplete": "off",
            }
        ),
    )


class CompanyAddForm(StyledFormMixin, PreparedFormMixin, forms.Form):
    """Company type, superior, name, country and description (guide §5.1.1).

    The superior is chosen among the companies the user can see (owner companies excluded), so
    a foreign id posted by hand is simply not a valid choice.
    """

    type = forms.ChoiceField(
        label=_("Company type"), choices=ADDABLE_TYPES, widget=forms.RadioSelect
    )
    superior = forms.ModelChoiceField(
        label=_("Superior"), queryset=Company.objects.none(), empty_label=None
    )
    name = _model_field("name", validators=[validate_display_name])
    country = _model_field("country")
    description = _model_field("description", required=False)

    context_kwargs = ("user",)

    def prepare(self, *, user: User) -> None:
        superiors = Company.objects.visible_to(user).exclude(type=CompanyType.OWNER)
        self.fields["superior"].queryset = superiors.order_by("path")
        top = min((c.depth for c in superiors.only("path")[:1]), default=0)
        self.fields["superior"].label_from_instance = partial(_indented_name, top=top)
        # Offer only the types that fit under some company the user can choose: an installer
        # company adds installers only.
        available = set(superiors.order_by().values_list("type", flat=True).distinct())
        self.fields["type"].choices = [
            (value, label)
            for value, label in ADDABLE_TYPES
            if ALLOWED_SUPERIOR_TYPES[value] & available
        ]
        self.fields["description"].widget.attrs["rows"] = 3
        if not self.is_bound and user.company_id:
            own = user.company
            self.initial.setdefault("country", own.country.code)
            if own.type != CompanyType.OWNER:
                self.initial.setdefault("superior", own.pk)
        if not self.is_bound and self.fields["type"].choices:
            self.initial.setdefault("type", self.fields["type"].choices[0][0])

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("type") and cleaned.get("superior"):
            try:
                check_superior(cleaned["type"], cleaned["superior"])
            except ValidationError as error:
                self.add_error(None, error)
        return cleaned


class LogoField(StoredImageField):
    """A company logo: PNG, JPEG, GIF or WebP of at most LOGO_MAX_BYTES, stored re-encoded
    without metadata under a random name (accounts/stored_files.py)."""

    max_bytes_setting = "LOGO_MAX_BYTES"
    stored_side = 1024
    default_error_messages = {
        "file_too_large": _("The logo is too large (%(size)s); the limit is %(limit)s."),
        "image_format": _("Please upload a PNG, JPEG, GIF or WebP image."),
    }


class CompanyEditForm(StyledFormMixin, PreparedFormMixin, forms.Form):
    """Name, country/region, description, address and logo (guide §5.1.2)."""

    name = _model_field("name", validators=[validate_display_name])
    country = _model_field("country")
    address = _model_field("address", required=False)
    description = _model_field("description", required=False)
    logo = LogoField(
        label=_("Logo"),
        required=False,
        widget=forms.FileInput(attrs={"accept": "image/png,image/jpeg,image/gif,image/webp"}),
    )
    remove_logo = forms.BooleanField(label=_("Remove the current logo"), required=False)

    context_kwargs = ("company",)

    def prepare(self, *, company: Company) -> None:
        self.company = company
        for name in ("name", "address", "description"):
            self.initial.setdefault(name, getattr(company, name))
        self.initial.setdefault("country", company.country.code)
        self.fields["description"].widget.attrs["rows"] = 3
        self.fields["logo"].help_text = _("PNG, JPEG, GIF or WebP, at most %(size)s.") % {
            "size": filesizeformat(settings.LOGO_MAX_BYTES)
        }
        if not company.logo:
            del self.fields["remove_logo"]

    def changes(self) -> dict:
        """The keyword arguments for services.update_company."""
        data = {
            key: self.cleaned_data[key] for key in ("name", "country", "address", "description")
        }
        if self.cleaned_data.get("logo"):
            data["logo"] = self.cleaned_data["logo"]
        elif self.cleaned_data.get("remove_logo"):
            data["logo"] = None
        return data


def _indented_name(company: Company, *, top: int) -> str:
    """Show the tree in the superior dropdown: one em space of indent per level."""
    indent = EM_SPACE * max(company.depth - top, 0)
    return f"{indent}{company.name} ({company.get_type_display()})"
