"""Shared fixtures: two tenants (Helios with SunFix below it, and Nordlicht) with a user of
every role in each, and a client signed in as any of them."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection
from django.test import Client
from django.utils import timezone, translation

from accounts.models import CompanyType, Role
from tests import a11y, permission_matrix
from tests.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
from tests.factories import CompanyFactory, UserFactory
from tests.services import Mosquitto


def pytest_configure(config):
    """No persistent connections in tests: the live server's thread must not hold one when
    the test database is dropped."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A passing test fails when its `matrix` marker does not name exactly the URL patterns
    its assert_matrix calls requested, so the markers tests/test_url_coverage.py counts stay
    true (tests/permission_matrix.py)."""
    with permission_matrix.recording() as requested:
        result = yield
    declared = permission_matrix.marked_rows(item.iter_markers(permission_matrix.MARKER))
    if problem := permission_matrix.check_marker(declared, requested):
        pytest.fail(problem, pytrace=False)
    return result


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
    # The geocoding, weather and map providers are on the internet, which tests never use: a
    # port that refuses at once makes them "unavailable" (tests of the adapters point these at
    # tests/provider_server.py instead).
    refused = "http://127.0.0.1:9"
    settings.GEOCODING_URL = f"{refused}/search"
    settings.WEATHER_URL = f"{refused}/v1/forecast"
    settings.MAP_TILE_URL = refused + "/tile/{z}/{y}/{x}"
    cache.clear()
    yield
    # Middleware activates the signed-in user's language and time zone on the test thread;
    # the next test starts from the defaults again.
    translation.deactivate()
    timezone.deactivate()
    _disconnect_caches()


def _disconnect_caches() -> None:
    """Close the Redis connections of this test's cache: changing CACHES makes Django build a
    new cache object per test, and Django's RedisCache never closes its pools, so over the
    suite their sockets would exhaust the descriptors select() can watch (1024)."""
    for backend in caches.all(initialized_only=True):
        client = backend.__dict__.get("_cache")  # RedisCache's cached client, if it made one
        for pool in getattr(client, "_pools", {}).values():
            pool.disconnect()


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
def mosquitto_factory(tmp_path):
    """mosquitto_factory(extra config, anonymous=, name=) → a started private Mosquitto
    (tests/services.py); every broker it started is stopped after the test."""
    started: list[Mosquitto] = []

    def make(extra: str = "", *, anonymous: bool = True, name: str = "broker") -> Mosquitto:
        broker = Mosquitto(tmp_path / f"{name}{len(started)}", extra, anonymous=anonymous)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory) -> Mosquitto:
    """A private Mosquitto with anonymous access, for this test only."""
    return mosquitto_factory()


@pytest.fixture
def clean_samples(transactional_db):
    """The partitioned sample table is raw SQL, so Django's flush does not empty it."""
    with connection.cursor() as cur:
        cur.execute("TRUNCATE inverters_sample")
    yield


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
  const where = event.sourceFile ? ` at ${event.sourceFile}:${event.lineNumber}` : "";
  const sample = event.sample ? ` (${event.sample})` : "";
  console.error(`CSP violation: ${event.violatedDirective} blocked ${blocked}${where}${sample}`);
});
"""


# The Page methods after which the fixture checks the page with axe-core: the ways a test waits
# for a page to arrive.
AXE_CHECKPOINTS = ("goto", "reload", "go_back", "go_forward", "wait_for_url", "wait_for_load_state")


@pytest.fixture
def page(live_server, monkeypatch):
    """A headless Chromium page on the live server, at the screenshots' 1366×768.

    The test fails on any Content-Security-Policy violation, and on any critical or serious
    axe-core violation on any page it visited (tests/a11y.py)."""
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    axe_reports: list[dict] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Reduced motion: Bootstrap then shows dialogs without fading, so axe-core never
        # checks a dialog half faded in (its colours are not yet the real ones).
        context = browser.new_context(
            viewport=VIEWPORT, base_url=live_server.url, reduced_motion="reduce"
        )
        # Every Content-Security-Policy violation, as the browser reports it in the console.
        context.add_init_script(CSP_REPORTER)
        context.expose_binding(
            a11y.REPORT_BINDING, lambda source, report: axe_reports.append(report)
        )
        context.add_init_script(a11y.init_script())
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
        for name in AXE_CHECKPOINTS:
            monkeypatch.setattr(page, name, _checked(page, getattr(page, name)))
        page.set_default_timeout(10_000)
        yield page
        try:
            a11y.check(page)
            browser.close()
        finally:
            # While Playwright's event loop runs on this thread, Django keeps the thread's
            # connections apart from its synchronous ones (asgiref's Local): the ORM calls of
            # the test and its fixtures opened one there, which only this can close. Left
            # open, it keeps the test database from being dropped after the session.
            connections.close_all()
    assert not violations, f"the page broke its Content-Security-Policy: {violations}"
    problems = a11y.describe(axe_reports)
    assert not problems, "axe-core found critical or serious violations:\n" + "\n".join(problems)


def _checked(page, method):
    def call(*args, **kwargs):
        result = method(*args, **kwargs)
        a11y.check(page)
        return result

    return call
