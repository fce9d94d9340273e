"""`manage.py simulate`: simulated gateways (MQTT) and inverters (Modbus) — see simulator/README.md.

manage.py simulate                          # the gateways and inverters in the database
manage.py simulate --gateways 1000          # a synthetic fleet
manage.py simulate --backfill-days 30 --backfill-interval 300
manage.py simulate --fault INV0001:Protect0080      # to a running simulator
manage.py simulate --inverter ECH10K-TH-EU --modbus-port 5020
"""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

from simulator.cli import add_arguments, run
from simulator.sources import specs_from_db


class Command(BaseCommand):
    help = "Run simulated gateways and inverters (real MQTT and Modbus peers)."

    def add_arguments(self, parser) -> None:
        add_arguments(parser, with_db=True)

    def handle(self, *args, **options) -> None:
        level = {0: logging.WARNING, 1: logging.INFO}.get(options["verbosity"], logging.DEBUG)
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("pymodbus").setLevel(logging.WARNING)
        try:
            status = run(
                options,
                load_db_specs=specs_from_db,
                write=lambda line: self.stdout.write(line),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if status:
            raise CommandError(f"simulate finished with status {status}")
