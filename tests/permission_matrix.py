"""The permission matrix: for one URL, every role of the own tenant and of a foreign tenant,
and the status each must get.

Own tenant = Helios (admin and O&M of Helios, the owner in SunFix below it); foreign tenant =
Nordlicht. Objects in URLs belong to the Helios tree, so a foreign user must get 404 (not 403:
a foreign object is not even acknowledged).

    @pytest.mark.matrix("accounts:company_list")
    def test_company_list(tenants, client_for):
        assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=403))

`url` may be a callable taking the actor's key, so a mutating POST gets a fresh object for
every actor.

Every URL pattern of the portal needs a row: tests/test_url_coverage.py fails for a pattern
that no test names in its `matrix` marker, and conftest.py fails a test whose requests through
`assert_matrix` are not exactly the patterns its marker names (a parametrized test names them
per parameter: `pytest.param(url, marks=pytest.mark.matrix(...))`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import pytest
from django.urls import Resolver404, resolve

ACTORS = {
    "anonymous": None,
    "admin": "helios_admin",
    "om": "helios_om",
    "owner": "owner",
    "foreign_admin": "nordlicht_admin",
    "foreign_om": "nordlicht_om",
    "foreign_owner": "nordlicht_owner",
}
MARKER = "matrix"


@dataclass
class Expect:
    admin: int = 200
    om: int = 200
    owner: int = 403
    anonymous: int = 302
    foreign_admin: int = 404
    foreign_om: int = 404
    foreign_owner: int = 404

    @classmethod
    def tenant_wide(cls, admin: int = 200, om: int = 200, owner: int = 403) -> Expect:
        """For pages without an object in the URL: a foreign user sees their own tenant's
        version of the page, so gets the same status as the same role at home."""
        return cls(admin, om, owner, 302, admin, om, owner)

    @classmethod
    def everyone(cls, status: int) -> Expect:
        """The same status for every actor, signed in or not."""
        return cls(**dict.fromkeys(ACTORS, status))


def assert_matrix(
    tenants,
    client_for,
    url: str | Callable[[str], str],
    expect: Expect,
    method: str = "get",
    data: dict | None = None,
    headers: dict | None = None,
) -> None:
    mismatches = []
    for actor, attribute in ACTORS.items():
        user = getattr(tenants, attribute) if attribute else None
        client = client_for(user)
        target = url(actor) if callable(url) else url
        _record(target)
        response = getattr(client, method)(target, data or {}, headers=headers or {})
        wanted = asdict(expect)[actor]
        if response.status_code != wanted:
            mismatches.append(
                f"{actor}: {method.upper()} {target} → {response.status_code}, expected {wanted}"
            )
    assert not mismatches, "permission matrix mismatches:\n" + "\n".join(mismatches)


# --- Which URL patterns a test covers ---------------------------------------------------------

_requested: set[str] | None = None


def _record(target: str) -> None:
    if _requested is None:
        return
    path = urlsplit(target).path
    try:
        _requested.add(resolve(path).view_name)
    except Resolver404:
        _requested.add(f"(no URL pattern) {path}")


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """The URL patterns (`namespace:name`) that assert_matrix requests inside the block."""
    global _requested
    outer, _requested = _requested, set()
    try:
        yield _requested
    finally:
        _requested = outer


_PARAMETER_SET = type(pytest.param(None))


def marked_rows(marks: Iterable) -> set[str]:
    """The URL patterns named by `matrix` markers among `marks`, including the marks of
    `pytest.param(...)` values of a `parametrize` marker."""
    names: set[str] = set()
    for mark in marks:
        if mark.name == MARKER:
            names.update(mark.args)
        elif mark.name == "parametrize":
            values = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("argvalues", ())
            for value in values:
                if isinstance(value, _PARAMETER_SET):
                    names |= marked_rows(value.marks)
    return names


def check_marker(declared: set[str], requested: set[str]) -> str | None:
    """Why a test's `matrix` marker does not match what it requested, or None."""
    if declared == requested:
        return None
    lines = [f"the test's @pytest.mark.{MARKER}(...) does not match its assert_matrix calls:"]
    if unmarked := sorted(requested - declared):
        lines.append(f"  requested but not in the marker: {', '.join(unmarked)}")
    if unrequested := sorted(declared - requested):
        lines.append(f"  in the marker but never requested: {', '.join(unrequested)}")
    return "\n".join(lines)
