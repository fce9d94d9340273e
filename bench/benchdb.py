"""A database of a benchmark's own, on the server DATABASE_URL names, created from scratch and
dropped afterwards (shared by the scripts in this folder)."""

from __future__ import annotations

from urllib.parse import urlparse, urlunparse


def bench_database(base_url: str, suffix: str) -> tuple[str, str]:
    """(admin URL, bench URL): `<DATABASE_URL name>_<suffix>` on the same server."""
    parsed = urlparse(base_url)
    name = f"{parsed.path.lstrip('/') or 'matricloud'}_{suffix}"
    admin = urlunparse(parsed._replace(path="/postgres"))
    return admin, urlunparse(parsed._replace(path="/" + name))


def recreate_database(admin_url: str, bench_url: str, *, drop_only: bool = False) -> None:
    import psycopg

    name = urlparse(bench_url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django_on(bench_url: str) -> None:
    """Django on the bench database, as production runs it (no debug records of queries), with
    the test client's host allowed."""
    import os

    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matricloud.settings")
    os.environ["DJANGO_DEBUG"] = "false"
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]
