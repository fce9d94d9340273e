"""Commissioning reports (guide §6.2.7): a PDF of a North-American site's data, its devices
and their settings read live, built in the background."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from sites.models import SiteDeviceQuerySet

#: A run that has not finished after this long was lost (its worker died): it may be updated
#: again. Longer than the build task's hard time limit (fleet/tasks.py).
STALE_AFTER = timedelta(minutes=20)


class ReportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    READING = "reading", _("Reading")
    BUILDING = "building", _("Building")
    FINISHED = "finished", _("Finished")
    FAILED = "failed", _("Failed")


IN_PROGRESS = (ReportStatus.QUEUED, ReportStatus.READING, ReportStatus.BUILDING)


def report_path(report: CommissioningReport, filename: str) -> str:
    """A random name per build: a rebuilt report never reuses the address of the old file."""
    return f"commissioning/{report.site_id}/{uuid.uuid4().hex}.pdf"


class CommissioningReport(models.Model):
    """One report of a site. `generation` counts its builds: Update starts a new one, and a
    worker still busy with an older build changes nothing (every write of the build is
    conditional on its generation)."""

    site = models.ForeignKey(
        "pv_sites.Site",
        verbose_name=_("site"),
        on_delete=models.CASCADE,
        related_name="commissioning_reports",
    )
    # Denormalised from the site so scoping is one indexed filter.
    company = models.ForeignKey(
        "accounts.Company", verbose_name=_("company"), on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(_("report name"), max_length=120)
    email = models.EmailField(_("email"), blank=True)
    gateways = models.ManyToManyField(
        "gateways.Gateway", verbose_name=_("gateways"), blank=True, related_name="+"
    )
    inverters = models.ManyToManyField(
        "inverters.Inverter", verbose_name=_("inverters"), blank=True, related_name="+"
    )
    status = models.CharField(
        _("status"), max_length=10, choices=ReportStatus.choices, default=ReportStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(
        _("progress"), default=0, validators=[MaxValueValidator(100)]
    )
    error = models.CharField(_("error"), max_length=500, blank=True)
    pdf = models.FileField(_("PDF"), upload_to=report_path, blank=True, max_length=200)
    generation = models.PositiveIntegerField(_("build"), default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who started the current build (the creator, or who pressed Update): the devices are read
    # as this user.
    run_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("built by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created time"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    emailed_at = models.DateTimeField(_("emailed"), null=True, blank=True)
    emailed_to = models.EmailField(_("emailed to"), blank=True)
    email_error = models.CharField(_("email error"), max_length=300, blank=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("commissioning report")
        verbose_name_plural = _("commissioning reports")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["site", "-created_at"]),
            models.Index(fields=["company"]),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS

    @property
    def is_stale(self) -> bool:
        """In progress for longer than any build may take: its worker is gone."""
        return self.in_progress and timezone.now() - self.started_at > STALE_AFTER

    @property
    def has_pdf(self) -> bool:
        return self.status == ReportStatus.FINISHED and bool(self.pdf)


# --- AutoTest (guide §6.4.2.7) -----------------------------------------------------------------

#: A run that has not ended after this long lost its worker: it is shown as expired and a new
#: test may start. Longer than the run task's hard time limit (fleet/tasks.py).
AUTOTEST_STALE_AFTER = timedelta(minutes=15)


class AutoTestStatus(models.TextChoices):
    STARTING = "starting", _("Starting")
    RUNNING = "running", _("Running")
    PASSED = "passed", _("Passed")
    FAILED = "failed", _("Failed")
    ABORTED = "aborted", _("Aborted")
    REFUSED = "refused", _("Refused")
    EXPIRED = "expired", _("Expired")


AUTOTEST_IN_PROGRESS = (AutoTestStatus.STARTING, AutoTestStatus.RUNNING)


class AutoTestRun(models.Model):
    """One AutoTest of an Italian site's inverter (the CEI 0-21 self-test of its interface
    protection): who started it, how it ended and, in `steps`, what the inverter measured.
    The inverter's identity is kept as it was, so the record stays true after changes."""

    inverter = models.ForeignKey(
        "inverters.Inverter",
        verbose_name=_("inverter"),
        on_delete=models.CASCADE,
        related_name="autotest_runs",
    )
    site = models.ForeignKey(
        "pv_sites.Site", verbose_name=_("site"), on_delete=models.CASCADE, related_name="+"
    )
    # Denormalised from the inverter so scoping is one indexed filter.
    company = models.ForeignKey(
        "accounts.Company", verbose_name=_("company"), on_delete=models.CASCADE, related_name="+"
    )
    status = models.CharField(
        _("status"), max_length=10, choices=AutoTestStatus.choices, default=AutoTestStatus.STARTING
    )
    # Why the inverter refused or aborted the test (its AutoTestReason key); `message` holds
    # what went wrong on the way (the engine's error).
    reason = models.CharField(_("reason"), max_length=20, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    current_step = models.PositiveSmallIntegerField(_("current step"), default=0)
    device_run = models.PositiveIntegerField(
        _("test number on the inverter"), null=True, blank=True
    )
    start_operation = models.ForeignKey(
        "maintenance.RemoteOperation",
        verbose_name=_("start command"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_by_email = models.EmailField(_("started by"), blank=True)
    serial_number = models.CharField(_("inverter SN"), max_length=32)
    model = models.CharField(_("model"), max_length=32)
    firmware_versions = models.JSONField(_("firmware"), default=dict, blank=True)
    created_at = models.DateTimeField(_("started"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("AutoTest run")
        verbose_name_plural = _("AutoTest runs")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["inverter", "-created_at"]),
            models.Index(fields=["company"]),
        ]

    def __str__(self) -> str:
        return f"AutoTest {self.serial_number} #{self.pk}"

    @property
    def in_progress(self) -> bool:
        return self.status in AUTOTEST_IN_PROGRESS and not self.is_stale

    @property
    def is_stale(self) -> bool:
        """Still "in progress" long after any run ends: its worker is gone."""
        return (
            self.status in AUTOTEST_IN_PROGRESS
            and timezone.now() - self.created_at > AUTOTEST_STALE_AFTER
        )

    @property
    def shown_status(self) -> str:
        return AutoTestStatus.EXPIRED if self.is_stale else self.status

    @property
    def has_report(self) -> bool:
        """A finished run has a PDF report (a stale one too: it says so)."""
        return not self.in_progress


class AutoTestStepState(models.TextChoices):
    PENDING = "pending", _("Pending")
    TESTING = "testing", _("Testing")
    DONE = "done", _("Done")
    SKIPPED = "skipped", _("Skipped")


class AutoTestResult(models.TextChoices):
    NONE = "", _("–")
    PASS = "pass", _("Pass")
    FAIL = "fail", _("Fail")


class AutoTestStep(models.Model):
    """One protection function of a run (59.S1 … 81<.S2): its setting and what the inverter
    measured when it tripped."""

    run = models.ForeignKey(
        AutoTestRun, verbose_name=_("run"), on_delete=models.CASCADE, related_name="steps"
    )
    index = models.PositiveSmallIntegerField(_("step"))
    code = models.CharField(_("protection"), max_length=12)
    unit = models.CharField(_("unit"), max_length=8)
    threshold = models.FloatField(_("threshold"))
    time_limit_ms = models.PositiveIntegerField(_("trip time limit (ms)"))
    trip_value = models.FloatField(_("trip value"), null=True, blank=True)
    trip_time_ms = models.PositiveIntegerField(_("trip time (ms)"), null=True, blank=True)
    state = models.CharField(
        _("state"),
        max_length=8,
        choices=AutoTestStepState.choices,
        default=AutoTestStepState.PENDING,
    )
    result = models.CharField(
        _("result"), max_length=4, choices=AutoTestResult.choices, default="", blank=True
    )

    class Meta:
        verbose_name = _("AutoTest step")
        verbose_name_plural = _("AutoTest steps")
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="autotest_step_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.index})"
