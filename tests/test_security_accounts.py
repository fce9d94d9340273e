"""Account security: the lockout behind a reverse proxy, role rank in user management, the
current password before account changes, idle sessions, and names that hide characters.

Each section first replays the attack as it was reported, then shows what still works.
"""

import datetime
import re
import runpy
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.middleware import LAST_SEEN_AT, SIGNED_IN_AT
from accounts.models import User
from accounts.validators import validate_display_name
from tests.factories import DEMO_PASSWORD
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

LOGIN_URL = reverse("accounts:login")
WRONG = "Wrong-pass1!"
PROXY = "10.0.0.254"  # the reverse proxy, as web sees it (REMOTE_ADDR)
ATTACKER = "198.51.100.7"
COLLEAGUE = "203.0.113.20"
OTHER_COLLEAGUE = "203.0.113.21"


def sign_in(client, email, password=DEMO_PASSWORD, forwarded_for=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    return client.post(LOGIN_URL, {"username": email, "password": password}, **extra)


@pytest.fixture
def behind_one_proxy(settings, monkeypatch):
    """The settings that matricloud/settings.py derives from AXES_PROXY_COUNT=1."""
    monkeypatch.setenv("AXES_PROXY_COUNT", "1")
    derived = runpy.run_path(str(Path(django_settings.BASE_DIR) / "matricloud" / "settings.py"))
    for name in ("AXES_IPWARE_META_PRECEDENCE_ORDER", "AXES_IPWARE_PROXY_COUNT", "IPWARE_STRICT"):
        setattr(settings, name, derived[name])


def through_proxy(client_address: str, forged: str = "") -> str:
    """X-Forwarded-For as web receives it: what the client sent, then the address the proxy
    saw (nginx's $proxy_add_x_forwarded_for)."""
    return f"{forged}, {client_address}" if forged else client_address


# --- Finding 1: one failing client locked out everyone behind the proxy ----------------------


def test_one_client_behind_the_proxy_cannot_lock_out_the_others(behind_one_proxy, tenants):
    attacker = Client(REMOTE_ADDR=PROXY)
    limit = django_settings.AXES_FAILURE_LIMIT
    # Made-up emails, each request with its own forged X-Forwarded-For.
    for n in range(limit):
        forwarded = through_proxy(ATTACKER, forged=f"192.0.2.{n + 1}")
        response = sign_in(attacker, f"nobody{n}@example.com", WRONG, forwarded)
        assert response.status_code == 200
    # And the same against a real account: that account is locked for this client only.
    for n in range(limit):
        forwarded = through_proxy(ATTACKER, forged=f"192.0.2.{n + 101}")
        last = sign_in(attacker, "admin@helios.example", WRONG, forwarded)
    assert last.status_code == 429

    # Everybody else behind the same proxy signs in, the attacked account's owner too.
    assert sign_in(Client(REMOTE_ADDR=PROXY), "om@helios.example", forwarded_for=COLLEAGUE)[
        "Location"
    ] == reverse("home")
    owner = sign_in(Client(REMOTE_ADDR=PROXY), "admin@helios.example", forwarded_for=COLLEAGUE)
    assert owner.status_code == 302
    # The attacker stays locked out of that account, whatever they forge next.
    forwarded = through_proxy(ATTACKER, forged=OTHER_COLLEAGUE)
    assert sign_in(attacker, "admin@helios.example", forwarded_for=forwarded).status_code == 429
    # Every failure was counted against the attacker's own address, none against the proxy.
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_one_address_guessing_many_accounts_is_locked_alone(behind_one_proxy, tenants, settings):
    attacker = Client(REMOTE_ADDR=PROXY)
    for n in range(settings.AXES_IP_FAILURE_LIMIT):
        last = sign_in(attacker, f"guess{n}@example.com", WRONG, through_proxy(ATTACKER))
    assert last.status_code == 429
    assert sign_in(attacker, "om@helios.example", forwarded_for=ATTACKER).status_code == 429

    colleague = sign_in(Client(REMOTE_ADDR=PROXY), "om@helios.example", forwarded_for=COLLEAGUE)
    assert colleague.status_code == 302


def test_without_a_proxy_a_forged_header_is_ignored(tenants, settings):
    # AXES_PROXY_COUNT=0 (the default): REMOTE_ADDR is the client, whatever it claims.
    client = Client(REMOTE_ADDR=ATTACKER)
    for n in range(settings.AXES_FAILURE_LIMIT):
        last = sign_in(client, "admin@helios.example", WRONG, f"192.0.2.{n + 1}")
    assert last.status_code == 429
    assert sign_in(client, "admin@helios.example", forwarded_for=COLLEAGUE).status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}


def test_attempts_during_a_lockout_do_not_extend_it(tenants, settings):
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "admin@helios.example", WRONG)
    locked = AccessAttempt.objects.get()

    for password in (WRONG, WRONG, DEMO_PASSWORD):
        assert sign_in(client, "admin@helios.example", password).status_code == 429

    after = AccessAttempt.objects.get()
    assert after.attempt_time == locked.attempt_time
    assert after.failures_since_start == settings.AXES_FAILURE_LIMIT
    # The lock ends one cool-off after the last counted failure, not after the refused ones.
    cool_off = datetime.timedelta(hours=settings.AXES_COOLOFF_TIME)
    AccessAttempt.objects.update(attempt_time=locked.attempt_time - cool_off)
    assert sign_in(client, "admin@helios.example").status_code == 302


