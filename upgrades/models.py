"""Firmware releases (guide §7.1) and upgrade tasks (§7.2) with their per-device jobs.

A task's per-device rows are the queue and the record at once: the rollout engine moves each
through `waiting → offered → downloading → verifying → installing → rebooting → succeeded |
failed`, or to `skipped` (a precondition did not hold; tried again later) or `cancelled`. Every
move is one conditional UPDATE, so two workers, a re-delivered task or a late report change
nothing twice.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.scoping import ScopedQuerySet


class DeviceKind(models.TextChoices):
    GATEWAY = "gateway", _("Gateway")
    INVERTER = "inverter", _("Inverter")


class FirmwareType(models.TextChoices):
    """What an image is for: the gateway, or one board of an inverter (guide §6.4.2.10)."""

    GATEWAY = "gateway", _("Gateway")
    LCD = "lcd", _("LCD")
    DSP = "dsp", _("DSP")
    SLAVE_DSP = "slave_dsp", _("Slave DSP")
    TRIP_BOARD = "trip_board", _("Trip Board")
    EXHMI = "exhmi", _("EXHMI")
    ARC = "arc", _("ARC")
    SENERGY_MASTER_DSP = "senergy_master_dsp", _("Senergy Master DSP")
    SENERGY_SLAVE_DSP = "senergy_slave_dsp", _("Senergy Slave DSP")
    SENERGY_CSB = "senergy_csb", _("Senergy CSB")
    SENERGY_MODULE = "senergy_module", _("Senergy Module")


INVERTER_FIRMWARE_TYPES = [t for t in FirmwareType if t != FirmwareType.GATEWAY]


class ReleaseQuerySet(models.QuerySet):
    def visible_to(self, user) -> ReleaseQuerySet:
        """The catalogue is the platform's: every staff user of a distributor, an installer or
        the platform sees all of it; owners see none."""
        from accounts.permissions import can

        return self if can(user, "firmware.view") else self.none()


def firmware_upload_to(release: FirmwareRelease, filename: str) -> str:
    return f"firmware/{release.kind}/{release.sha256[:2]}/{release.sha256}.bin"


class FirmwareRelease(models.Model):
    kind = models.CharField(_("device type"), max_length=10, choices=DeviceKind.choices)
    firmware_type = models.CharField(
        _("firmware type"), max_length=24, choices=FirmwareType.choices
    )
    version = models.CharField(_("version"), max_length=32)
    description = models.CharField(_("describe"), max_length=500, blank=True)
    file = models.FileField(_("file"), upload_to=firmware_upload_to, max_length=200)
    file_name = models.CharField(_("file name"), max_length=200)
    size = models.BigIntegerField(_("size (bytes)"))
    sha256 = models.CharField("SHA-256", max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("creator"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    creator_label = models.CharField(_("creator"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("released"), auto_now_add=True)

    objects = ReleaseQuerySet.as_manager()

    class Meta:
        verbose_name = _("firmware release")
        verbose_name_plural = _("firmware releases")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_firmware_type_display()} {self.version}"


class ReleaseModel(models.Model):
    """One model a release applies to: a row of the catalogue (guide Figure 7-1)."""

    release = models.ForeignKey(FirmwareRelease, on_delete=models.CASCADE, related_name="models")
    kind = models.CharField(max_length=10, choices=DeviceKind.choices)
    firmware_type = models.CharField(max_length=24, choices=FirmwareType.choices)
    model = models.CharField(_("model No"), max_length=32)
    version = models.CharField(_("version"), max_length=32)

    objects = ReleaseQuerySet.as_manager()

    class Meta:
        verbose_name = _("release model")
        ordering = ["model", "-release__created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "firmware_type", "model", "version"],
                name="release_model_version_unique",
            )
        ]
        indexes = [models.Index(fields=["kind", "model"])]

    def __str__(self) -> str:
        return f"{self.model} {self.version}"


class UpgradePolicy(models.Model):
    """A company's rule for its upgrade tasks: four-eyes approval before a task starts."""

    company = models.OneToOneField(
        "accounts.Company", on_delete=models.CASCADE, related_name="upgrade_policy"
    )
    require_approval = models.BooleanField(_("a second administrator approves each task"))

    def __str__(self) -> str:
        return f"upgrade policy of company {self.company_id}"


class TaskState(models.TextChoices):
    AWAITING_APPROVAL = "approval", _("Awaiting approval")
    SCHEDULED = "scheduled", _("Scheduled")
    RUNNING = "running", _("Running")
    PAUSED = "paused", _("Paused")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class TaskQuerySet(ScopedQuerySet):
    company_path = "company"  # owners see no tasks (no grant permission)


