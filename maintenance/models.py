"""The remote-operations engine's one model: every remote read, write, mode change, power
switch and gateway command, as audit record and work queue."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from sites.models import SiteDeviceQuerySet


class OperationKind(models.TextChoices):
    READ = "read", _("Read registers")
    WRITE = "write", _("Write registers")
    MODE = "mode", _("Operating mode")
    SMART_LOAD = "smart_load", _("Intelligent load")
    POWER = "power", _("Power on/off")
    GATEWAY_CONFIG = "gateway_config", _("Gateway settings")
    GATEWAY_RESET = "gateway_reset", _("Gateway reset")
    SCAN = "scan", _("Protocol scan")
    GATEWAY_READ = "gateway_read", _("Gateway settings read")


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
        "accounts.Company", verbose_name=_("company"), on_delete=models.PROTECT, related_name="+"
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
        "gateways.Gateway",
        verbose_name=_("gateway"),
        on_delete=models.CASCADE,
        related_name="operations",
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
        db_table = "gateways_remoteoperation"
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
