"""The registration code travels through a real SMTP server (aiosmtpd) and completes a
registration; a refusing mail server is reported to the user and does not burn a "Send"."""

import re

import pytest
from aiosmtpd.controller import Controller
from django.urls import reverse

from accounts.models import User, VerificationCode
from tests.device_rig import Mailbox
from tests.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "marco@luce-impianti.example"
PASSWORD = "Lantern-88#it"


def use_smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture
def smtp_server(settings):
    collector = Mailbox()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    use_smtp(settings, controller.port)
    yield collector
    controller.stop()


def test_registration_code_over_smtp(client, tenants, smtp_server):
    response = client.post(
        reverse("accounts:send_code"),
        {"email": ADDRESS, "purpose": "register"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    assert f"Code sent to {ADDRESS}" in response.text

    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["X-Envelope-To"] == ADDRESS
    assert message["To"] == ADDRESS
    assert "registration code" in message["Subject"]
    code = re.search(r"\b(\d{6})\b", message.get_body().get_content()).group(1)

    response = client.post(
        reverse("accounts:register_form", args=["installer"]),
        {
            "company_name": "Luce Impianti",
            "country": "IT",
            "email": ADDRESS,
            "password1": PASSWORD,
            "password2": PASSWORD,
            "code": code,
            "access_code": tenants.helios.access_code,
            "accept_terms": "on",
        },
    )

    assert response.status_code == 302, response.context["form"].errors
    user = User.objects.get(email=ADDRESS)
    assert user.company.superior == tenants.helios
    assert (
        client.post(
            reverse("accounts:login"), {"username": ADDRESS, "password": PASSWORD}
        ).status_code
        == 302
    )


def test_refusing_mail_server_is_reported_and_not_counted(client, settings, db):
    use_smtp(settings, free_port())  # nothing listens there

    response = client.post(reverse("accounts:send_code"), {"email": ADDRESS, "purpose": "register"})

    assert response.status_code == 503
    assert "could not be emailed" in response.text
    assert not VerificationCode.objects.filter(email=ADDRESS).exists()
    again = client.post(reverse("accounts:send_code"), {"email": ADDRESS, "purpose": "register"})
    assert again.status_code == 503  # not 429: the failed attempt did not count
