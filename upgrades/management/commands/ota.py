"""`manage.py ota`: the firmware delivery process (chunk requests → chunks, reports → jobs).

One per host with its own fixed client id (the broker keeps one persistent session per id);
several processes share the gateways' requests with `--shared-group ota`, each with a distinct
`--client-id`. SIGTERM/SIGINT write the progress heard so far and exit.
"""

from __future__ import annotations

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from devices.protocol import BrokerAddress
from upgrades.delivery import DeliveryService


class Command(BaseCommand):
    help = "Serve firmware chunks to gateways and record how their upgrades go."

    def add_arguments(self, parser):
        parser.add_argument("--broker", help="MQTT URL (default: settings.MQTT_URL)")
        parser.add_argument(
            "--client-id",
            default=settings.OTA_CLIENT_ID,
            help="fixed MQTT client id: the broker keeps this id's session while we are away",
        )
        parser.add_argument(
            "--shared-group",
            default=getattr(settings, "OTA_SHARED_GROUP", None) or None,
            help="subscribe through $share/<group>/… so several processes split the requests",
        )
        parser.add_argument("--log-interval", type=float, default=60.0, help="seconds")
        parser.add_argument(
            "--progress-interval",
            type=float,
            default=2.0,
            help="seconds between writes of the bytes received (one UPDATE for all targets)",
        )

    def handle(self, *args, **opts):
        logging.getLogger("upgrades").setLevel(logging.INFO)
        broker = BrokerAddress.from_url(opts["broker"] or settings.MQTT_URL)
        service = DeliveryService(
            broker,
            client_id=opts["client_id"],
            shared_group=opts["shared_group"],
            log_interval=opts["log_interval"],
            progress_interval=opts["progress_interval"],
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stop())
        self.stdout.write(
            f"ota: {broker.host}:{broker.port} as {opts['client_id']}"
            + (f" in shared group {opts['shared_group']}" if opts["shared_group"] else ""),
        )
        self.stdout.flush()
        service.run()
