"""Gateways (WiFi/4G/Ethernet data loggers): the MQTT peers that bridge an RS-485 bus."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Company
from sites.models import SiteDeviceQuerySet


class GatewayModel(models.TextChoices):
    WIFI = "CPS WiFi Kit", _("WiFi kit")
    G4 = "CPS 4G Kit", _("4G kit")
    ETH = "CPS ETH Kit", _("Ethernet kit")


class GatewayStatus(models.TextChoices):
    ONLINE = "online", _("Online")
    OFFLINE = "offline", _("Offline")
    UNKNOWN = "unknown", _("Unknown")


DEFAULT_UPLOAD_INTERVAL_S = 60


class Gateway(models.Model):
    serial_number = models.CharField(_("gateway SN"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=120, blank=True)
    model = models.CharField(
        _("model"), max_length=32, choices=GatewayModel.choices, default=GatewayModel.WIFI
    )
    firmware_version = models.CharField(_("firmware version"), max_length=32, blank=True)
    company = models.ForeignKey(
        Company, verbose_name=_("company"), on_delete=models.PROTECT, related_name="gateways"
    )
    site = models.ForeignKey(
        "pv_sites.Site",
        verbose_name=_("site"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="gateways",
    )
    status = models.CharField(
        _("status"), max_length=8, choices=GatewayStatus.choices, default=GatewayStatus.UNKNOWN
    )
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)
    signal_strength = models.SmallIntegerField(_("signal (dBm)"), null=True, blank=True)
    upload_interval_s = models.PositiveIntegerField(
        _("upload interval (s)"), default=DEFAULT_UPLOAD_INTERVAL_S
    )
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    mqtt_password_hash = models.CharField(max_length=255, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("gateway")
        verbose_name_plural = _("gateways")
        ordering = ["serial_number"]
        indexes = [models.Index(fields=["company", "status"])]

    def __str__(self) -> str:
        return self.name or self.serial_number

    @property
    def mqtt_username(self) -> str:
        """Each gateway signs in to the broker as its own serial number."""
        return self.serial_number
