"""Sites (power stations): where gateways and inverters are installed."""

from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django_countries.fields import CountryField

from accounts.models import Company, Currency
from accounts.scoping import ScopedQuerySet
from accounts.stored_files import stored_file_url


class SiteType(models.TextChoices):
    RESIDENTIAL = "residential", _("Residential ESS")
    COMMERCIAL = "commercial", _("C&I ESS")
    UTILITY = "utility", _("Utility ESS")


class TemperatureUnit(models.TextChoices):
    CELSIUS = "C", _("°C")
    FAHRENHEIT = "F", _("°F")


class SiteQuerySet(ScopedQuerySet):
    company_path = "company"
    owner_grant_permission = "pv_sites.view_site"


class Site(models.Model):
    """A power station. Owners see it when granted `view_site` on it (django-guardian)."""

    company = models.ForeignKey(
        Company, verbose_name=_("company"), on_delete=models.PROTECT, related_name="sites"
    )
    name = models.CharField(_("site name"), max_length=120)
    address = models.CharField(_("address"), max_length=255)
    country = CountryField(_("region"))
    latitude = models.DecimalField(_("latitude"), max_digits=9, decimal_places=6)
    longitude = models.DecimalField(_("longitude"), max_digits=9, decimal_places=6)
    time_zone = models.CharField(_("time zone"), max_length=64)
    site_type = models.CharField(
        _("site type"), max_length=16, choices=SiteType.choices, default=SiteType.RESIDENTIAL
    )
    on_grid = models.BooleanField(_("on-grid"), default=True)
    currency = models.CharField(
        _("currency unit"), max_length=3, choices=Currency.choices, default=Currency.EUR
    )
    temperature_unit = models.CharField(
        _("temperature unit"),
        max_length=1,
        choices=TemperatureUnit.choices,
        default=TemperatureUnit.CELSIUS,
    )
    capacity_kwp = models.DecimalField(_("capacity (kWp)"), max_digits=9, decimal_places=2)
    tariff_per_kwh = models.DecimalField(_("tariff per kWh"), max_digits=8, decimal_places=4)
    picture = models.ImageField(_("picture"), upload_to="sites/", blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    #: The guide's §4.1 status (online / offline / abnormal) of the site's devices, kept by
    #: the database itself: triggers on the inverter and gateway tables recompute it whenever a
    #: device's status or site changes (fleet migration 0003, rule in fleet/queries.py), so
    #: a list filtered by status reads a column instead of every device of the fleet.
    status = models.CharField(_("status"), max_length=8, default="offline", editable=False)

    objects = SiteQuerySet.as_manager()

    class Meta:
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("sites:detail", args=[self.pk])

    @property
    def picture_url(self) -> str:
        """Where the picture is shown from: a view that checks who may see this site."""
        return stored_file_url("files:site_picture", self.pk, self.picture)


class SiteDeviceQuerySet(ScopedQuerySet):
    """Gateways, inverters and their records: owners see those of the sites granted to them."""

    company_path = "company"

    def visible_to_owner(self, user):
        return self.filter(site__in=Site.objects.visible_to(user))
