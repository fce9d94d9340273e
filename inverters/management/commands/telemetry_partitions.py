"""`manage.py telemetry_partitions`: create sample partitions ahead, drop expired ones."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from inverters.telemetry import (
    create_partitions_ahead,
    drop_expired_partitions,
    partition_days,
    retention_days,
)


class Command(BaseCommand):
    help = "Create daily sample partitions ahead and drop those older than the retention."

    def add_arguments(self, parser):
        parser.add_argument("--ahead", type=int, default=None, help="days (default: setting)")
        parser.add_argument(
            "--retention-days",
            type=int,
            default=None,
            help="keep this many days (default: TELEMETRY_RETENTION_DAYS)",
        )
        parser.add_argument("--no-drop", action="store_true", help="only create")

    def handle(self, *args, **opts):
        created = create_partitions_ahead(opts["ahead"])
        dropped = [] if opts["no_drop"] else drop_expired_partitions(opts["retention_days"])
        days = sorted(partition_days())
        span = f"{days[0]} … {days[-1]}" if days else "none"
        keep = opts["retention_days"] or retention_days()
        self.stdout.write(
            f"created {len(created)}, dropped {len(dropped)}; {len(days)} partitions ({span}), "
            f"retention {keep} days"
        )
