"""Guide §2.3.2: self-service password reset with an emailed code. The page never tells
whether an email has an account."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import codes
from accounts.models import CodePurpose, VerificationCode
from tests.factories import DEMO_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

URL = reverse("accounts:forgot_password")
SEND_URL = reverse("accounts:send_code")
EMAIL = "om@helios.example"
NEW_PASSWORD = "Harbour-Lamp5%"


def press_send(client, email=EMAIL):
    return client.post(SEND_URL, {"email": email, "purpose": "reset_password"})


def emailed_code(email=EMAIL) -> str:
    message = [m for m in mail.outbox if email in m.to][-1]
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def reset(client, code, email=EMAIL, password=NEW_PASSWORD, confirmation=None):
    return client.post(
        URL,
        {
            "email": email,
            "code": code,
            "new_password1": password,
            "new_password2": confirmation or password,
        },
    )


def code_errors(response) -> str:
    assert response.status_code == 200
    return " ".join(response.context["form"].errors.get("code", []))


def test_page_of_table_2_2(client, db):
    response = client.get(URL)
    assert response.status_code == 200
    for text in ("Email", "Code", "New password", "Confirm password", "Determine", "Send"):
        assert text in response.text
    assert "reset_password" in response.text


def test_reset_with_the_emailed_code(client, tenants):
    user = tenants.helios_om
    user.password_is_temporary = True
    user.save()

    sent = press_send(client, "OM@Helios.example")
    assert sent.status_code == 200
    assert f"If an account exists for {EMAIL}, a code has been sent to it." in sent.text
    assert mail.outbox[0].to == [EMAIL]
    assert "password reset code" in mail.outbox[0].subject

    response = reset(client, emailed_code())

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login")
    assert "Your password has been reset." in client.get(reverse("accounts:login")).text
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert user.password_is_temporary is False
    fresh = Client()
    fresh.post(reverse("accounts:login"), {"username": EMAIL, "password": DEMO_PASSWORD})
    assert SESSION_KEY not in fresh.session
    fresh.post(reverse("accounts:login"), {"username": EMAIL, "password": NEW_PASSWORD})
    assert SESSION_KEY in fresh.session


def test_unknown_email_gets_the_same_answer_and_no_mail(client, tenants):
    known = press_send(client, EMAIL)
    unknown = press_send(client, "nobody@helios.example")

    assert unknown.status_code == known.status_code == 200
    assert unknown.text.replace("nobody@helios.example", EMAIL) == known.text
    assert [m.to for m in mail.outbox] == [[EMAIL]]


def test_unknown_email_is_limited_like_a_known_one(client, tenants):
    for email in (EMAIL, "nobody@helios.example"):
        press_send(client, email)
        again = press_send(client, email)
        assert again.status_code == 429
        assert "Please wait" in again.text


def test_unknown_email_cannot_be_told_apart_by_the_code_check(client, tenants):
    press_send(client, EMAIL)
    press_send(client, "nobody@helios.example")
    wrong = "000000" if emailed_code() != "000000" else "111111"

    known = code_errors(reset(client, wrong))
    unknown = code_errors(reset(client, wrong, email="nobody@helios.example"))

    assert known == unknown
    assert "incorrect" in known


def test_deactivated_account_gets_no_code(client, tenants):
    tenants.helios_om.is_active = False
    tenants.helios_om.save()
    assert press_send(client).status_code == 200
    assert not mail.outbox


def test_wrong_code(client, tenants):
    press_send(client)
    wrong = "000000" if emailed_code() != "000000" else "111111"
    assert "incorrect" in code_errors(reset(client, wrong))
    tenants.helios_om.refresh_from_db()
    assert tenants.helios_om.check_password(DEMO_PASSWORD)


def test_expired_code(client, tenants):
    press_send(client)
    code = emailed_code()
    VerificationCode.objects.filter(email=EMAIL).update(
        expires_at=VerificationCode.objects.get(email=EMAIL).created_at - timedelta(seconds=1)
    )
    assert "expired" in code_errors(reset(client, code))


def test_too_many_attempts(client, tenants, settings):
    press_send(client)
    code = emailed_code()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(settings.VERIFICATION_CODE_MAX_ATTEMPTS):
        reset(client, wrong)
    assert "Too many wrong attempts" in code_errors(reset(client, code))


def test_code_cannot_be_used_twice(client, tenants):
    press_send(client)
    code = emailed_code()
    assert reset(client, code).status_code == 302
    assert "already been used" in code_errors(reset(client, code, password="Second-Try8#"))


def test_registration_code_does_not_reset_a_password(client, tenants):
    codes.issue_code("someone@example.com", CodePurpose.REGISTER)
    response = reset(client, emailed_code("someone@example.com"), email="someone@example.com")
    assert code_errors(response)


def test_weak_password(client, tenants):
    press_send(client)
    response = reset(client, emailed_code(), password="harbour")
    assert response.status_code == 200
    assert response.context["form"].errors["new_password1"]
    assert VerificationCode.objects.get(email=EMAIL).consumed_at is None


def test_mismatched_confirmation(client, tenants):
    press_send(client)
    response = reset(client, emailed_code(), confirmation="Harbour-Lamp6%")
    assert response.context["form"].errors["new_password2"] == ["The two passwords do not match."]


def test_reset_lifts_a_lockout(client, tenants, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            reverse("accounts:login"),
            {"username": EMAIL, "password": "Wrong-pass1!"},
            REMOTE_ADDR="10.9.9.9",
        )
    login = {"username": EMAIL, "password": DEMO_PASSWORD}
    locked_address = {"REMOTE_ADDR": "10.9.9.9"}  # the lock holds for the account there
    assert Client().post(reverse("accounts:login"), login, **locked_address).status_code == 429

    press_send(client)
    reset(client, emailed_code())

    login["password"] = NEW_PASSWORD
    assert Client().post(reverse("accounts:login"), login, **locked_address).status_code == 302


def test_forgot_link_on_the_login_page(client, db):
    assert URL in client.get(reverse("accounts:login")).text