class UpgradeTask(models.Model):
    company = models.ForeignKey(
        "accounts.Company", verbose_name=_("company"), on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(_("device type"), max_length=10, choices=DeviceKind.choices)
    release = models.ForeignKey(
        FirmwareRelease, verbose_name=_("firmware"), on_delete=models.PROTECT, related_name="tasks"
    )
    firmware_type = models.CharField(
        _("firmware type"), max_length=24, choices=FirmwareType.choices
    )
    model = models.CharField(_("model No"), max_length=32)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("creator"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    creator_label = models.CharField(_("creator"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    reservation_at = models.DateTimeField(_("reservation"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=TaskState.choices)
    state_reason = models.CharField(_("why"), max_length=300, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # Staged rollout: cumulative shares of the devices, e.g. [1, 10, 100] percent.
    waves = ArrayField(models.PositiveSmallIntegerField(), default=list)
    current_wave = models.PositiveSmallIntegerField(default=0)
    wave_success_pct = models.PositiveSmallIntegerField(_("next wave from success (%)"), default=90)
    error_threshold_pct = models.PositiveSmallIntegerField(
        _("pause above failures (%)"), default=20
    )
    max_parallel = models.PositiveIntegerField(_("devices upgrading at once"), default=50)
    window_start = models.TimeField(_("maintenance window from"), null=True, blank=True)
    window_end = models.TimeField(_("maintenance window to"), null=True, blank=True)
    require_online = models.BooleanField(_("device online"), default=True)
    min_soc = models.PositiveSmallIntegerField(_("battery SOC at least (%)"), null=True, blank=True)
    require_no_urgent_alarm = models.BooleanField(_("no urgent alarm occurring"), default=True)
    require_grid_mode = models.BooleanField(_("not in emergency or off-grid mode"), default=True)
    # When an operator last resumed the task: the failures before it were accepted then, so
    # only a device failing after it pauses the task again.
    resumed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("upgrade task")
        verbose_name_plural = _("upgrade tasks")
        ordering = ["-id"]
        indexes = [models.Index(fields=["state"]), models.Index(fields=["company", "kind"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model} {self.release.version}"


class TargetState(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    SKIPPED = "skipped", _("Skipped")
    OFFERED = "offered", _("Offered")
    DOWNLOADING = "downloading", _("Downloading")
    VERIFYING = "verifying", _("Verifying")
    INSTALLING = "installing", _("Installing")
    REBOOTING = "rebooting", _("Rebooting")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


# A device in one of these is being worked on: it counts against the task's parallel limit
# and cannot be cancelled any more.
IN_FLIGHT = (
    TargetState.OFFERED,
    TargetState.DOWNLOADING,
    TargetState.VERIFYING,
    TargetState.INSTALLING,
    TargetState.REBOOTING,
)
NOT_STARTED = (TargetState.WAITING, TargetState.SKIPPED)
FINISHED = (TargetState.SUCCEEDED, TargetState.FAILED, TargetState.CANCELLED)


class TargetQuerySet(ScopedQuerySet):
    company_path = "task__company"  # owners see none


class UpgradeTarget(models.Model):
    """One device of a task: a gateway, or an inverter reached through its gateway."""

    task = models.ForeignKey(UpgradeTask, on_delete=models.CASCADE, related_name="targets")
    gateway = models.ForeignKey(
        "gateways.Gateway", verbose_name=_("gateway"), on_delete=models.CASCADE, related_name="+"
    )
    inverter = models.ForeignKey(
        "inverters.Inverter",
        verbose_name=_("inverter"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    modbus_address = models.PositiveSmallIntegerField(_("address"), null=True, blank=True)
    wave = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(
        _("upgrade status"), max_length=12, choices=TargetState.choices, default="waiting"
    )
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    from_version = models.CharField(_("version before"), max_length=32, blank=True)
    reported_version = models.CharField(_("version reported"), max_length=32, blank=True)
    received = models.BigIntegerField(_("bytes received"), default=0)
    attempt = models.PositiveSmallIntegerField(default=0)
    job = models.CharField(max_length=64, unique=True, null=True, blank=True)
    offered_at = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TargetQuerySet.as_manager()

    class Meta:
        verbose_name = _("device upgrade")
        verbose_name_plural = _("device upgrades")
        ordering = ["wave", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "gateway"],
                condition=models.Q(inverter__isnull=True),
                name="upgrade_target_gateway_once",
            ),
            models.UniqueConstraint(
                fields=["task", "inverter"],
                condition=models.Q(inverter__isnull=False),
                name="upgrade_target_inverter_once",
            ),
        ]
        indexes = [
            models.Index(fields=["task", "state"]),
            models.Index(fields=["state"]),
            models.Index(fields=["inverter"]),
            models.Index(fields=["gateway"]),
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} device {self.inverter_id or self.gateway_id}"
