"""Every URL pattern of the portal has a row in the permission matrix (tests/permission_matrix.py):
some test names it in its `matrix` marker, and conftest.py makes sure that test requests it
for every role of the own and of a foreign tenant."""

import importlib
from pathlib import Path

from django.urls import URLPattern, URLResolver, get_resolver
from django.views import static

from tests.permission_matrix import marked_rows

TESTS = Path(__file__).resolve().parent


def url_patterns(resolver: URLResolver | None = None, namespace: str = "") -> dict[str, str]:
    """`namespace:name` → route of every URL pattern, through every include."""
    resolver = resolver or get_resolver()
    found: dict[str, str] = {}
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            # Django's admin is Django's own: staff flags and model permissions decide there,
            # not the portal's roles and tenants.
            if entry.namespace == "admin":
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            for name, route in url_patterns(entry, inner).items():
                found[name] = f"{entry.pattern}{route}"
        elif isinstance(entry, URLPattern):
            # Static files and raw media, when served in development, are public files with no
            # permission to check (stored files go through files/, which is in the matrix).
            if entry.callback is static.serve:
                continue
            route = str(entry.pattern)
            found[f"{namespace}{entry.name}" if entry.name else f"(unnamed) {route}"] = route
    return found


def matrix_rows() -> set[str]:
    """Every URL pattern named by a `matrix` marker in a test module."""
    rows: set[str] = set()
    for path in sorted(TESTS.glob("test_*.py")):
        module = importlib.import_module(f"tests.{path.stem}")
        rows |= marked_rows(_marks(module))
        for name, obj in vars(module).items():
            if name.startswith("test") and callable(obj):
                rows |= marked_rows(_marks(obj))
            elif name.startswith("Test") and isinstance(obj, type):
                rows |= marked_rows(_marks(obj))
                for attribute, method in vars(obj).items():
                    if attribute.startswith("test") and callable(method):
                        rows |= marked_rows(_marks(method))
    return rows


def _marks(obj) -> list:
    marks = getattr(obj, "pytestmark", [])
    return marks if isinstance(marks, list) else [marks]


def test_every_url_pattern_has_a_row_in_the_permission_matrix():
    patterns = url_patterns()
    missing = sorted(set(patterns) - matrix_rows())
    assert not missing, "URL patterns without a permission-matrix row:\n" + "\n".join(
        f"  {name}  ({patterns[name]})" for name in missing
    )


def test_every_matrix_row_names_a_url_pattern():
    unknown = sorted(matrix_rows() - set(url_patterns()))
    assert not unknown, f"matrix markers name URL patterns that do not exist: {unknown}"
