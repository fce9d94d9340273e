"""Verification codes (the "Send" button): single-use, expiring, limited attempts and limited
sending; only a hash is stored; the HTTP endpoint answers every bad input with a 4xx partial.

Codes are emailed once the transaction commits, so these tests run on a transactional
database, like the portal does."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import codes
from accounts.models import CodePurpose, VerificationCode

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "new.installer@example.com"
SEND_URL = reverse("accounts:send_code")


def last_code(to: str) -> str:
    message = [m for m in mail.outbox if to in m.to][-1]
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def age(email: str, purpose: str, **delta) -> None:
    """Move every code of `email` and `purpose` into the past."""
    for row in VerificationCode.objects.filter(email=email, purpose=purpose):
        row.created_at -= timedelta(**delta)
        row.expires_at -= timedelta(**delta)
        row.save()


def test_issue_code_emails_six_digits_and_stores_only_a_hash(settings):
    codes.issue_code(EMAIL, CodePurpose.REGISTER)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [EMAIL]
    assert "registration code" in message.subject
    code = last_code(EMAIL)
    row = VerificationCode.objects.get(email=EMAIL)
    assert code not in row.code_hash and len(row.code_hash) == 64
    assert row.expires_at - row.created_at == timedelta(
        seconds=settings.VERIFICATION_CODE_TTL_SECONDS
    )
    assert "10 minutes" in message.body


def test_email_is_normalised():
    codes.issue_code("  New.Installer@Example.COM ", CodePurpose.REGISTER)
    assert codes.verify_code(EMAIL, CodePurpose.REGISTER, last_code(EMAIL)).email == EMAIL


def test_right_code_verifies_and_is_single_use():
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    code = last_code(EMAIL)

    assert codes.verify_code(EMAIL, CodePurpose.REGISTER, code).consumed_at is None
    assert codes.consume(EMAIL, CodePurpose.REGISTER, code).consumed_at is not None
    with pytest.raises(codes.CodeAlreadyUsed):
        codes.consume(EMAIL, CodePurpose.REGISTER, code)
    with pytest.raises(codes.CodeAlreadyUsed):
        codes.verify_code(EMAIL, CodePurpose.REGISTER, code)


def test_wrong_code_counts_an_attempt():
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    wrong = "000000" if last_code(EMAIL) != "000000" else "111111"

    with pytest.raises(codes.CodeInvalid) as raised:
        codes.verify_code(EMAIL, CodePurpose.REGISTER, wrong)

    assert raised.value.attempts_left == 4
    assert "4 attempts left" in raised.value.message
    assert VerificationCode.objects.get(email=EMAIL).attempts == 1


def test_too_many_attempts_lock_the_code_even_for_the_right_one(settings):
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    code = last_code(EMAIL)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(settings.VERIFICATION_CODE_MAX_ATTEMPTS - 1):
        with pytest.raises(codes.CodeInvalid):
            codes.verify_code(EMAIL, CodePurpose.REGISTER, wrong)
    with pytest.raises(codes.CodeAttemptsExceeded):
        codes.verify_code(EMAIL, CodePurpose.REGISTER, wrong)

    with pytest.raises(codes.CodeAttemptsExceeded):
        codes.verify_code(EMAIL, CodePurpose.REGISTER, code)


def test_expired_code_is_refused():
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    code = last_code(EMAIL)
    age(EMAIL, CodePurpose.REGISTER, minutes=11)

    with pytest.raises(codes.CodeExpired):
        codes.verify_code(EMAIL, CodePurpose.REGISTER, code)


def test_a_code_works_only_for_its_purpose_and_email():
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    code = last_code(EMAIL)

    with pytest.raises(codes.CodeNotRequested):
        codes.verify_code(EMAIL, CodePurpose.RESET_PASSWORD, code)
    with pytest.raises(codes.CodeNotRequested):
        codes.verify_code("someone.else@example.com", CodePurpose.REGISTER, code)


def test_a_new_code_invalidates_the_older_one():
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    first = last_code(EMAIL)
    age(EMAIL, CodePurpose.REGISTER, minutes=2)
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    second = last_code(EMAIL)

    if first != second:
        with pytest.raises(codes.CodeInvalid):
            codes.verify_code(EMAIL, CodePurpose.REGISTER, first)
    assert codes.verify_code(EMAIL, CodePurpose.REGISTER, second)
    older = VerificationCode.objects.filter(email=EMAIL).order_by("created_at").first()
    assert older.expires_at <= timezone.now()


def test_send_again_too_soon_is_refused_with_the_seconds_to_wait(settings):
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    age(EMAIL, CodePurpose.REGISTER, seconds=18)

    with pytest.raises(codes.CodeRateLimited) as raised:
        codes.issue_code(EMAIL, CodePurpose.REGISTER)

    assert raised.value.wait_seconds == settings.VERIFICATION_CODE_RESEND_SECONDS - 18
    assert "Please wait 42 seconds" in raised.value.message
    assert len(mail.outbox) == 1


def test_no_hourly_cap_per_address_here(settings):
    # Hourly limits are per client, session and recipient (accounts/throttle.py); a cap per
    # address here would let strangers use up the owner's password resets.
    for _ in range(8):
        codes.issue_code(EMAIL, CodePurpose.RESET_PASSWORD)
        age(EMAIL, CodePurpose.RESET_PASSWORD, seconds=settings.VERIFICATION_CODE_RESEND_SECONDS)
    assert len(mail.outbox) == 8


def test_limits_are_per_email_and_purpose():
    codes.issue_code(EMAIL, CodePurpose.REGISTER)
    codes.issue_code(EMAIL, CodePurpose.RESET_PASSWORD)
    codes.issue_code("other@example.com", CodePurpose.REGISTER)
    assert len(mail.outbox) == 3


def test_verify_without_any_code():
    with pytest.raises(codes.CodeNotRequested):
        codes.verify_code(EMAIL, CodePurpose.REGISTER, "123456")


def test_unknown_purpose_is_a_programming_error():
    with pytest.raises(ValueError):
        codes.issue_code(EMAIL, "nonsense")


def test_code_email_is_in_the_users_language(tenants):
    user = tenants.helios_admin
    user.language = "de"
    user.save()
    codes.issue_code(user.email, CodePurpose.RESET_PASSWORD, user=user)
    assert mail.outbox[0].to == [user.email]
    assert user.username in mail.outbox[0].body


# --- The "Send" endpoint ----------------------------------------------------------------------


def test_send_endpoint_sends_and_answers_with_a_partial(client):
    response = client.post(
        SEND_URL, {"email": EMAIL, "purpose": "register"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert f"Code sent to {EMAIL}" in response.text
    assert "<html" not in response.text
    assert last_code(EMAIL)


def test_send_endpoint_too_soon_answers_429_with_retry_after(client):
    client.post(SEND_URL, {"email": EMAIL, "purpose": "register"})
    response = client.post(SEND_URL, {"email": EMAIL, "purpose": "register"})

    assert response.status_code == 429
    assert "Please wait" in response.text
    assert 0 < int(response["Retry-After"]) <= 60
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"email": EMAIL},
        {"email": EMAIL, "purpose": "nonsense"},
        {"email": "not-an-email", "purpose": "register"},
        {"email": "", "purpose": "register"},
        {"purpose": "reset_password"},
        {"email": "x" * 300 + "@example.com", "purpose": "register"},
    ],
)
def test_send_endpoint_bad_input_is_400_never_500(client, data):
    response = client.post(SEND_URL, data)
    assert response.status_code == 400
    assert 'role="status"' in response.text
    assert not mail.outbox


def test_send_endpoint_only_takes_post(client):
    assert client.get(SEND_URL, {"email": EMAIL, "purpose": "register"}).status_code == 405


def test_registration_code_for_a_registered_email_notifies_its_owner(client, tenants):
    response = client.post(SEND_URL, {"email": "Admin@Helios.example", "purpose": "register"})
    assert response.status_code == 200
    assert "Code sent to admin@helios.example" in response.text
    [notice] = mail.outbox
    assert notice.to == ["admin@helios.example"]
    assert "already has an account" in notice.body
    assert not re.search(r"\b\d{6}\b", notice.body)


def test_email_change_codes_need_a_signed_in_user(client):
    for purpose in ("email_old", "email_new"):
        response = client.post(SEND_URL, {"email": EMAIL, "purpose": purpose})
        assert response.status_code == 403
    assert not mail.outbox


def test_new_email_code_needs_the_current_email_verified_first(client_for, tenants):
    client = client_for(tenants.helios_om)
    response = client.post(SEND_URL, {"email": EMAIL, "purpose": "email_new"})
    assert response.status_code == 400
    assert "verify your current email" in response.text
    assert not mail.outbox


def test_current_email_code_goes_to_the_current_address_whatever_is_posted(client_for, tenants):
    client = client_for(tenants.helios_om)
    response = client.post(SEND_URL, {"email": "attacker@example.com", "purpose": "email_old"})
    assert response.status_code == 200
    assert [m.to for m in mail.outbox] == [[tenants.helios_om.email]]


def test_send_endpoint_needs_the_csrf_token(tenants):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(SEND_URL, {"email": EMAIL, "purpose": "register"})
    assert response.status_code == 403
    assert not mail.outbox
