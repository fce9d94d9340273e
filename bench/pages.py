"""Page server times at fleet scale, beside a trivial view with the same middleware.

Seeds its own database (`<DATABASE_URL name>_bench_pages`) from the migrations with one
distributor tenant of `--sites` sites (10,000), two inverters per site on one gateway each
(20,000), two years of daily energy rollups per inverter and per site (and the monthly site
rollups ingest keeps), one day of 5-minute samples for every inverter, latest values, and a
few hundred alarms. The rows are generated in SQL (`generate_series`), so seeding takes minutes,
not hours. Rows go in the order ingest writes them, day after day, so a day's rows lie together
on disk as they do in production.

Then, signed in as the distributor's administrator, it requests each page through Django's
test client (the full middleware stack, no network), `--repeat` times after a warm-up, and
reports the server-side p50 and p95 of (round robin, one request of each per round, so the
machine's noise falls on all alike):

- `baseline`: a trivial view behind the same middleware and sign-in (it only answers "ok");
- `home` (with the per-user cache of past months' sums warm, as a user's next visit finds it,
  and the live figures from the company snapshot that `fleet.tasks.refresh_home_snapshot`
  keeps — the bench refreshes it between rounds every HOME_SNAPSHOT_INTERVAL_S, as Celery
  beat does), `home_cold_cache` (the cache emptied before every request: no snapshot, no past
  months, Home computes everything itself), `home_figures` (the cards the page polls every
  minute), `site_list`, `site_list_filtered` (status and a name search),
  `gateway_list` (the gateway dashboard and list), `inverter_list`, `inverter_data` (page 3 of
  an inverter's Data tab: today's 5-minute samples, every decoded point), `site_energy_month` (a
  site's Energy month JSON), `inverter_day_chart` (a day of one inverter's PV power from the
  partitioned samples).

It also reports `home_snapshot_refresh`: how long the periodic task takes for the whole
platform (background work, not a page).

    .venv/bin/python bench/pages.py [--sites 10000] [--repeat 60]

The database is dropped afterwards (`--keep` keeps it for a rerun with `--reuse`). The last
line is one JSON object: a key per page with `p50_ms` and `p95_ms`, and `baseline`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import bench_database, recreate_database, setup_django_on  # noqa: E402

DAYS = 730
SAMPLES_PER_DAY = 288  # every 5 minutes


def seed(sites: int) -> None:
    """The tenant, generated in SQL; prints how long each part took."""
    from django.db import connection

    from accounts.models import Company, CompanyType, Role, User
    from devices.decoding import codec_for_model
    from inverters.telemetry import ensure_partitions, layout_id_for

    platform = Company.objects.create(name="MatriCloud", type=CompanyType.PLATFORM)
    helios = Company.objects.create(
        name="Helios Distribution", type=CompanyType.DISTRIBUTOR, country="IT", superior=platform
    )
    installers = [
        Company.objects.create(
            name=f"Installer {i:02d}", type=CompanyType.INSTALLER, country="IT", superior=helios
        )
        for i in range(10)
    ]
    User.objects.create_user(
        email="admin@helios.example",
        password="Bench-Password1",
        username="Helios Admin",
        company=helios,
        role=Role.ADMIN,
    )
    today = dt.date.today()  # noqa: DTZ011 - the seeded days end on the run's own day
    first = today - dt.timedelta(days=DAYS - 1)
    ensure_partitions([today])
    layout = layout_id_for(codec_for_model("ECH10K-TH-EU"))
    ids = "{" + ",".join(str(c.pk) for c in installers) + "}"
    steps = [
        (
            "sites",
            f"""
            INSERT INTO pv_sites_site (company_id, name, address, country, latitude, longitude,
                time_zone, site_type, on_grid, currency, temperature_unit, capacity_kwp,
                tariff_per_kwh, picture, created_at)
            SELECT ('{ids}'::bigint[])[1 + g % 10], 'Site ' || lpad(g::text, 5, '0'),
                   'Via Roma ' || g, 'IT', 45 + (g % 100) / 100.0, 9 + (g % 100) / 100.0,
                   'Europe/Rome', 'residential', true,
                   CASE WHEN g % 5 = 0 THEN 'CHF' ELSE 'EUR' END, 'C', 6 + g % 10,
                   0.25, '', now()
            FROM generate_series(1, {sites}) g
            """,
        ),
        (
            "gateways",
            """
            INSERT INTO gateways_gateway (serial_number, name, model, firmware_version,
                company_id, site_id, status, last_seen_at, upload_interval_s, settings,
                mqtt_password_hash, created_at)
            SELECT 'GW' || lpad(s.id::text, 8, '0'), '', 'CPS WiFi Kit', '1.0.0', s.company_id,
                   s.id, CASE WHEN s.id % 10 = 0 THEN 'offline' ELSE 'online' END, now(), 60,
                   '{}', '', now()
            FROM pv_sites_site s
            """,
        ),
        (
            "inverters",
            """
            INSERT INTO inverters_inverter (serial_number, name, model, gateway_id,
                modbus_address, company_id, site_id, firmware_versions, status,
                rated_power_kw, last_seen_at, created_at)
            SELECT 'INV' || lpad(g.id::text, 8, '0') || a, '', 'ECH10K-TH-EU', g.id, a,
                   g.company_id, g.site_id, '{"dsp": "1.0", "lcd": "1.0"}',
                   CASE WHEN g.status = 'offline' THEN 'offline'
                        WHEN g.id % 97 = 0 AND a = 1 THEN 'fault' ELSE 'running' END,
                   10, now(), now()
            FROM gateways_gateway g CROSS JOIN generate_series(1, 2) a
            """,
        ),
        (
            "latest values",
            """
            INSERT INTO inverters_inverterlatest (inverter_id, company_id, site_id, ts,
                received_at, device_status, pv_power, batt_power, grid_power, load_power,
                inv_power, batt_soc, pv_energy_total, fault_codes, device_info)
            SELECT i.id, i.company_id, i.site_id, now(), now(), i.status,
                   2000 + i.id % 3000, -500, 300, 1500, 1800, 40 + i.id % 60,
                   10000 + i.id % 5000, '{}', '{}'
            FROM inverters_inverter i
            """,
        ),
        (
            "inverter days (2 years)",
            f"""
            INSERT INTO inverters_energydaily (inverter_id, company_id, site_id, day, samples,
                pv_kwh, charge_kwh, discharge_kwh, import_kwh, export_kwh, load_kwh,
                peak_power_w, min_soc, max_soc, updated_at)
            SELECT i.id, i.company_id, i.site_id, d::date, 288,
                   20 + (i.id + extract(doy FROM d)) % 15, 5, 4, 3, 6, 18, 6500, 20, 95, now()
            FROM generate_series('{first}'::date, '{today}'::date, '1 day') d
            CROSS JOIN inverters_inverter i
            ORDER BY d, i.id
            """,
        ),
        (
            "site days (2 years)",
            """
            INSERT INTO inverters_siteenergydaily (site_id, company_id, day, pv_kwh,
                charge_kwh, discharge_kwh, import_kwh, export_kwh, load_kwh, peak_power_w,
                min_soc, max_soc, inverters, updated_at)
            SELECT site_id, company_id, day, sum(pv_kwh), sum(charge_kwh), sum(discharge_kwh),
                   sum(import_kwh), sum(export_kwh), sum(load_kwh), sum(peak_power_w),
                   min(min_soc), max(max_soc), count(*), now()
            FROM inverters_energydaily GROUP BY site_id, company_id, day
            ORDER BY day, site_id
            """,
        ),
        (
            "site months",
            """
            INSERT INTO inverters_siteenergymonthly (site_id, company_id, month, pv_kwh,
                charge_kwh, discharge_kwh, import_kwh, export_kwh, load_kwh, days, updated_at)
            SELECT site_id, company_id, date_trunc('month', day)::date, sum(pv_kwh),
                   sum(charge_kwh), sum(discharge_kwh), sum(import_kwh), sum(export_kwh),
                   sum(load_kwh), count(*), now()
            FROM inverters_siteenergydaily GROUP BY site_id, company_id, 3
            ORDER BY 3, site_id
            """,
        ),
        (
            "samples (one day, 5 min)",
            f"""
            INSERT INTO inverters_sample (inverter_id, ts, layout_id, run_status, pv_power,
                batt_power, grid_power, load_power, inv_power, batt_soc, pv_energy_total)
            SELECT i.id, '{today}'::timestamptz + make_interval(mins => 5 * k), {layout}, 2,
                   greatest(0, 5000 * sin(pi() * (k - 72) / 144)), -300, 200, 1500, 1800,
                   50, 10000 + k * 0.1
            FROM generate_series(0, {SAMPLES_PER_DAY - 1}) k CROSS JOIN inverters_inverter i
            ORDER BY k, i.id
            """,
        ),
        (
            "alarms",
            """
            INSERT INTO alarms_alarm (inverter_id, company_id, site_id, code, level, message,
                occurred_at, recovered_at, status, created_at)
            SELECT i.id, i.company_id, i.site_id, 'Protect0080',
                   (ARRAY['urgent', 'important', 'common', 'prompt'])[1 + i.id % 4],
                   'Grid Undervolt', now() - make_interval(hours => (i.id % 20)::int), NULL,
                   'occurring', now()
            FROM inverters_inverter i WHERE i.id % 50 = 0
            """,
        ),
    ]
    with connection.cursor() as cursor:
        for label, sql in steps:
            started = time.perf_counter()
            table = sql.split("INSERT INTO", 1)[1].split()[0]
            with indexes_built_after(cursor, table):
                cursor.execute(sql)
                rows = cursor.rowcount
            took = time.perf_counter() - started
            print(f"seeded {label:28} {rows:>10} rows {took:6.1f} s")
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE")
        print(f"vacuum analyze {time.perf_counter() - started:.1f} s")


@contextlib.contextmanager
def indexes_built_after(cursor, table: str):
    """Insert into `table` without its secondary indexes and unique constraints, then build
    them once (minutes instead of most of an hour for 14.6 million rows)."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'u'",
        [table],
    )
    constraints = cursor.fetchall()
    for name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s "
        "AND i.indexname NOT IN (SELECT conname FROM pg_constraint "
        "WHERE conrelid = %s::regclass)",
        [table, table],
    )
    indexes = cursor.fetchall()
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="use a kept database as it is")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/matricloud")
    admin_url, bench_url = bench_database(base_url, "bench_pages")
    if not args.reuse:
        recreate_database(admin_url, bench_url)
    setup_django_on(bench_url)
    from django.contrib.auth.decorators import login_required
    from django.core.cache import cache
    from django.core.management import call_command
    from django.http import HttpResponse
    from django.test import Client
    from django.urls import clear_url_caches, path, reverse

    @login_required
    def trivial(request):
        return HttpResponse("ok")

    import matricloud.urls

    matricloud.urls.urlpatterns.append(path("bench-trivial/", trivial, name="bench_trivial"))
    clear_url_caches()
    keep = args.keep or args.reuse
    try:
        call_command("migrate", verbosity=0)
        if not args.reuse:
            seed(args.sites)
        from accounts.models import User
        from inverters.models import Inverter
        from sites.models import Site

        admin = User.objects.get(email="admin@helios.example")
        client = Client()
        client.force_login(admin, backend="accounts.backends.EmailBackend")
        site = Site.objects.order_by("pk")[args.sites // 2]
        inverter = Inverter.objects.filter(site=site).order_by("pk").first()
        today = dt.date.today()  # noqa: DTZ011
        live = {"HX-Request": "true", "HX-Target": "home-live"}
        # name → (URL, htmx headers, whether the cache is emptied before each request)
        pages = {
            "baseline": (reverse("bench_trivial"), {}, False),
            "home": (reverse("home"), {}, False),
            "home_cold_cache": (reverse("home"), {}, True),
            "home_figures": (reverse("home"), live, False),
            "site_list": (reverse("sites:list"), {}, False),
            "site_list_filtered": (
                reverse("sites:list") + "?status=online&name=Site+0",
                {},
                False,
            ),
            "gateway_list": (reverse("gateways:list"), {}, False),
            "inverter_list": (reverse("inverters:list"), {}, False),
            "inverter_data": (reverse("inverters:data", args=[inverter.pk]) + "?page=3", {}, False),
            "site_energy_month": (
                reverse("sites:energy_data", args=[site.pk])
                + f"?period=month&date={today:%Y-%m-%d}",
                {},
                False,
            ),
            "inverter_day_chart": (
                reverse("sites:chart_data", args=[site.pk])
                + f"?inverter={inverter.pk}&points=pv_power&start={today:%Y-%m-%d}"
                + f"&end={today:%Y-%m-%d}",
                {},
                False,
            ),
        }
        from django.conf import settings

        from fleet import snapshot

        refresh_times: list[float] = []

        def refresh_snapshot() -> float:
            started = time.perf_counter()
            snapshot.refresh()
            refresh_times.append((time.perf_counter() - started) * 1000)
            return time.monotonic()

        refreshed = refresh_snapshot()
        for name, (url, headers, _) in pages.items():
            for _ in range(3):  # warm-up: connections, plans
                response = client.get(url, headers=headers)
                assert response.status_code == 200, (name, url, response.status_code)
        # Round robin: each round requests every page once, so the machine's noise falls on
        # the baseline and the pages alike.
        times: dict[str, list[float]] = {name: [] for name in pages}
        for _ in range(args.repeat):
            if time.monotonic() - refreshed >= settings.HOME_SNAPSHOT_INTERVAL_S:
                refreshed = refresh_snapshot()
            for name, (url, headers, cold) in pages.items():
                if cold:
                    cache.clear()
                started = time.perf_counter()
                response = client.get(url, headers=headers)
                times[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (name, url, response.status_code)
                if cold:
                    refreshed = refresh_snapshot()  # as beat would have it, for the next pages
        results: dict[str, dict[str, float]] = {}
        for name, measured in times.items():
            results[name] = {
                "p50_ms": round(statistics.median(measured), 1),
                "p95_ms": round(percentile(measured, 0.95), 1),
            }
            print(
                f"{name:20} p50 {results[name]['p50_ms']:7.1f} ms  "
                f"p95 {results[name]['p95_ms']:7.1f} ms  {pages[name][0]}"
            )
        print(
            f"{'home_snapshot_refresh':20} p50 {statistics.median(refresh_times):7.1f} ms  "
            f"(background task, {len(refresh_times)} runs)"
        )
        baseline = results["baseline"]["p95_ms"] or 0.1
        for figures in results.values():
            figures["p95_ratio_to_baseline"] = round(figures["p95_ms"] / baseline, 1)
        results["home_snapshot_refresh"] = {
            "p50_ms": round(statistics.median(refresh_times), 1),
            "p95_ms": round(percentile(refresh_times, 0.95), 1),
        }
        print(json.dumps(results))
    finally:
        from django.db import connections

        connections.close_all()
        if not keep:
            recreate_database(admin_url, bench_url, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
