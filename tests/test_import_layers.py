"""The layer contracts in pyproject.toml hold, and they do catch an upward import.

`python -m matricloud test` runs `lint-imports` before pytest; this test shows the contracts
are not vacuous: a copy of the code with one upward import added fails them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = (
    "devices", "ui", "accounts", "sites", "gateways", "inverters", "alarms", "ingest",
    "maintenance", "upgrades", "matricloud", "simulator",
)  # fmt: skip


def lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_code_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    ("module", "upward_import", "contract"),
    [
        ("gateways/models.py", "import maintenance.remote", "Portal layers"),
        ("ingest/service.py", "import maintenance.dispatch", "Portal layers"),
        ("devices/protocol.py", "import django.conf", "device package imports no Django"),
        ("simulator/fleet.py", "import gateways.models", "simulator knows only"),
        ("maintenance/dispatch.py", "import maintenance.tasks", "Remote-operations engine"),
    ],
)
def test_an_upward_import_breaks_the_build(code_copy, module, upward_import, contract):
    path = code_copy / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{upward_import}  # added by the test\n")
        result = lint(code_copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken
    assert module.removesuffix(".py").replace("/", ".") in broken
