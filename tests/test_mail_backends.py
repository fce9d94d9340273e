"""Where mail goes: the console and a folder in the embedded run, SMTP when EMAIL_URL says so."""

import email
import json
import os
import subprocess
import sys
from email import policy
from pathlib import Path

from django.core import mail

BASE_DIR = Path(__file__).resolve().parent.parent


def test_folder_backend_writes_a_readable_eml_file(settings, capsys):
    connection = mail.get_connection("matricloud.mail.ConsoleAndFolderBackend")
    message = mail.EmailMessage(
        subject="Your verification code",
        body="Your code is 428193. It expires in 10 minutes.",
        from_email="MatriCloud <no-reply@matricloud.local>",
        to=["owner@sunfix.example"],
        connection=connection,
    )

    assert message.send() == 1

    files = sorted(Path(settings.MAIL_DIR).glob("*.eml"))
    assert len(files) == 1
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Your verification code"
    assert parsed["To"] == "owner@sunfix.example"
    assert "428193" in parsed.get_body(preferencelist=("plain",)).get_content()
    assert "428193" in capsys.readouterr().out, "the console shows the mail too"


def settings_in_subprocess(**env: str) -> dict:
    """Import the settings fresh with the given environment and return the mail settings."""
    script = (
        "import json; from django.conf import settings; "
        "print(json.dumps({k: getattr(settings, k, None) for k in ("
        "'EMAIL_BACKEND', 'EMAIL_HOST', 'EMAIL_PORT', 'EMAIL_HOST_USER', "
        "'EMAIL_HOST_PASSWORD', 'EMAIL_USE_TLS', 'EMAIL_USE_SSL')}))"
    )
    base = {k: v for k, v in os.environ.items() if k != "EMAIL_URL"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env={**base, "DJANGO_SETTINGS_MODULE": "matricloud.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_email_url_selects_smtp_with_its_credentials():
    values = settings_in_subprocess(EMAIL_URL="smtp://user:pass@host:2525")

    assert values["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["EMAIL_HOST"] == "host"
    assert values["EMAIL_PORT"] == 2525
    assert values["EMAIL_HOST_USER"] == "user"
    assert values["EMAIL_HOST_PASSWORD"] == "pass"


def test_without_email_url_mail_goes_to_console_and_folder():
    values = settings_in_subprocess()

    assert values["EMAIL_BACKEND"] == "matricloud.mail.ConsoleAndFolderBackend"
