"""A list download at scale: 100,000 rows of Account → Activity log as CSV and XLSX, streamed,
against a baseline measured in the same run — loading the same rows as model objects.

The shared list block (ui/lists.py, ui/export.py) streams downloads from a server-side cursor
in chunks, so its memory must stay flat whatever the number of rows. This script creates its own
database (`<DATABASE_URL name>_bench_download`) from the migrations, fills it with `--rows`
audit events visible to one administrator, then, each measured with tracemalloc (peak Python
memory, in a run of its own) and a wall clock:

1. baseline: `list(AuditEvent.objects.visible_to(admin))` — every row as a model object;
2. the page's CSV download (`?export=csv`) through Django's test client, every chunk read;
3. the same for XLSX (`?export=xlsx`, openpyxl in write-only mode).

    .venv/bin/python bench/list_download.py [--rows 100000]

The database is dropped afterwards. The last line is one JSON object: rows, the seconds and peak
MiB of each, and each download's peak as a ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import bench_database, recreate_database, setup_django_on  # noqa: E402


def measured(work) -> tuple[float, float, int]:
    """(seconds, peak MiB, result size) of `work()`: timed in one run, and its memory traced in
    a second (tracemalloc slows Python down several times)."""
    gc.collect()
    started = time.perf_counter()
    size = work()
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/matricloud")
    admin_url, bench_url = bench_database(base_url, "bench_download")
    recreate_database(admin_url, bench_url)
    setup_django_on(bench_url)
    from django.core.management import call_command
    from django.test import Client

    try:
        call_command("migrate", verbosity=0)
        from accounts.models import AuditAction, AuditEvent, Company, CompanyType, Role, User

        company = Company.objects.create(
            name="Helios Distribution", type=CompanyType.DISTRIBUTOR, country="IT"
        )
        admin = User.objects.create_user(
            email="admin@helios.example",
            password="Bench-Password1",
            username="Helios Admin",
            company=company,
            role=Role.ADMIN,
        )
        started = time.perf_counter()
        batch = []
        for i in range(args.rows):
            batch.append(
                AuditEvent(
                    actor=admin,
                    actor_label=admin.email,
                    company=company,
                    company_path=company.path,
                    action=AuditAction.USER_EDITED,
                    object_type="accounts.user",
                    object_id=str(i),
                    object_label=f"Installer {i:06d}",
                    before={"description": ""},
                    after={"description": f"Service team {i}"},
                )
            )
            if len(batch) == 5000:
                AuditEvent.objects.bulk_create(batch)
                batch = []
        AuditEvent.objects.bulk_create(batch)
        print(f"{args.rows} audit events created in {time.perf_counter() - started:.1f} s")

        client = Client()
        client.force_login(admin, backend="accounts.backends.EmailBackend")

        def load_objects() -> int:
            return len(list(AuditEvent.objects.visible_to(admin)))

        def download(fmt: str):
            def work() -> int:
                response = client.get(f"/account/activity/?export={fmt}")
                assert response.status_code == 200, response.status_code
                assert response.streaming, "a download must be streamed"
                return sum(len(chunk) for chunk in response.streaming_content)

            return work

        results = {"rows": args.rows}
        for name, work in (
            ("objects", load_objects),
            ("csv", download("csv")),
            ("xlsx", download("xlsx")),
        ):
            seconds, peak, size = measured(work)
            results[f"{name}_s"] = round(seconds, 2)
            results[f"{name}_peak_mib"] = round(peak, 1)
            unit = "rows" if name == "objects" else "bytes"
            print(f"{name:8} {seconds:7.2f} s  peak {peak:7.1f} MiB  ({size} {unit})")
        for name in ("csv", "xlsx"):
            results[f"{name}_peak_ratio_to_objects"] = round(
                results[f"{name}_peak_mib"] / results["objects_peak_mib"], 3
            )
        print(json.dumps(results))
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(admin_url, bench_url, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
