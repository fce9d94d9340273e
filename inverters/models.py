"""Inverters on a gateway's RS-485 bus, addressed by Modbus address."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Company
from sites.models import SiteDeviceQuerySet


class InverterStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    STANDBY = "standby", _("Standby")
    FAULT = "fault", _("Fault")
    OFFLINE = "offline", _("Offline")
    UNKNOWN = "unknown", _("Unknown")


class Inverter(models.Model):
    serial_number = models.CharField(_("device SN"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=120, blank=True)
    model = models.CharField(_("equipment model"), max_length=32)
    gateway = models.ForeignKey(
        "gateways.Gateway",
        verbose_name=_("gateway"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inverters",
    )
    modbus_address = models.PositiveSmallIntegerField(
        _("communication address"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(247)],
    )
    # Denormalised from the gateway so scoping and site pages are one indexed filter.
    company = models.ForeignKey(
        Company, verbose_name=_("company"), on_delete=models.PROTECT, related_name="inverters"
    )
    site = models.ForeignKey(
        "pv_sites.Site",
        verbose_name=_("site"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inverters",
    )
    firmware_versions = models.JSONField(_("firmware"), default=dict, blank=True)
    status = models.CharField(
        _("device status"),
        max_length=8,
        choices=InverterStatus.choices,
        default=InverterStatus.UNKNOWN,
    )
    rated_power_kw = models.DecimalField(
        _("rated power (kW)"), max_digits=7, decimal_places=2, default=0
    )
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("inverter")
        verbose_name_plural = _("inverters")
        ordering = ["serial_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "modbus_address"], name="inverter_unique_bus_address"
            )
        ]
        indexes = [models.Index(fields=["company", "status"]), models.Index(fields=["site"])]

    def __str__(self) -> str:
        return self.name or self.serial_number


# The telemetry models live in their own module; importing them here registers them with the app.
from inverters.telemetry import (  # noqa: E402, F401
    EnergyDaily,
    GatewayReply,
    InverterLatest,
    RejectedMessage,
    Sample,
    SiteEnergyDaily,
    SiteEnergyMonthly,
    TelemetryLayout,
)