def test_a_sign_in_forgives_only_its_own_failures(tenants, settings):
    # Guessing at another account, then signing in to one's own, keeps the guesses counted.
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "admin@helios.example", WRONG)
    assert sign_in(client, "om@helios.example").status_code == 302

    assert sign_in(Client(REMOTE_ADDR=ATTACKER), "admin@helios.example", WRONG).status_code == 429


# --- Finding 6: role rank in user management ---------------------------------------------------


def reset_url(user):
    return reverse("accounts:user_reset_password", args=[user.pk])


def edit_url(user):
    return reverse("accounts:user_edit", args=[user.pk])


def test_om_cannot_reset_or_edit_an_administrator(tenants, client_for):
    admin = tenants.sunfix_admin
    client = client_for(tenants.helios_om)

    assert client.post(reset_url(admin)).status_code == 403
    assert client.get(edit_url(admin)).status_code == 403
    data = {"username": "Taken Over", "country": "DE", "supervisor": "", "description": ""}
    assert client.post(edit_url(admin), data).status_code == 403

    admin.refresh_from_db()
    assert admin.check_password(DEMO_PASSWORD) and not admin.password_is_temporary
    assert admin.username == "SunFix Admin"
    assert mail.outbox == []
    table = client.get(reverse("accounts:company_users", args=[tenants.sunfix.pk])).text
    assert reset_url(admin) not in table and edit_url(admin) not in table
    assert reset_url(tenants.sunfix_om) in table  # the same role, and below: still managed


def test_administrators_still_manage_om_engineers(tenants, client_for):
    client = client_for(tenants.helios_admin)
    assert client.post(reset_url(tenants.sunfix_om)).status_code == 302
    assert User.objects.get(pk=tenants.sunfix_om.pk).password_is_temporary
    assert client_for(tenants.helios_om).post(reset_url(tenants.owner)).status_code == 302


def test_a_superuser_is_above_every_administrator(tenants, client_for):
    operator = User.objects.create_superuser("root@platform.example", DEMO_PASSWORD)
    operator.company = tenants.sunfix
    operator.save()
    assert client_for(tenants.helios_admin).post(reset_url(operator)).status_code == 403


@pytest.mark.matrix("accounts:user_edit", "accounts:user_reset_password")
def test_user_pages_of_an_administrator_in_the_matrix(tenants, client_for):
    admin = tenants.sunfix_admin
    page = Expect(admin=200, om=403, owner=404)
    assert_matrix(tenants, client_for, edit_url(admin), page)
    assert_matrix(tenants, client_for, reset_url(admin), page)
    assert_matrix(
        tenants, client_for, reset_url(admin), Expect(admin=302, om=403, owner=404), "post"
    )


# --- Finding 6: the current password before account changes ----------------------------------

PASSWORD_URL = reverse("accounts:change_password")
EMAIL_URL = reverse("accounts:change_email")
DEREGISTER_URL = reverse("accounts:deregister")


def change_password(client, old):
    new = "Copper-Wind3$"
    return client.post(
        PASSWORD_URL, {"old_password": old, "new_password1": new, "new_password2": new}
    )


def test_wrong_current_passwords_lock_like_wrong_sign_ins(tenants, client_for, settings):
    user = tenants.helios_om
    client = client_for(user)
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        response = change_password(client, f"Guess-{n}-pw!")
        assert response.status_code == 200
        assert response.context["form"].errors["old_password"]

    locked = change_password(client, "Guess-last-pw!")

    assert locked.status_code == 429
    assert "Sign-in temporarily locked" in locked.text
    assert SESSION_KEY not in client.session  # signed out
    user.refresh_from_db()
    assert user.check_password(DEMO_PASSWORD)
    # Locked like five wrong sign-ins: not even the right password signs in from here.
    assert sign_in(Client(), user.email).status_code == 429
    # The typed passwords are not kept in the attempt records.
    assert "Guess-" not in AccessAttempt.objects.get().post_data


def test_the_right_current_password_forgives_earlier_mistakes(tenants, client_for, settings):
    client = client_for(tenants.helios_om)
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        change_password(client, f"Guess-{n}-pw!")
    assert change_password(client, DEMO_PASSWORD).status_code == 302
    assert not AccessAttempt.objects.exists()


def test_deregistration_needs_the_current_password(tenants, client_for):
    user = tenants.owner
    client = client_for(user)
    assert 'name="password"' in client.get(DEREGISTER_URL).text

    missing = client.post(DEREGISTER_URL, {"confirm": "on"})
    wrong = client.post(DEREGISTER_URL, {"confirm": "on", "password": WRONG})

    assert missing.context["form"].errors["password"]
    assert wrong.context["form"].errors["password"] == ["Your current password is incorrect."]
    assert User.objects.filter(pk=user.pk).exists()
    assert AccessAttempt.objects.get().username == user.email  # counted like a sign-in
    right = client.post(DEREGISTER_URL, {"confirm": "on", "password": DEMO_PASSWORD})
    assert right.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()


