"""Guide §2: sign in by email, sign out, temporary passwords that work once, and the lockout
after repeated wrong passwords (django-axes, accounts/lockout.py): an account from one address,
and one address over all accounts."""

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from tests.factories import DEMO_PASSWORD, UserFactory

LOGIN_URL = reverse("accounts:login")
SET_PASSWORD_URL = reverse("accounts:set_password")
NEW_PASSWORD = "Fjord-Light7?"


def sign_in(client, email, password=DEMO_PASSWORD, **extra):
    return client.post(LOGIN_URL, {"username": email, "password": password}, **extra)


@pytest.fixture
def temporary(tenants):
    """An O&M engineer whose administrator has just reset their password."""
    user = tenants.sunfix_om
    user.set_password("Temp-Pass-2024!")
    user.password_is_temporary = True
    user.save()
    return user


def test_login_page(client, db):
    response = client.get(LOGIN_URL)
    assert response.status_code == 200
    text = response.text
    assert "Email" in text and "Password" in text
    assert reverse("accounts:forgot_password") in text and "Forgot password" in text
    assert reverse("accounts:register") in text and "Sign up now" in text


def test_sign_in_by_email_whatever_its_case(client, tenants):
    response = sign_in(client, "  Admin@HELIOS.example ")
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert int(client.session[SESSION_KEY]) == tenants.helios_admin.pk


def test_wrong_password(client, tenants):
    response = sign_in(client, "admin@helios.example", "Wrong-pass1!")
    assert response.status_code == 200
    assert "The email or password is incorrect." in response.text
    assert SESSION_KEY not in client.session


def test_unknown_email_gets_the_same_answer(client, tenants):
    response = sign_in(client, "nobody@helios.example", "Wrong-pass1!")
    assert "The email or password is incorrect." in response.text


def test_deactivated_user_cannot_sign_in(client, tenants):
    tenants.helios_om.is_active = False
    tenants.helios_om.save()
    response = sign_in(client, "om@helios.example")
    assert response.status_code == 200
    assert SESSION_KEY not in client.session


def test_sign_in_returns_to_the_page_asked_for(client, tenants):
    profile = reverse("accounts:profile")
    response = client.post(
        f"{LOGIN_URL}?next={profile}",
        {"username": "admin@helios.example", "password": DEMO_PASSWORD, "next": profile},
    )
    assert response["Location"] == profile


