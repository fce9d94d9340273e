"""Forms of the site Overview (guide §6.2.1, §6.2.2.1): edit the site, add a gateway by SN."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.stored_files import StoredImageField
from fleet.services import SITE_FIELD_NAMES
from fleet.site_forms import SiteFieldsForm
from sites.models import Site
from ui.forms import StyledFormMixin

PICTURE_TYPES = "image/jpeg,image/png,image/gif,image/webp"


class SitePictureField(StoredImageField):
    """A site picture: JPEG, PNG, GIF or WebP of at most SITE_PICTURE_MAX_BYTES, stored
    re-encoded without metadata (a phone photo's GPS position goes) under a random name."""

    max_bytes_setting = "SITE_PICTURE_MAX_BYTES"
    stored_side = 1600
    default_error_messages = {
        "file_too_large": _("The picture is too large (%(size)s); the limit is %(limit)s."),
        "image_format": _("Please upload a JPEG, PNG, GIF or WebP image."),
    }


def _picture_help_text() -> str:
    return gettext("JPEG, PNG, GIF or WebP, at most %(size)s.") % {
        "size": filesizeformat(settings.SITE_PICTURE_MAX_BYTES)
    }


class SiteEditForm(SiteFieldsForm):
    """Every field of the site (guide §6.1.2's table) and its picture (§6.2.1)."""

    picture = SitePictureField(
        label=_("Picture"),
        required=False,
        help_text=lazy(_picture_help_text, str)(),
        widget=forms.FileInput(attrs={"accept": PICTURE_TYPES}),
    )
    remove_picture = forms.BooleanField(label=_("Remove the current picture"), required=False)

    def __init__(self, *args: Any, site: Site, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.site = site
        for name in SITE_FIELD_NAMES:
            self.initial.setdefault(name, getattr(site, name))
        self.initial["country"] = self.initial["country"] and str(self.initial["country"])
        self.initial["on_grid"] = "true" if self.initial["on_grid"] in (True, "true") else "false"
        # A zone that the list does not offer (stored by an import, say) stays choosable.
        zones = self.fields["time_zone"].choices
        if site.time_zone and not _offers(zones, site.time_zone):
            self.fields["time_zone"].choices = [(site.time_zone, site.time_zone), *zones]
        if not site.picture:
            del self.fields["remove_picture"]

    def changes(self) -> dict[str, Any]:
        """The keyword arguments for fleet.services.update_site: a new picture wins over
        "remove"."""
        data = self.site_fields()
        if self.cleaned_data.get("picture"):
            data["picture"] = self.cleaned_data["picture"]
        elif self.cleaned_data.get("remove_picture"):
            data["picture"] = None
        return data


def _offers(choices: Any, value: str) -> bool:
    for key, label in choices:
        if isinstance(label, (list, tuple)):
            if any(option == value for option, _label in label):
                return True
        elif key == value:
            return True
    return False


class GatewayAddForm(StyledFormMixin, forms.Form):
    """Add a gateway to the site by its serial number (guide §6.2.2.1)."""

    serial_number = forms.CharField(
        label=_("Gateway SN"),
        max_length=32,
        error_messages={"required": _("Please enter the gateway's serial number.")},
        widget=forms.TextInput(
            attrs={
                "placeholder": _("Enter the gateway's serial number"),
                "autocomplete": "off",
                "spellcheck": "false",
            }
        ),
    )

    def clean_serial_number(self) -> str:
        # Pasted from a label, an SN may come with spaces inside; serial numbers have none.
        return "".join(self.cleaned_data["serial_number"].split())
