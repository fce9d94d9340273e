"""The forms of the Commissioning tab (guide §6.2.7, figures 6-26 and 6-27): a new report (name,
optional email, the site's gateways and inverters to include) and Send Email."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django import forms
from django.utils.translation import gettext_lazy as _

from fleet.queries import GATEWAY_TONE, INVERTER_TONE
from gateways.models import Gateway
from inverters.models import Inverter
from ui.forms import StyledFormMixin
from ui.units import MISSING

if TYPE_CHECKING:
    from accounts.models import User
    from sites.models import Site

#: DESIGN §5: the same status has the same word and colour everywhere.
DEVICE_TONE = {**INVERTER_TONE, **GATEWAY_TONE}


@dataclass
class DeviceRow:
    """One row of the dialog's table: an inverter with its gateway ("Gateway SN : Inverter
    SN"), or a gateway without inverters on this site."""

    value: str
    gateway_sn: str
    inverter_sn: str
    model: str
    status: str
    status_label: str

    @property
    def label(self) -> str:
        return f"{self.gateway_sn} : {self.inverter_sn}"

    @property
    def tone(self) -> str:
        return DEVICE_TONE.get(self.status, "secondary")


def device_rows(site: Site, user: User) -> list[DeviceRow]:
    """The site's gateways and inverters the user may see, inverters under their gateway."""
    gateways = list(Gateway.objects.visible_to(user).filter(site=site).order_by("serial_number"))
    inverters = list(
        Inverter.objects.visible_to(user)
        .filter(site=site)
        .select_related("gateway")
        .order_by("gateway__serial_number", "modbus_address", "serial_number")
    )
    with_inverters = {i.gateway_id for i in inverters}
    rows = [
        DeviceRow(
            value=f"i{i.pk}",
            gateway_sn=i.gateway.serial_number if i.gateway else MISSING,
            inverter_sn=i.serial_number,
            model=i.model or MISSING,
            status=i.status,
            status_label=str(i.get_status_display()),
        )
        for i in inverters
    ]
    rows += [
        DeviceRow(
            value=f"g{g.pk}",
            gateway_sn=g.serial_number,
            inverter_sn=MISSING,
            model=MISSING,
            status=g.status,
            status_label=str(g.get_status_display()),
        )
        for g in gateways
        if g.pk not in with_inverters
    ]
    return sorted(rows, key=lambda row: (row.gateway_sn, row.inverter_sn))


class CommissioningReportForm(StyledFormMixin, forms.Form):
    """Create (figure 6-27): the report's name, an optional email, and at least one device."""

    name = forms.CharField(
        label=_("Report name"),
        max_length=120,
        widget=forms.TextInput(attrs={"placeholder": _("Commission Report")}),
    )
    email = forms.EmailField(
        label=_("Email"),
        required=False,
        help_text=_("The finished report is sent to this address."),
        widget=forms.EmailInput(attrs={"placeholder": _("Please input email address")}),
    )
    devices = forms.MultipleChoiceField(
        label=_("Gateways and inverters"),
        error_messages={"required": _("Select at least one gateway or inverter.")},
    )

    def __init__(self, *args: Any, site: Site, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows = device_rows(site, user)
        self.fields["devices"].choices = [(row.value, row.label) for row in self.rows]
        self.fields["devices"].error_messages["invalid_choice"] = _(
            "Select only gateways and inverters of this site."
        )
        if not self.is_bound:
            self.initial.setdefault("devices", [row.value for row in self.rows])

    def selected(self) -> set[str]:
        """The values ticked in the table (as posted, or all of them at first)."""
        value = self["devices"].value() or []
        return {str(v) for v in value}

    def device_ids(self) -> tuple[list[int], list[int]]:
        """(gateway ids, inverter ids) of the valid selection."""
        chosen = self.cleaned_data["devices"]
        gateways = [int(v[1:]) for v in chosen if v.startswith("g")]
        inverters = [int(v[1:]) for v in chosen if v.startswith("i")]
        return gateways, inverters


class SendReportForm(StyledFormMixin, forms.Form):
    """Send Email: where the finished report goes."""

    email = forms.EmailField(
        label=_("Email"),
        widget=forms.EmailInput(attrs={"placeholder": _("Please input email address")}),
    )
