"""Emails a request can trigger are limited per client address, session and recipient; "Send"
does not tell who is registered; strangers cannot block someone's password reset
(security findings 3 and 4)."""

import re
import smtplib
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db.models import F
from django.test import Client
from django.urls import reverse

from accounts import codes, throttle
from accounts.models import User, VerificationCode

pytestmark = pytest.mark.django_db(transaction=True)

SEND_URL = reverse("accounts:send_code")
FORGOT_URL = reverse("accounts:forgot_password")
ATTACKER = "203.0.113.66"
OWNER_ADDRESS = "198.51.100.7"
NEW_PASSWORD = "Harbour-Lamp5%"


@pytest.fixture
def later(monkeypatch, settings):
    """later(seconds): move the limits' clock and the codes' ages forward. The clock starts
    at the beginning of a window, so that a test never straddles two."""
    window = settings.MAIL_LIMIT_WINDOW_SECONDS
    now = [(time.time() // window) * window + 1]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds
        VerificationCode.objects.update(
            created_at=F("created_at") - timedelta(seconds=seconds),
            expires_at=F("expires_at") - timedelta(seconds=seconds),
        )

    return advance


def send(client, email, purpose="register", address=ATTACKER):
    return client.post(SEND_URL, {"email": email, "purpose": purpose}, REMOTE_ADDR=address)


def code_in(message) -> str | None:
    found = re.search(r"\b(\d{6})\b", message.body)
    return found.group(1) if found else None


# --- Finding 3: no per-client limit ------------------------------------------------------------


def test_one_session_cannot_mail_forty_addresses(client, later, settings):
    statuses = [send(client, f"victim{n}@example.com").status_code for n in range(40)]

    limit = settings.CODE_MAIL_LIMIT_PER_SESSION
    assert statuses == [200] * limit + [429] * (40 - limit)
    assert len(mail.outbox) == limit


def test_one_address_cannot_mail_forty_addresses_without_cookies(db, later, settings):
    responses = [
        Client().post(
            SEND_URL, {"email": f"v{n}@example.com", "purpose": "register"}, REMOTE_ADDR=ATTACKER
        )
        for n in range(40)
    ]

    limit = settings.CODE_MAIL_LIMIT_PER_ADDRESS
    assert [r.status_code for r in responses] == [200] * limit + [429] * (40 - limit)
    assert len(mail.outbox) == limit
    refused = responses[-1]
    assert 0 < int(refused["Retry-After"]) <= settings.MAIL_LIMIT_WINDOW_SECONDS
    assert "Too many emails have been requested" in refused.text


def test_plus_addresses_and_case_are_one_inbox(client, later):
    variants = [f"Target+{n}@Example.com" for n in range(15)]

    statuses = [send(client, email).status_code for email in variants]

    assert statuses == [200] + [429] * 14
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["target+0@example.com"]  # delivered as typed


def test_plus_addresses_stay_limited_when_sent_slowly(client, later, settings):
    statuses = []
    for n in range(15):
        statuses.append(send(client, f"target+{n}@example.com").status_code)
        later(settings.VERIFICATION_CODE_RESEND_SECONDS + 1)

    allowed = settings.CODE_MAIL_LIMIT_PER_ADDRESS_AND_RECIPIENT
    assert statuses == [200] * allowed + [429] * (15 - allowed)
    assert len(mail.outbox) == allowed


def test_limit_key_folds_case_and_plus_tags():
    assert throttle.limit_key(" Target+News@Example.COM ") == "target@example.com"
    assert throttle.limit_key("a+b+c@example.com") == "a@example.com"
    assert throttle.limit_key("plain@example.com") == "plain@example.com"
    assert throttle.limit_key("not-an-address") == "not-an-address"


# --- Finding 3: "Send" tells who is registered -------------------------------------------------


def test_register_send_answers_the_same_for_a_registered_email(tenants, later):
    new = send(Client(), "newcomer@helios.example", address="192.0.2.1")
    taken = send(Client(), "admin@helios.example", address="192.0.2.2")

    assert taken.status_code == new.status_code == 200
    assert taken.text.replace("admin@helios.example", "newcomer@helios.example") == new.text
    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert code_in(by_recipient["newcomer@helios.example"])
    notice = by_recipient["admin@helios.example"]
    assert "Someone tried to register" in notice.subject
    assert code_in(notice) is None


def test_register_form_answers_the_same_for_a_registered_email(client, tenants, later):
    def register(email):
        send(client, email)
        later(61)
        data = {
            "company_name": "Acme",
            "country": "AT",
            "email": email,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "code": "000000",
            "access_code": tenants.sunfix.access_code,
            "accept_terms": "on",
        }
        response = client.post(reverse("accounts:register_form", args=["installer"]), data)
        return response.status_code, dict(response.context["form"].errors)

    assert register("admin@helios.example") == register("newcomer@helios.example")


# --- Finding 4: a stranger blocks someone's password reset -----------------------------------


def test_strangers_cannot_block_the_owners_password_reset(tenants, later, settings):
    victim = tenants.helios_om.email
    attacker = Client()
    statuses = []
    for _ in range(6):
        statuses.append(send(attacker, victim, "reset_password").status_code)
        later(settings.VERIFICATION_CODE_RESEND_SECONDS + 1)
    # ...and a crowd of other addresses that each mail the victim once.
    for n in range(settings.CODE_MAIL_LIMIT_PER_RECIPIENT + 2):
        send(Client(), victim, "reset_password", address=f"203.0.113.{n + 1}")
        later(settings.VERIFICATION_CODE_RESEND_SECONDS + 1)
    assert 429 in statuses

    owner = Client()
    response = send(owner, victim, "reset_password", address=OWNER_ADDRESS)

    assert response.status_code == 200
    code = code_in(mail.outbox[-1])
    reset = owner.post(
        FORGOT_URL,
        {
            "email": victim,
            "code": code,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
        REMOTE_ADDR=OWNER_ADDRESS,
    )
    assert reset.status_code == 302
    assert User.objects.get(pk=tenants.helios_om.pk).check_password(NEW_PASSWORD)


def test_a_stranger_delays_the_owner_by_one_minute_at_most(tenants, later, settings):
    victim = tenants.helios_om.email
    assert send(Client(), victim, "reset_password").status_code == 200

    too_soon = send(Client(), victim, "reset_password", address=OWNER_ADDRESS)
    assert too_soon.status_code == 429
    assert int(too_soon["Retry-After"]) <= settings.VERIFICATION_CODE_RESEND_SECONDS
    later(int(too_soon["Retry-After"]))
    assert send(Client(), victim, "reset_password", address=OWNER_ADDRESS).status_code == 200


def test_the_recipient_limit_holds_for_addresses_that_keep_sending(tenants, later, settings):
    settings.CODE_MAIL_LIMIT_PER_RECIPIENT = 2
    victim = tenants.helios_om.email
    senders = [f"203.0.113.{n}" for n in range(1, 4)]
    for address in senders:  # each has been sending codes to others already
        send(Client(), f"someone.{address}@example.com", address=address)
    statuses = []
    for address in senders:
        later(settings.VERIFICATION_CODE_RESEND_SECONDS + 1)
        statuses.append(send(Client(), victim, "reset_password", address=address).status_code)

    assert statuses == [200, 200, 429]


def test_a_code_the_mail_server_refused_does_not_count(client, later, monkeypatch):
    server_down = [True]
    real_send_mail = codes.send_mail

    def send_mail(*args, **kwargs):
        if server_down[0]:
            raise smtplib.SMTPServerDisconnected("down")
        return real_send_mail(*args, **kwargs)

    monkeypatch.setattr(codes, "send_mail", send_mail)
    assert send(client, "newcomer@example.com").status_code == 503
    server_down[0] = False

    assert send(client, "newcomer@example.com").status_code == 200
    assert len(mail.outbox) == 1


# --- Temporary passwords sent by administrators ---------------------------------------------


def test_an_administrator_cannot_mail_one_user_temporary_passwords_in_a_loop(
    tenants, client_for, settings
):
    client = client_for(tenants.helios_admin)
    url = reverse("accounts:user_reset_password", args=[tenants.helios_om.pk])

    first = client.post(url)
    again = client.post(url)

    assert first.status_code == 302
    assert again.status_code == 429
    assert 0 < int(again["Retry-After"]) <= settings.STAFF_MAIL_RESEND_SECONDS
    assert "Please wait" in again.text
    assert len(mail.outbox) == 1


def test_adding_users_with_emailed_passwords_is_limited_per_session(tenants, client_for, settings):
    settings.STAFF_MAIL_LIMIT_PER_SESSION = 2
    client = client_for(tenants.helios_admin)
    url = reverse("accounts:user_add", args=[tenants.helios.pk])

    def add(n):
        return client.post(
            url,
            {
                "username": f"Tech {n}",
                "email": f"tech{n}@helios.example",
                "role": "om",
                "country": "IT",
                "password_mode": "automatic",
            },
        )

    statuses = [add(n).status_code for n in range(3)]

    assert statuses == [302, 302, 429]
    assert len(mail.outbox) == 2
    assert not User.objects.filter(email="tech2@helios.example").exists()
