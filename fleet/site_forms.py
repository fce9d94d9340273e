"""Forms of the site list (guide §6.1): the three steps of Create site, Rename and Distribute.

Every choice is scoped to the signed-in user (companies, owners); the rules that a service
enforces anyway (ranges, a bindable gateway, a free email) are checked here too, so that the
message lands on the field of the step where it was typed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import Company, User, normalize_email
from accounts.profile_forms import time_zone_choices
from accounts.validators import validate_display_name
from fleet import services
from fleet.geo import COORDINATE_PLACES
from fleet.regions import REGION_DEFAULTS, region_defaults
from sites.models import Site
from ui.filters import search_input
from ui.forms import StyledFormMixin

__all__ = [
    "REGION_DEFAULTS",
    "AccountStepForm",
    "DistributeForm",
    "GatewayStepForm",
    "OwnerSearchForm",
    "RenameForm",
    "SiteFieldsForm",
    "SiteInfoForm",
]

NO_ACCOUNT, NEW_ACCOUNT, EXISTING_ACCOUNT = "none", "new", "existing"


class CompanyChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Company) -> str:
        return obj.name


class GatewayStepForm(StyledFormMixin, forms.Form):
    """Step 1 (optional): the SN of a gateway to bind to the new site."""

    serial_number = forms.CharField(
        label=_("Gateway SN"),
        required=False,
        max_length=32,
        help_text=_("Optional: the serial number on the gateway's label. You can add it later."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": _("e.g. GW00000001")}),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.gateway = None

    def clean_serial_number(self) -> str:
        serial = self.cleaned_data["serial_number"].strip()
        if serial:
            try:
                self.gateway = services.find_bindable_gateway(serial, acting_user=self.user)
            except ValidationError as error:
                raise ValidationError(error.message_dict["serial_number"]) from error
        return serial


def _model_field(name: str, **kwargs: Any) -> forms.Field:
    """The form field Site declares, so labels, lengths and choices live in the model only."""
    return Site._meta.get_field(name).formfield(**kwargs)


class CoordinateField(forms.DecimalField):
    """Degrees within ±`limit` (a browser hint; `services.check_site_values` refuses the rest),
    rounded to the six decimals a site stores (about 10 cm) instead of refusing finer input."""

    def __init__(self, *, limit: int, **kwargs: Any) -> None:
        attrs = {"step": "any", "inputmode": "decimal", "min": -limit, "max": limit}
        super().__init__(widget=forms.NumberInput(attrs=attrs), **kwargs)

    def clean(self, value: Any) -> Decimal | None:
        number = super().clean(value)
        return None if number is None else number.quantize(COORDINATE_PLACES)


class SiteFieldsForm(StyledFormMixin, forms.Form):
    """The fields of a site (guide §6.1.2's table) and their rules, for Create site (step 2)
    and Edit (§6.2.1). The ranges are `services.check_site_values`'s, so a form and a service
    refuse the same values with the same message."""

    name = _model_field("name", validators=[validate_display_name])
    address = _model_field("address")
    country = _model_field("country", label=_("Region"))
    latitude = CoordinateField(label=_("Latitude"), limit=services.COORDINATE_LIMITS["latitude"])
    longitude = CoordinateField(label=_("Longitude"), limit=services.COORDINATE_LIMITS["longitude"])
    time_zone = forms.ChoiceField(label=_("Time zone"), choices=time_zone_choices)
    site_type = _model_field("site_type")
    on_grid = forms.TypedChoiceField(
        label=_("On-grid"),
        choices=[("true", _("On-grid")), ("false", _("Off-grid"))],
        coerce=lambda value: value == "true",
        initial="true",
    )
    currency = _model_field("currency")
    temperature_unit = _model_field("temperature_unit")
    capacity_kwp = _model_field("capacity_kwp")
    tariff_per_kwh = _model_field("tariff_per_kwh")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("capacity_kwp", "tariff_per_kwh"):
            self.fields[name].widget.attrs.update({"step": "any", "min": "0"})

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        checked = {
            name: data[name]
            for name in services.SITE_FIELD_NAMES
            if name in data and name not in self.errors
        }
        try:
            services.check_site_values(checked)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                self.add_error(field, messages)
        return data

    def site_fields(self) -> dict[str, Any]:
        """The cleaned site fields: `fields` of `services.create_site`, or the changes of
        `services.update_site`."""
        return {name: self.cleaned_data[name] for name in services.SITE_FIELD_NAMES}


class SiteInfoForm(SiteFieldsForm):
    """Create site step 2: the site's fields and the company it belongs to.

    The region suggests time zone, currency, temperature unit and tariff (fleet/regions.py);
    blank coordinates take the region's centre.
    """

    company = CompanyChoiceField(label=_("Company belonging"), queryset=Company.objects.none())
    field_order = ("company", *services.SITE_FIELD_NAMES)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["company"].queryset = services.site_companies(user)
        if user.company_id and not self.is_bound and "company" not in self.initial:
            self.initial["company"] = user.company_id
        for name in services.COORDINATE_LIMITS:
            self.fields[name].required = False
        self.fields["latitude"].help_text = _("Optional; blank takes the region's centre.")

    @classmethod
    def defaults_for(cls, country: str) -> dict[str, Any]:
        """What choosing `country` sets in the form."""
        region = region_defaults(country)
        values: dict[str, Any] = {
            "time_zone": region.time_zone,
            "currency": region.currency,
            "temperature_unit": region.temperature_unit,
        }
        if region.tariff_per_kwh is not None:
            values["tariff_per_kwh"] = region.tariff_per_kwh
        return values

    def clean(self) -> dict[str, Any]:
        data = self.cleaned_data
        region = region_defaults(str(data.get("country") or ""))
        for name in services.COORDINATE_LIMITS:
            if data.get(name) is None and name not in self.errors:
                centre = getattr(region, name)
                if centre is None:
                    self.add_error(name, _("Please enter the site's coordinates."))
                else:
                    data[name] = centre
        return super().clean()


def visible_owners(user: User, query: str = "", company: Company | None = None) -> QuerySet:
    """Owner accounts `user` may hand a site to, searched by username or email."""
    owners = services.assignable_owners(user).select_related("company", "supervisor")
    if company is not None:
        owners = owners.filter(company=company)
    if query:
        owners = owners.filter(Q(username__icontains=query) | Q(email__icontains=query))
    return owners.order_by("username", "email")


class OwnerSearchForm(StyledFormMixin, forms.Form):
    """Search of the owner list (Create site step 3, Distribute): a company and a text."""

    owner_company = CompanyChoiceField(
        label=_("Company"),
        queryset=Company.objects.none(),
        required=False,
        empty_label=_("All companies"),
    )
    owner_q = forms.CharField(
        label=_("Username or email"),
        required=False,
        max_length=120,
        widget=search_input(_("Username/Email")),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["owner_company"].queryset = Company.objects.visible_to(user)

    def owners(self) -> QuerySet:
        if self.is_bound and not self.is_valid():
            return User.objects.none()
        data = self.cleaned_data if self.is_bound else {}
        return visible_owners(
            self.user, (data.get("owner_q") or "").strip(), data.get("owner_company")
        )


class AccountStepForm(StyledFormMixin, forms.Form):
    """Step 3: create a new owner account, select an existing one, or none for now."""

    account_mode = forms.ChoiceField(
        label=_("Associated account"),
        choices=[
            (NEW_ACCOUNT, _("Create a new account")),
            (EXISTING_ACCOUNT, _("Select an existing account")),
            (NO_ACCOUNT, _("Temporarily not associated")),
        ],
        initial=NEW_ACCOUNT,
        widget=forms.RadioSelect,
    )
    new_company = CompanyChoiceField(
        label=_("Company belonging"),
        queryset=Company.objects.none(),
        required=False,
        empty_label=_("Please select"),
    )
    language = forms.ChoiceField(
        label=_("Language"), choices=settings.LANGUAGES, required=False, initial="en"
    )
    email = forms.EmailField(
        label=_("Email"),
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "off", "placeholder": _("Enter email")}),
    )
    owner = forms.ModelChoiceField(
        label=_("Account"),
        queryset=User.objects.none(),
        required=False,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["new_company"].queryset = Company.objects.visible_to(user)
        self.fields["owner"].queryset = services.assignable_owners(user)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        mode = data.get("account_mode")
        required = _("This field is required.")
        if mode == NEW_ACCOUNT:
            for name in ("new_company", "language", "email"):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, required)
            email = data.get("email")
            if email and User.objects.filter(email=normalize_email(email)).exists():
                self.add_error("email", _("A user with this email address already exists."))
        elif mode == EXISTING_ACCOUNT and not data.get("owner") and "owner" not in self.errors:
            self.add_error("owner", _("Please select an account."))
        return data

    def service_kwargs(self) -> dict[str, Any]:
        """`owner=` or `new_owner=` for `services.create_site`."""
        data = self.cleaned_data
        if data["account_mode"] == NEW_ACCOUNT:
            return {
                "new_owner": {
                    "company": data["new_company"],
                    "language": data["language"],
                    "email": data["email"],
                }
            }
        if data["account_mode"] == EXISTING_ACCOUNT:
            return {"owner": data["owner"]}
        return {}


class RenameForm(StyledFormMixin, forms.Form):
    name = forms.CharField(label=_("Site name"), max_length=120)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError(_("Please enter the site name."))
        return name


class DistributeForm(StyledFormMixin, forms.Form):
    """Distribute: one owner account among those the user may hand sites to."""

    user = forms.ModelChoiceField(
        label=_("User"),
        queryset=User.objects.none(),
        widget=forms.RadioSelect,
        error_messages={"required": _("Please select a user.")},
    )

    def __init__(self, *args: Any, acting_user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = services.assignable_owners(acting_user)
