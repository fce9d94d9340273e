"""Alarms: one row per occurrence of an inverter fault code, from occurring to recovered."""

from django.db import models
from django.utils.translation import gettext_lazy as _

# The telemetry storage models live next to their SQL in inverters/telemetry.py; importing the
# module here registers them while the app registry loads (until inverters/models.py does).
from inverters import telemetry as _telemetry  # noqa: F401
from sites.models import SiteDeviceQuerySet


class AlarmLevel(models.TextChoices):
    """Guide Table 4-1, most severe first."""

    URGENT = "urgent", _("Urgent")
    IMPORTANT = "important", _("Important")
    COMMON = "common", _("Common")
    PROMPT = "prompt", _("Prompt")


class AlarmStatus(models.TextChoices):
    OCCURRING = "occurring", _("Occurring")
    RECOVERED = "recovered", _("Recovered")


class AlarmQuerySet(SiteDeviceQuerySet):
    def occurring(self):
        return self.filter(status=AlarmStatus.OCCURRING)


class Alarm(models.Model):
    inverter = models.ForeignKey(
        "inverters.Inverter",
        verbose_name=_("device"),
        on_delete=models.CASCADE,
        related_name="alarms",
    )
    # Denormalised from the inverter at the time of the alarm so scoping is one indexed filter.
    company = models.ForeignKey(
        "accounts.Company", verbose_name=_("company"), on_delete=models.CASCADE, related_name="+"
    )
    site = models.ForeignKey(
        "pv_sites.Site",
        verbose_name=_("site"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alarms",
    )
    code = models.CharField(_("fault code"), max_length=40)
    level = models.CharField(_("level"), max_length=10, choices=AlarmLevel.choices)
    message = models.CharField(_("message"), max_length=200)
    occurred_at = models.DateTimeField(_("occurred at"))
    recovered_at = models.DateTimeField(_("recovered at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=AlarmStatus.choices, default=AlarmStatus.OCCURRING
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = AlarmQuerySet.as_manager()

    class Meta:
        verbose_name = _("alarm")
        verbose_name_plural = _("alarms")
        ordering = ["-occurred_at"]
        constraints = [
            # A resent or replayed sample cannot open the same occurrence twice…
            models.UniqueConstraint(
                fields=["inverter", "code", "occurred_at"], name="alarm_unique_occurrence"
            ),
            # …and a code has at most one open alarm per inverter.
            models.UniqueConstraint(
                fields=["inverter", "code"],
                condition=models.Q(status="occurring"),
                name="alarm_one_open_per_code",
            ),
        ]
        indexes = [
            models.Index(fields=["company", "status", "-occurred_at"]),
            models.Index(fields=["site", "-occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.message}"