def test_sign_in_never_redirects_to_another_site(client, tenants):
    response = client.post(
        LOGIN_URL,
        {
            "username": "admin@helios.example",
            "password": DEMO_PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response["Location"] == reverse("home")


def test_signed_in_user_visiting_login_goes_home(client_for, tenants):
    response = client_for(tenants.helios_admin).get(LOGIN_URL)
    assert response.status_code == 302


def test_logout_is_post_only(client_for, tenants):
    client = client_for(tenants.helios_admin)
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert SESSION_KEY in client.session

    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert response["Location"] == LOGIN_URL
    assert SESSION_KEY not in client.session
    assert "You have been signed out." in client.get(LOGIN_URL).text


# --- Temporary passwords ----------------------------------------------------------------------


def test_temporary_password_leads_to_set_password(client, temporary):
    response = sign_in(client, temporary.email, "Temp-Pass-2024!")

    assert response.status_code == 302
    assert response["Location"] == SET_PASSWORD_URL
    assert client.session["must_set_password"] is True
    temporary.refresh_from_db()
    assert not temporary.has_usable_password()


def test_temporary_password_works_only_once(client, temporary):
    sign_in(client, temporary.email, "Temp-Pass-2024!")
    other = Client()
    response = sign_in(other, temporary.email, "Temp-Pass-2024!")
    assert response.status_code == 200
    assert SESSION_KEY not in other.session


def test_other_pages_wait_for_the_new_password(client, temporary):
    sign_in(client, temporary.email, "Temp-Pass-2024!")
    for url in (reverse("home"), reverse("accounts:profile"), reverse("accounts:company_list")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == SET_PASSWORD_URL
    assert client.get(SET_PASSWORD_URL).status_code == 200


def test_set_password_refuses_a_weak_or_mismatched_password(client, temporary):
    sign_in(client, temporary.email, "Temp-Pass-2024!")

    weak = client.post(SET_PASSWORD_URL, {"new_password1": "abc", "new_password2": "abc"})
    assert weak.status_code == 200
    assert "6 to 18 characters" in weak.text

    mismatch = client.post(
        SET_PASSWORD_URL, {"new_password1": NEW_PASSWORD, "new_password2": "Fjord-Light8?"}
    )
    assert mismatch.status_code == 200
    assert mismatch.context["form"].errors["new_password2"]
    assert client.session["must_set_password"] is True


def test_set_password_saves_it_and_releases_the_user(client, temporary):
    sign_in(client, temporary.email, "Temp-Pass-2024!")

    response = client.post(
        SET_PASSWORD_URL, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    temporary.refresh_from_db()
    assert temporary.check_password(NEW_PASSWORD)
    assert temporary.password_is_temporary is False
    assert "must_set_password" not in client.session
    assert client.get(reverse("home")).status_code == 200  # still signed in
    assert sign_in(Client(), temporary.email, NEW_PASSWORD).status_code == 302


def test_set_password_is_only_for_a_temporary_sign_in(client_for, tenants):
    client = client_for(tenants.helios_admin)
    response = client.get(SET_PASSWORD_URL)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:change_password")
    response = client.post(
        SET_PASSWORD_URL, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    tenants.helios_admin.refresh_from_db()
    assert tenants.helios_admin.check_password(DEMO_PASSWORD)


def test_sign_out_while_the_password_is_pending(client, temporary):
    sign_in(client, temporary.email, "Temp-Pass-2024!")
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert SESSION_KEY not in client.session


# --- Lockout (django-axes) --------------------------------------------------------------------


def fail(client, email, times, address="10.0.0.1"):
    responses = [sign_in(client, email, "Wrong-pass1!", REMOTE_ADDR=address) for _ in range(times)]
    return responses[-1]


def test_five_wrong_passwords_lock_the_account(client, tenants, settings):
    last = fail(client, "admin@helios.example", settings.AXES_FAILURE_LIMIT)

    assert last.status_code == 429
    assert "Sign-in temporarily locked" in last.text
    assert "30 minutes" in last.text
    assert reverse("accounts:forgot_password") in last.text
    # Now even the right password is refused.
    response = sign_in(client, "admin@helios.example", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 429
    assert SESSION_KEY not in client.session


def test_four_wrong_passwords_do_not_lock(client, tenants, settings):
    fail(client, "admin@helios.example", settings.AXES_FAILURE_LIMIT - 1)
    assert sign_in(client, "admin@helios.example", REMOTE_ADDR="10.0.0.1").status_code == 302


def test_locked_account_still_signs_in_from_another_address(tenants, settings):
    # Whoever knows an email cannot lock its owner out: the lock holds at their address only.
    fail(Client(), "admin@helios.example", settings.AXES_FAILURE_LIMIT, address="10.0.0.1")

    response = sign_in(Client(), "admin@helios.example", REMOTE_ADDR="192.0.2.77")

    assert response.status_code == 302


def test_spelling_the_email_differently_does_not_dodge_the_lock(tenants, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        email = "admin@helios.example" if n % 2 else "ADMIN@Helios.Example"
        sign_in(Client(), email, "Wrong-pass1!", REMOTE_ADDR="10.0.1.1")
    assert sign_in(Client(), "admin@helios.example", REMOTE_ADDR="10.0.1.1").status_code == 429


def test_one_address_trying_many_accounts_is_locked(tenants, settings):
    client = Client()
    for n in range(settings.AXES_IP_FAILURE_LIMIT):
        sign_in(client, f"guess{n}@helios.example", "Wrong-pass1!", REMOTE_ADDR="203.0.113.9")

    # Even a right password from that address is refused now...
    locked = sign_in(client, "om@helios.example", REMOTE_ADDR="203.0.113.9")
    assert locked.status_code == 429
    # ...while the account itself still signs in from elsewhere.
    other = UserFactory(email="fresh@helios.example", company=tenants.helios)
    assert sign_in(Client(), other.email, REMOTE_ADDR="198.51.100.4").status_code == 302
