"""What the shared page pieces remember per user."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class TablePreference(models.Model):
    """The columns one user chose for one table (the guide's "Optional").

    Stored in the database, not the session, so the choice survives signing out and applies on
    every device. `columns` lists the chosen optional columns; a table's required columns are
    always shown and never stored.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="table_preferences"
    )
    table = models.CharField(_("table"), max_length=100)
    columns = models.JSONField(_("columns"), default=list)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("table preference")
        verbose_name_plural = _("table preferences")
        constraints = [
            models.UniqueConstraint(fields=("user", "table"), name="ui_table_preference_unique")
        ]

    def __str__(self) -> str:
        return f"{self.table} ({self.user_id})"