def test_email_change_needs_the_current_password(
    tenants, client_for, django_capture_on_commit_callbacks
):
    user = tenants.helios_om
    client = client_for(user)
    assert 'name="password"' in client.get(EMAIL_URL).text
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("accounts:send_code"), {"purpose": "email_old"})
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)

    wrong = client.post(EMAIL_URL, {"action": "verify", "code": code, "password": WRONG})

    assert wrong.status_code == 200
    assert wrong.context["form"].errors["password"] == ["Your current password is incorrect."]
    assert "email_change" not in client.session
    right = client.post(EMAIL_URL, {"action": "verify", "code": code, "password": DEMO_PASSWORD})
    assert right.status_code == 302
    assert "email_change" in client.session


# --- Finding 6: idle sessions -------------------------------------------------------------------


def age_session(client, *, idle_minutes=0, signed_in_hours=0):
    session = client.session
    session[LAST_SEEN_AT] -= idle_minutes * 60
    session[SIGNED_IN_AT] -= signed_in_hours * 3600
    session.save()


@pytest.mark.parametrize("role", ["helios_admin", "helios_om"])
def test_staff_sessions_end_after_the_staff_idle_timeout(tenants, client_for, settings, role):
    client = client_for(getattr(tenants, role))
    assert client.get(reverse("home")).status_code == 200

    age_session(client, idle_minutes=settings.SESSION_IDLE_TIMEOUT_STAFF_MINUTES + 1)
    response = client.get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)
    assert SESSION_KEY not in client.session
    message = f"signed out after {settings.SESSION_IDLE_TIMEOUT_STAFF_MINUTES} minutes"
    assert message in client.get(LOGIN_URL).text


def test_owner_sessions_last_the_longer_idle_timeout(tenants, client_for, settings):
    client = client_for(tenants.owner)
    client.get(reverse("home"))
    age_session(client, idle_minutes=settings.SESSION_IDLE_TIMEOUT_STAFF_MINUTES + 1)
    assert client.get(reverse("home")).status_code == 200

    age_session(client, idle_minutes=settings.SESSION_IDLE_TIMEOUT_MINUTES + 1)
    assert client.get(reverse("home")).status_code == 302
    assert SESSION_KEY not in client.session


def test_a_busy_session_still_ends_after_its_maximum_age(tenants, client_for, settings):
    client = client_for(tenants.owner)
    client.get(reverse("home"))
    age_session(client, signed_in_hours=settings.SESSION_MAX_AGE_HOURS + 1)
    assert client.get(reverse("home")).status_code == 302
    assert SESSION_KEY not in client.session


def test_htmx_requests_of_an_expired_session_reload_the_page(tenants, client_for, settings):
    client = client_for(tenants.helios_om)
    client.get(reverse("home"))
    age_session(client, idle_minutes=settings.SESSION_IDLE_TIMEOUT_STAFF_MINUTES + 1)
    response = client.get(reverse("home"), headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == LOGIN_URL


# --- Finding 6: names made of invisible or direction characters -------------------------------

ZERO_WIDTH_ONLY = "\u200b\u200c\u200d"
RIGHT_TO_LEFT_OVERRIDE = "Invoice\u202efdp.exe"


@pytest.mark.parametrize(
    "name", ["Zoë Müller", "محمد رضایی", "می\u200cخواهم", "李小龍", "O'Brien-Smith & Co."]
)
def test_ordinary_names_are_accepted(name):
    validate_display_name(name)


@pytest.mark.parametrize(
    "name",
    [ZERO_WIDTH_ONLY, RIGHT_TO_LEFT_OVERRIDE, "\u200bAdmin", "A\u0000B", "Line\u2028two", "\ufeff"],
)
def test_hidden_characters_are_refused(name):
    with pytest.raises(ValidationError, match="invisible, control or text-direction"):
        validate_display_name(name)


@pytest.mark.parametrize("name", [ZERO_WIDTH_ONLY, RIGHT_TO_LEFT_OVERRIDE])
def test_every_name_field_refuses_them(tenants, client_for, name):
    admin = tenants.helios_admin
    client = client_for(admin)
    profile = client.post(
        reverse("accounts:profile"),
        {"username": name, "currency": admin.currency, "language": "en", "time_zone": "UTC"},
    )
    user_edit = client.post(
        edit_url(tenants.sunfix_om),
        {"username": name, "country": "DE", "supervisor": "", "description": ""},
    )
    company = client.post(
        reverse("accounts:company_detail", args=[tenants.sunfix.pk]),
        {"name": name, "country": "DE", "address": "", "description": ""},
    )
    for response, field in ((profile, "username"), (user_edit, "username"), (company, "name")):
        assert response.status_code == 200
        assert "invisible, control or text-direction characters" in str(
            response.context["form"].errors[field]
        )
    assert User.objects.get(pk=admin.pk).username == "Helios Admin"
