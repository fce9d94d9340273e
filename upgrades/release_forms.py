"""The firmware catalogue's filter bar and the upload dialog (guide §7.1)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from ui.filters import ContainsFilter, search_input
from ui.forms import StyledFormMixin
from upgrades.models import INVERTER_FIRMWARE_TYPES, DeviceKind, ReleaseModel
from upgrades.release_services import (
    DESCRIPTION_MAX_LENGTH,
    VERSION_MAX_LENGTH,
    file_too_large_message,
    model_choices,
)

KIND_PARAMETER = "kind"


def requested_kind(params: Any) -> str:
    """The catalogue's tab from the query string: inverter firmware, else gateway firmware."""
    kind = (params or {}).get(KIND_PARAMETER, "")
    return DeviceKind.INVERTER if kind == DeviceKind.INVERTER else DeviceKind.GATEWAY


class ReleaseFilterForm(StyledFormMixin, forms.Form):
    pass


class ReleaseFilter(django_filters.FilterSet):
    """Model and version; `kind` rides along (hidden) so that a search stays on its tab —
    the view already narrows the rows to the tab's kind."""

    kind = django_filters.CharFilter(method="keep_all", widget=forms.HiddenInput)
    model = django_filters.ChoiceFilter(label=_("Gateway model"), empty_label=_("All models"))
    version = ContainsFilter(
        label=_("Version"), max_length=32, widget=search_input(_("Firmware version"))
    )

    class Meta:
        model = ReleaseModel
        fields = ("kind", "model", "version")
        form = ReleaseFilterForm

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(data, *args, **kwargs)
        kind = requested_kind(data)
        self.filters["model"].extra["choices"] = model_choices(kind)
        if kind == DeviceKind.INVERTER:
            self.filters["model"].label = _("Inverter model")

    def keep_all(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset


class ReleaseUploadForm(StyledFormMixin, forms.Form):
    """What a release is: the image, the devices it is for, its version and description. The
    service checks the rest (models and types that go together, duplicates, the header)."""

    file = forms.FileField(label=_("Firmware file"), allow_empty_file=True, max_length=200)
    kind = forms.ChoiceField(
        label=_("Device type"),
        choices=DeviceKind.choices,
        initial=DeviceKind.GATEWAY,
        widget=forms.RadioSelect,
    )
    gateway_models = forms.MultipleChoiceField(
        label=_("Gateway models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("For gateway firmware."),
    )
    inverter_models = forms.MultipleChoiceField(
        label=_("Inverter models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("For inverter firmware."),
    )
    firmware_type = forms.ChoiceField(
        label=_("Firmware type"),
        required=False,
        choices=[("", _("Choose…"))] + [(t.value, t.label) for t in INVERTER_FIRMWARE_TYPES],
        help_text=_("For inverter firmware: the board the image is for."),
    )
    version = forms.CharField(
        label=_("Version"),
        max_length=VERSION_MAX_LENGTH,
        help_text=_("Inverter firmware: MM.mm, e.g. 01.20."),
    )
    description = forms.CharField(
        label=_("Describe"),
        required=False,
        max_length=DESCRIPTION_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gateway_models"].choices = model_choices(DeviceKind.GATEWAY)
        self.fields["inverter_models"].choices = model_choices(DeviceKind.INVERTER)
        self.fields["file"].help_text = _("At most %(max)s.") % {
            "max": filesizeformat(settings.FIRMWARE_MAX_BYTES)
        }

    def clean_file(self) -> Any:
        upload = self.cleaned_data.get("file")
        if upload is not None and (
            getattr(upload, "too_large", False) or upload.size > settings.FIRMWARE_MAX_BYTES
        ):
            raise ValidationError(file_too_large_message(upload.size))
        return upload

    def models_field(self) -> str:
        kind = self.cleaned_data.get("kind") if hasattr(self, "cleaned_data") else None
        return "inverter_models" if kind == DeviceKind.INVERTER else "gateway_models"

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "upload": data["file"],
            "kind": data["kind"],
            "models": data[self.models_field()],
            "firmware_type": data.get("firmware_type", ""),
            "version": data["version"],
            "description": data.get("description", ""),
        }

    def add_service_error(self, error: ValidationError) -> None:
        """The service's errors next to the fields they are about."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, errors in error.error_dict.items():
            name = self.models_field() if field == "models" else field
            self.add_error(name if name in self.fields else None, errors)
