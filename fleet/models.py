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
