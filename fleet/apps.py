from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FleetConfig(AppConfig):
    """The pages that show and operate the fleet: Home, Site (and later Gateway, Inverter)."""

    name = "fleet"
    verbose_name = _("Fleet pages")
