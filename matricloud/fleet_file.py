"""The portal's gateways and inverters as a simulator fleet file.

The simulator knows nothing of the portal: it learns which devices to play from a JSON file
(format: simulator/README.md, "Fleet file"). This module writes that file from the database,
for `make run` and `manage.py simulate`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateways.models import Gateway


def fleet_rows(gateways: Iterable[Gateway] | None = None) -> list[dict[str, Any]]:
    """One row per gateway with its inverters, PV power split by the inverters' rated power."""
    queryset = gateways if gateways is not None else Gateway.objects.all()
    queryset = queryset.select_related("site").prefetch_related("inverters")
    rows = []
    for gw in queryset:
        inverters = sorted(gw.inverters.all(), key=lambda inv: inv.modbus_address)
        site = gw.site
        rated = {inv.pk: float(inv.rated_power_kw or 0) for inv in inverters}
        total_rated = sum(rated.values())
        capacity = float(site.capacity_kwp) if site is not None and site.capacity_kwp else None
        rows.append(
            {
                "serial": gw.serial_number,
                "model": gw.model,
                "firmware": gw.firmware_version or "10.00",
                "upload_interval_s": gw.upload_interval_s or 60,
                "settings": gw.settings if isinstance(gw.settings, dict) else None,
                "site": None
                if site is None
                else {
                    "name": site.name,
                    "latitude": float(site.latitude),
                    "longitude": float(site.longitude),
                    "time_zone": site.time_zone,
                },
                "inverters": [
                    {
                        "serial": inv.serial_number,
                        "model": inv.model,
                        "address": inv.modbus_address,
                        "firmware": dict(inv.firmware_versions or {}),
                        "pv_kwp": _pv_share(capacity, rated[inv.pk], total_rated, len(inverters)),
                    }
                    for inv in inverters
                ],
            }
        )
    return rows


def _pv_share(capacity: float | None, rated: float, total_rated: float, n: int) -> float | None:
    if capacity is None:
        return None
    if total_rated and rated:
        return capacity * rated / total_rated
    return capacity / n


def write_fleet_file(path: Path, gateways: Iterable[Gateway] | None = None) -> int:
    """Write the fleet file atomically; returns the number of gateways in it."""
    rows = fleet_rows(gateways)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"gateways": rows}, out, indent=1)
    os.replace(tmp, path)
    return len(rows)
