from django.apps import AppConfig


class SitesConfig(AppConfig):
    """Our sites app; labelled so it can never be mistaken for django.contrib.sites."""

    name = "sites"
    label = "pv_sites"
    verbose_name = "Sites"
