"""Forms of the gateway pages (guide §6.3): Rename, Distribute, Upgrade and the panels of the
Settings tab (§6.3.2.2).

The Settings forms check what the browser can get wrong (a duplicate Modbus address, a baud
rate the gateway does not support, a port out of range) and say why on the field; they build
the `changes` of `maintenance.remote.configure_gateway`, which checks them again with the
gateway's own rules (devices/gateway_settings.py) before anything is sent.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from devices import gateway_settings as gs
from devices.registermap import list_models
from fleet.gateway_services import NAME_MAX_LENGTH
from sites.models import Site
from ui.forms import StyledFormMixin

# --- Rename, Distribute, Upgrade ------------------------------------------------------------------


class GatewayRenameForm(StyledFormMixin, forms.Form):
    name = forms.CharField(
        label=_("Gateway name"),
        max_length=NAME_MAX_LENGTH,
        required=False,
        help_text=_("Leave it empty to show the gateway SN instead."),
    )


def distributable_sites(user: User, query: str = "") -> QuerySet:
    """The sites a gateway may be distributed to by `user`: those they see, found by name,
    address or company."""
    sites = Site.objects.visible_to(user).select_related("company").order_by("name", "pk")
    query = query.strip()
    if query:
        sites = sites.filter(
            Q(name__icontains=query)
            | Q(address__icontains=query)
            | Q(company__name__icontains=query)
        )
    return sites


class GatewayDistributeForm(StyledFormMixin, forms.Form):
    site = forms.ModelChoiceField(
        label=_("Site"),
        queryset=Site.objects.none(),
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Please select a site."),
            "invalid_choice": _("Please select one of the sites shown."),
        },
    )

    def __init__(self, *args: Any, acting_user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = distributable_sites(acting_user)


class SiteSearchForm(forms.Form):
    site_q = forms.CharField(required=False, max_length=120, strip=True)


# --- Settings panels ------------------------------------------------------------------------------

RESTART_CHOICES = [("no", _("No restart required")), ("yes", _("Restart required"))]


def restart_field(label: Any = None) -> forms.ChoiceField:
    return forms.ChoiceField(
        label=label or _("Restart flag"),
        choices=RESTART_CHOICES,
        initial="yes",
        widget=forms.RadioSelect,
    )


def _int_choices(values: tuple[int, ...]) -> list[tuple[int, str]]:
    return [(v, str(v)) for v in values]


class SettingsPanelForm(StyledFormMixin, forms.Form):
    """A panel's form: `initial_from(settings)` reads the gateway's reported settings,
    `changes()` is what configure_gateway sends, `restart()` the Restart Flag."""

    has_restart_flag = True

    @classmethod
    def initial_from(cls, settings: dict) -> dict[str, Any]:
        return {}

    def changes(self) -> dict[str, Any]:
        raise NotImplementedError

    def restart(self) -> bool:
        return self.cleaned_data.get("restart", "yes") == "yes"


class ForwardingForm(SettingsPanelForm):
    forwarding = forms.ChoiceField(
        label=_("Forwarding"),
        choices=[
            ("none", _("No forwarding")),
            ("serial", _("Forward to the serial port")),
            ("tcp", _("Forward over TCP")),
        ],
    )
    restart = restart_field()

    @classmethod
    def initial_from(cls, settings: dict) -> dict[str, Any]:
        return {"forwarding": settings.get("forwarding", "none")}

    def changes(self) -> dict[str, Any]:
        return {"forwarding": self.cleaned_data["forwarding"]}


PARITY_LABELS = {"none": "NONE", "odd": "ODD", "even": "EVEN"}


class SerialPortForm(SettingsPanelForm):
    port = forms.IntegerField(label=_("Serial port"), min_value=0, max_value=15)
    baud_rate = forms.TypedChoiceField(
        label=_("Baud rate"), choices=_int_choices(gs.BAUD_RATES), coerce=int
    )
    parity = forms.ChoiceField(
        label=_("Check bit"), choices=[(p, PARITY_LABELS[p]) for p in gs.PARITIES]
    )
    stop_bits = forms.TypedChoiceField(
        label=_("Stop bit"), choices=[(1, "1"), (2, "2")], coerce=int
    )
    protocol = forms.ChoiceField(
        label=_("Protocol type"), choices=[(p, p) for p in gs.SERIAL_PROTOCOLS]
    )
    restart = restart_field()

    @classmethod
    def initial_from(cls, settings: dict) -> dict[str, Any]:
        return dict(settings.get("serial_port") or {})

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "serial_port": {
                k: data[k] for k in ("port", "baud_rate", "parity", "stop_bits", "protocol")
            }
        }


class TcpForwardingForm(SettingsPanelForm):
    enabled = forms.TypedChoiceField(
        label=_("TCP forwarding"),
        choices=[("false", _("Off")), ("true", _("On"))],
        coerce=lambda v: v == "true",
        widget=forms.RadioSelect,
    )
    port = forms.IntegerField(label=_("TCP port"), min_value=1, max_value=65535)
    protocol = forms.ChoiceField(label=_("Protocol"), choices=[(p, p) for p in gs.TCP_PROTOCOLS])
    restart = restart_field()

    @classmethod
    def initial_from(cls, settings: dict) -> dict[str, Any]:
        tcp = dict(settings.get("tcp_forwarding") or {})
        if "enabled" in tcp:
            tcp["enabled"] = "true" if tcp["enabled"] else "false"
        return tcp

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "tcp_forwarding": {
                "enabled": data["enabled"],
                "port": data["port"],
                "protocol": data["protocol"],
            }
        }


#: The intervals offered (guide: "Select the interval"); the gateway accepts 1 s to 1 h.
UPLOAD_INTERVALS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600)


def _interval_label(seconds: int) -> str:
    if seconds % 60:
        return str(_("%(n)d seconds") % {"n": seconds})
    return str(_("%(n)d min") % {"n": seconds // 60})


class UploadIntervalForm(SettingsPanelForm):
    upload_interval_s = forms.TypedChoiceField(label=_("Upload interval"), coerce=int)
    restart = forms.ChoiceField(
        label=_("Safe restart"),
        choices=[("no", _("No")), ("yes", _("Yes (10–20 s offline)"))],
        initial="no",
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = (self.initial or {}).get("upload_interval_s")
        values = set(UPLOAD_INTERVALS)
        if isinstance(current, int) and gs.MIN_INTERVAL_S <= current <= gs.MAX_INTERVAL_S:
            values.add(current)  # a value set elsewhere stays selectable
        self.fields["upload_interval_s"].choices = [(v, _interval_label(v)) for v in sorted(values)]

    @classmethod
    def initial_from(cls, settings: dict) -> dict[str, Any]:
        return {"upload_interval_s": settings.get("upload_interval_s"), "restart": "no"}

    def changes(self) -> dict[str, Any]:
        return {"upload_interval_s": self.cleaned_data["upload_interval_s"]}


class BaudRateForm(SettingsPanelForm):
    port_type = forms.ChoiceField(label=_("Port type"), choices=[(p, p) for p in gs.PORT_TYPES])
    baud_rate = forms.IntegerField(
        label=_("Baud rate"),
        min_value=1,
        widget=forms.NumberInput(attrs={"list": "gateway-baud-rates"}),
        help_text=_("Select or enter the rate of the devices on the bus."),
    )
    restart = restart_field()

    @classmethod
    def initial_from(cls, settings: dict) -> dict[str, Any]:
        return dict(settings.get("baud_rate") or {})

    def clean_baud_rate(self) -> int:
        rate = self.cleaned_data["baud_rate"]
        if rate not in gs.BAUD_RATES:
            raise ValidationError(
                _("The gateway does not support %(rate)s baud; choose one of: %(rates)s.")
                % {"rate": rate, "rates": ", ".join(map(str, gs.BAUD_RATES))}
            )
        return rate

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"baud_rate": {"port_type": data["port_type"], "baud_rate": data["baud_rate"]}}


# --- Protocol entries -----------------------------------------------------------------------------


class ProtocolEntryForm(StyledFormMixin, forms.Form):
    protocol = forms.ChoiceField(label=_("Select protocol"))
    address = forms.IntegerField(label=_("Modbus address"), min_value=1, max_value=247)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["protocol"].choices = [
            ("", _("Choose a protocol")),
            *((m, m) for m in list_models()),
        ]


class BaseProtocolFormSet(forms.BaseFormSet):
    """Protocol entries (Table 6-2): each Modbus address once."""

    def clean(self) -> None:
        if any(self.errors):
            return
        seen: dict[int, int] = {}
        entries = 0
        for i, form in enumerate(self.forms):
            if self.can_delete and self._should_delete_form(form):
                continue
            address = form.cleaned_data.get("address")
            if address is None:
                continue
            entries += 1
            if address in seen:
                form.add_error(
                    "address",
                    _("Modbus address %(address)d is already used by entry %(n)d.")
                    % {"address": address, "n": seen[address] + 1},
                )
                raise ValidationError(
                    _("Each Modbus address may be used by one protocol entry only.")
                )
            seen[address] = i
        if not entries:
            raise ValidationError(_("Add at least one protocol entry."))

    def changes(self) -> dict[str, Any]:
        entries = [
            {"protocol": f.cleaned_data["protocol"], "address": f.cleaned_data["address"]}
            for f in self.forms
            if f.cleaned_data.get("address") is not None
            and not (self.can_delete and self._should_delete_form(f))
        ]
        return {"protocols": entries}


MAX_PROTOCOL_ENTRIES = 32

ProtocolFormSet = forms.formset_factory(
    ProtocolEntryForm,
    formset=BaseProtocolFormSet,
    extra=0,
    can_delete=True,
    max_num=MAX_PROTOCOL_ENTRIES,
    validate_max=True,
    absolute_max=MAX_PROTOCOL_ENTRIES + 1,
)


def protocol_initial(settings: dict) -> list[dict[str, Any]]:
    return [
        {"protocol": e.get("protocol"), "address": e.get("address")}
        for e in settings.get("protocols") or []
        if isinstance(e, dict)
    ]


class ScanForm(StyledFormMixin, forms.Form):
    """Intellisense: the range of bus addresses to probe."""

    first = forms.IntegerField(label=_("From address"), min_value=1, max_value=247, initial=1)
    last = forms.IntegerField(label=_("To address"), min_value=1, max_value=247, initial=16)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        first, last = data.get("first"), data.get("last")
        if first is not None and last is not None and first > last:
            self.add_error("last", _("The last address must not be below the first."))
        return data
