"""`manage.py ingest`: the MQTT ingest process (status, telemetry, replies → PostgreSQL).

Run one per host with its own fixed client id; several workers share the load with
`--shared-group ingest` (each needs a distinct `--client-id`, since the broker keeps one
persistent session per id). SIGTERM/SIGINT finish the current batch, acknowledge it and exit.
"""

from __future__ import annotations

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from devices.protocol import BrokerAddress
from ingest.service import DEFAULT_CLIENT_ID, IngestService, tune_process


class Command(BaseCommand):
    help = "Subscribe to gateway status, telemetry and replies and store them."

    def add_arguments(self, parser):
        parser.add_argument("--broker", help="MQTT URL (default: settings.MQTT_URL)")
        parser.add_argument(
            "--client-id",
            default=getattr(settings, "INGEST_CLIENT_ID", DEFAULT_CLIENT_ID),
            help="fixed MQTT client id: the broker keeps this id's session while we are away",
        )
        parser.add_argument(
            "--shared-group",
            default=getattr(settings, "INGEST_SHARED_GROUP", None) or None,
            help="subscribe through $share/<group>/… so several workers split the traffic",
        )
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--flush-interval", type=float, default=0.5, help="seconds")
        parser.add_argument(
            "--receive-maximum",
            type=int,
            default=65535,
            help="MQTT 5 unacknowledged messages the broker may send us (memory bound)",
        )
        parser.add_argument("--log-interval", type=float, default=30.0, help="seconds")

    def handle(self, *args, **opts):
        logging.getLogger("inverters").setLevel(logging.INFO)
        broker = BrokerAddress.from_url(opts["broker"] or settings.MQTT_URL)
        service = IngestService(
            broker,
            client_id=opts["client_id"],
            shared_group=opts["shared_group"],
            batch_size=opts["batch_size"],
            flush_interval=opts["flush_interval"],
            receive_maximum=opts["receive_maximum"],
            log_interval=opts["log_interval"],
        )
        tune_process()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stop())
        self.stdout.write(
            f"ingest: {broker.host}:{broker.port} as {opts['client_id']}"
            + (f" in shared group {opts['shared_group']}" if opts["shared_group"] else "")
        )
        service.run()
