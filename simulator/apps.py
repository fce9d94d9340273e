from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """Installed only for `manage.py simulate`; the simulator has no models."""

    name = "simulator"
    verbose_name = "Device simulator"
