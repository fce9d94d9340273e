from django.apps import AppConfig


class IngestConfig(AppConfig):
    """Gateway traffic in: decode, batch, store telemetry, statuses and replies."""

    name = "ingest"
    verbose_name = "Ingest"
