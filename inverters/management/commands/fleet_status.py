"""`manage.py fleet_status [--json]`: how the fleet and ingest are doing, at a glance.

With --json it prints ONE JSON object (for scripts and health checks): gateways_total,
gateways_online, inverters_total, inverters_reporting (a sample received within the last two
upload intervals of its gateway), samples, newest_sample_age_s, rejected_messages, open_alarms.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection

from inverters.telemetry import SAMPLE_TABLE

_SQL = f"""
SELECT
  (SELECT count(*) FROM gateways_gateway),
  (SELECT count(*) FROM gateways_gateway WHERE status = 'online'),
  (SELECT count(*) FROM inverters_inverter),
  (SELECT count(*) FROM inverters_inverterlatest l
     JOIN inverters_inverter i ON i.id = l.inverter_id
     LEFT JOIN gateways_gateway g ON g.id = i.gateway_id
    WHERE l.received_at >= now() - make_interval(secs => 2 * COALESCE(g.upload_interval_s, 60))),
  (SELECT count(*) FROM {SAMPLE_TABLE}),
  (SELECT extract(epoch FROM now() - max(ts)) FROM inverters_inverterlatest),
  (SELECT count(*) FROM inverters_rejectedmessage),
  (SELECT count(*) FROM alarms_alarm WHERE status = 'occurring')
"""
FIELDS = (
    "gateways_total",
    "gateways_online",
    "inverters_total",
    "inverters_reporting",
    "samples",
    "newest_sample_age_s",
    "rejected_messages",
    "open_alarms",
)


def fleet_status() -> dict[str, Any]:
    """The whole fleet (an operator view, not scoped to a user)."""
    with connection.cursor() as cur:
        cur.execute(_SQL)
        row = cur.fetchone()
    out = dict(zip(FIELDS, row, strict=True))
    age = out["newest_sample_age_s"]
    out["newest_sample_age_s"] = None if age is None else round(float(age), 1)
    return out


class Command(BaseCommand):
    help = "Print gateway, inverter, sample, rejected-message and alarm counts."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args, **opts):
        status = fleet_status()
        if opts["json"]:
            self.stdout.write(json.dumps(status))
            return
        width = max(len(k) for k in FIELDS)
        for key in FIELDS:
            value = status[key]
            shown = "–" if value is None else value
            self.stdout.write(f"{key.replace('_', ' '):<{width}}  {shown}")
