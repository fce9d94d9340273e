from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    """The remote-operations engine: operations, dispatch, tasks and the Maintenance pages."""

    name = "maintenance"
    verbose_name = "Maintenance"

    def ready(self) -> None:
        from gateways.signals import gateways_online
        from maintenance.tasks import on_gateways_online

        gateways_online.connect(on_gateways_online, dispatch_uid="maintenance-send-waiting")
