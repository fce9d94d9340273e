"""`manage.py simulate`: the simulator (see simulator/README.md) with the portal's own fleet.

manage.py simulate                          # the gateways and inverters in the database
manage.py simulate --gateways 1000          # a synthetic fleet
manage.py simulate --backfill-days 30 --backfill-interval 300
manage.py simulate --fault ECH06S24100042:Protect0080   # to a running simulator
manage.py simulate --inverter ECH10K-TH-EU --modbus-port 5020

Without --gateways or --fleet, the database's fleet is written to a fleet file and the
simulator plays that; the simulator itself never reads the database.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from matricloud.fleet_file import write_fleet_file
from simulator.cli import add_arguments, run


class Command(BaseCommand):
    help = "Run simulated gateways and inverters (real MQTT and Modbus peers)."

    def add_arguments(self, parser) -> None:
        add_arguments(parser)

    def handle(self, *args, **options) -> None:
        level = {0: logging.WARNING, 1: logging.INFO}.get(options["verbosity"], logging.DEBUG)
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("pymodbus").setLevel(logging.WARNING)
        sends_only = (
            options["fault"] or options["clear_fault"] or options["ota_fault"]
        ) and not options["gateways"]
        with tempfile.TemporaryDirectory(prefix="matricloud-fleet-") as tmp:
            if options["gateways"] is None and not options["fleet"] and not options["inverter"]:
                if not sends_only:
                    options["fleet"] = str(Path(tmp) / "fleet.json")
                    write_fleet_file(Path(options["fleet"]))
            try:
                status = run(options, write=lambda line: self.stdout.write(line))
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        if status:
            raise CommandError(f"simulate finished with status {status}")
