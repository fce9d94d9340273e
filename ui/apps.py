from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UiConfig(AppConfig):
    name = "ui"
    verbose_name = _("User interface")
    default_auto_field = "django.db.models.BigAutoField"
