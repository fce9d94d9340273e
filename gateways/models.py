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


class OperationKind(models.TextChoices):
    READ = "read", _("Read registers")
    WRITE = "write", _("Write registers")
    MODE = "mode", _("Operating mode")
    SMART_LOAD = "smart_load", _("Intelligent load")
    POWER = "power", _("Power on/off")
    GATEWAY_CONFIG = "gateway_config", _("Gateway settings")
    GATEWAY_RESET = "gateway_reset", _("Gateway reset")
    SCAN = "scan", _("Protocol scan")


class OperationState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENT = "sent", _("Sent")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired")


PENDING_STATES = (OperationState.QUEUED, OperationState.SENT)


class RemoteOperation(models.Model):
    """One remote read, write, mode change, power switch or gateway command: the audit record
    and the work queue in one row. `command` is exactly what was checked and will be sent, so a
    worker never re-validates or rebuilds it."""

    company = models.ForeignKey(
        Company, verbose_name=_("company"), on_delete=models.PROTECT, related_name="+"
    )
    site = models.ForeignKey(
        "pv_sites.Site",
        verbose_name=_("site"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    gateway = models.ForeignKey(
        Gateway, verbose_name=_("gateway"), on_delete=models.CASCADE, related_name="operations"
    )
    inverter = models.ForeignKey(
        "inverters.Inverter",
        verbose_name=_("inverter"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="operations",
    )
    device_serial = models.CharField(_("device SN"), max_length=32, db_index=True)
    user = models.ForeignKey(
        "accounts.User",
        verbose_name=_("user"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    user_email = models.EmailField(_("user email"), blank=True)
    kind = models.CharField(_("type"), max_length=16, choices=OperationKind.choices)
    summary = models.CharField(_("operation"), max_length=300)
    request = models.JSONField(_("request"), default=dict, blank=True)
    command = models.JSONField(_("command"), default=dict, blank=True)
    command_id = models.CharField(_("command id"), max_length=64, unique=True)
    before = models.JSONField(_("value before"), default=dict, blank=True)
    after = models.JSONField(_("value after"), default=dict, blank=True)
    result = models.JSONField(_("result"), default=dict, blank=True)
    state = models.CharField(
        _("state"), max_length=10, choices=OperationState.choices, default=OperationState.QUEUED
    )
    error = models.CharField(_("error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    deadline = models.DateTimeField(_("deadline"))

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("remote operation")
        verbose_name_plural = _("remote operations")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["company", "-created_at"]),
            models.Index(
                fields=["deadline"],
                name="operation_pending",
                condition=models.Q(state__in=["queued", "sent"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.device_serial}: {self.summary}"

    @property
    def is_pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def is_finished(self) -> bool:
        return not self.is_pending
