"""Where devices belong: a generation number that changes whenever a gateway is bound to or
unbound from a site, or an inverter is deleted.

Ingest caches which company and site each serial belongs to (ingest.batch.Registry); without
this it would go on filing a newly bound gateway's uploads under "no site" until its cache
expired. Writers call `placement_changed()` after their transaction commits; ingest compares
`placement_generation()` about once a second and re-reads what it cached when it moved.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction

PLACEMENT_KEY = "devices:placement-generation"


def placement_generation() -> int:
    """The current generation (0 until the first change; the cache is Redis, shared by every
    process)."""
    try:
        return int(cache.get(PLACEMENT_KEY) or 0)
    except Exception:  # noqa: BLE001 - a cache outage must not stop ingest; the TTL still holds
        return -1


def placement_changed() -> None:
    """Tell every process that caches placement to re-read it, once the change committed."""

    def bump() -> None:
        try:
            cache.incr(PLACEMENT_KEY)
        except ValueError:  # the key does not exist yet
            cache.set(PLACEMENT_KEY, 1, timeout=None)

    transaction.on_commit(bump)
