"""The Content-Security-Policy: self-hosted scripts and styles only, no inline script or style.

The browser journeys (tests/conftest.py `page`) fail on any violation the browser reports; these
tests check the header itself and that no template brings inline code back."""

import base64
import hashlib
import re
from pathlib import Path

import pytest
from django.conf import settings

TEMPLATES = Path(settings.BASE_DIR) / "templates"
APPS = ("accounts", "sites", "gateways", "inverters", "upgrades", "alarms", "matricloud")
INLINE_CODE = (r"<script(?![^>]*\bsrc=)[^>]*>", r"\sstyle=\"", r"<style", r"\son[a-z]+=\"")


def _policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/account/login/", "/account/register/", "/"])
def test_pages_send_a_policy_without_inline_script(client, url):
    policy = _policy(client.get(url))
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["style-src"] and "'unsafe-eval'" not in str(policy)
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_production_settings_keep_the_policy_and_upgrade_requests(monkeypatch):
    import importlib

    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 50)
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "portal.example.com")
    production = importlib.import_module("matricloud.settings_production")
    directives = production.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    assert directives["script-src"] == ["'self'"]
    assert directives["upgrade-insecure-requests"] is True
    assert "csp.middleware.CSPMiddleware" in production.MIDDLEWARE


def test_no_template_has_inline_script_style_or_handlers():
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        if path.name == "500.html":  # standalone, its one style element is allowed by hash
            continue
        for pattern in INLINE_CODE:
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(TEMPLATES)}: {pattern}")
    assert offenders == []


def test_no_python_code_builds_markup_with_inline_style():
    base = Path(settings.BASE_DIR)
    offenders = [
        str(path.relative_to(base))
        for app in APPS
        for path in (base / app).rglob("*.py")
        if re.search(r"\sstyle=|<script(?![^>]*\bsrc=)", path.read_text())
    ]
    assert offenders == []


def test_the_500_page_style_matches_its_hash():
    text = (TEMPLATES / "500.html").read_text()
    css = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert settings.CSP_500_PAGE_STYLE_HASH == f"'sha256-{digest}'"
