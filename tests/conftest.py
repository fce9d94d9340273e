"""Shared fixtures: two tenants (Helios with SunFix below it, and Nordlicht) with a user of
every role in each, and a client signed in as any of them."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.utils import timezone, translation

from accounts.models import CompanyType, Role
from tests.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
from tests.factories import CompanyFactory, UserFactory


def pytest_configure(config):
    """No persistent connections in tests: the live server's thread must not hold one when
    the test database is dropped."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _isolated_cache_and_mail(settings, tmp_path):
    """Each test starts with an empty cache (rate limits, axes) and its own mail folder."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{tmp_path.name}"}
    }
    settings.MAIL_DIR = tmp_path / "mail"
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    # Middleware activates the signed-in user's language and time zone on the test thread;
    # the next test starts from the defaults again.
    translation.deactivate()
    timezone.deactivate()


@pytest.fixture
def tenants(db):
    """Platform → Helios Distribution → SunFix Installers; Platform → Nordlicht Energie."""
    platform = CompanyFactory(type=CompanyType.PLATFORM, name="MatriCloud", superior=None)
    helios = CompanyFactory(
        type=CompanyType.DISTRIBUTOR, name="Helios Distribution", superior=platform, country="IT"
    )
    sunfix = CompanyFactory(
        type=CompanyType.INSTALLER, name="SunFix Installers", superior=helios, country="DE"
    )
    nordlicht = CompanyFactory(
        type=CompanyType.DISTRIBUTOR, name="Nordlicht Energie", superior=platform, country="DE"
    )
    ns = SimpleNamespace(platform=platform, helios=helios, sunfix=sunfix, nordlicht=nordlicht)
    ns.helios_admin = UserFactory(
        company=helios, role=Role.ADMIN, email="admin@helios.example", username="Helios Admin"
    )
    ns.helios_om = UserFactory(
        company=helios, role=Role.OM, email="om@helios.example", username="Helios O&M"
    )
    ns.sunfix_admin = UserFactory(
        company=sunfix, role=Role.ADMIN, email="admin@sunfix.example", username="SunFix Admin"
    )
    ns.sunfix_om = UserFactory(
        company=sunfix, role=Role.OM, email="om@sunfix.example", username="SunFix O&M"
    )
    ns.owner = UserFactory(
        company=sunfix, role=Role.OWNER, email="owner@sunfix.example", username="Olivia Owner"
    )
    ns.nordlicht_admin = UserFactory(
        company=nordlicht,
        role=Role.ADMIN,
        email="admin@nordlicht.example",
        username="Nordlicht Admin",
    )
    ns.nordlicht_om = UserFactory(
        company=nordlicht, role=Role.OM, email="om@nordlicht.example", username="Nordlicht O&M"
    )
    ns.nordlicht_owner = UserFactory(
        company=nordlicht, role=Role.OWNER, email="owner@nordlicht.example", username="Nora Owner"
    )
    return ns


@pytest.fixture
def client_for():
    """client_for(user) → a Client signed in as that user (None → anonymous)."""

    def make(user):
        client = Client()
        if user is not None:
            client.force_login(user, backend="accounts.backends.EmailBackend")
        return client

    return make


@pytest.fixture
def shots(tmp_path):
    """Where a browser test writes its screenshots: docs/screenshots/ with
    MATRICLOUD_SCREENSHOTS=1, a temporary folder otherwise."""
    folder = (
        Path(settings.BASE_DIR) / "docs" / "screenshots"
        if os.environ.get("MATRICLOUD_SCREENSHOTS")
        else tmp_path
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (event) => {
  const blocked = event.blockedURI || "inline";
  console.error(`CSP violation: ${event.violatedDirective} blocked ${blocked}`);
});
"""


@pytest.fixture
def page(live_server, monkeypatch):
    """A headless Chromium page on the live server, at the screenshots' 1366×768."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
        # Every Content-Security-Policy violation, as the browser reports it in the console.
        context.add_init_script(CSP_REPORTER)
        page = context.new_page()
        violations: list[str] = []
        page.on(
            "console",
            lambda message: (
                violations.append(message.text)
                if "Content Security Policy" in message.text or "CSP violation" in message.text
                else None
            ),
        )
        page.set_default_timeout(10_000)
        yield page
        browser.close()
    assert not violations, f"the page broke its Content-Security-Policy: {violations}"
