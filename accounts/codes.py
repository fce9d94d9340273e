"""Emailed verification codes: the "Send" button of registration, forgotten password and the
change of email (guide §2.2, §2.3.2, §3.2).

A code is six digits, emailed once, stored only as an HMAC, valid for
VERIFICATION_CODE_TTL_SECONDS, good for VERIFICATION_CODE_MAX_ATTEMPTS tries and single-use.
Only the newest code of an email and purpose counts: sending a new one expires the older ones.
Here a code of one email and purpose is sent at most every VERIFICATION_CODE_RESEND_SECONDS;
the limits per client, session and recipient are those of `accounts.throttle`, which the views
apply before calling issue_code. There is no hourly cap per recipient here: strangers could use
it up and keep the owner from their password reset.
"""

from __future__ import annotations

import math
import secrets
import smtplib
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext, ngettext

from accounts.models import CodePurpose, User, VerificationCode, normalize_email

CODE_DIGITS = 6
HMAC_SALT = "matricloud.accounts.codes"

SUBJECTS = {
    CodePurpose.REGISTER: lambda: gettext("Your MatriCloud registration code"),
    CodePurpose.RESET_PASSWORD: lambda: gettext("Your MatriCloud password reset code"),
    CodePurpose.EMAIL_OLD: lambda: gettext("Confirm your MatriCloud email address"),
    CodePurpose.EMAIL_NEW: lambda: gettext("Confirm your new MatriCloud email address"),
}


class CodeError(Exception):
    """Base of every verification-code problem; `message` is translated, for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CodeRateLimited(CodeError):
    """ "Send" was pressed again too soon; try again after `wait_seconds`."""

    def __init__(self, wait_seconds: int) -> None:
        self.wait_seconds = max(1, wait_seconds)
        super().__init__(
            ngettext(
                "Please wait %(seconds)d second before requesting another code.",
                "Please wait %(seconds)d seconds before requesting another code.",
                self.wait_seconds,
            )
            % {"seconds": self.wait_seconds}
        )


class CodeDeliveryFailed(CodeError):
    def __init__(self) -> None:
        super().__init__(
            gettext("The code could not be emailed right now. Please try again in a moment.")
        )


class CodeNotRequested(CodeError):
    def __init__(self) -> None:
        super().__init__(gettext("Please request a verification code first (press “Send”)."))


class CodeInvalid(CodeError):
    """A wrong code; the attempt has been counted."""

    def __init__(self, attempts_left: int) -> None:
        self.attempts_left = attempts_left
        super().__init__(
            ngettext(
                "The verification code is incorrect (%(left)d attempt left).",
                "The verification code is incorrect (%(left)d attempts left).",
                attempts_left,
            )
            % {"left": attempts_left}
        )


class CodeExpired(CodeError):
    def __init__(self) -> None:
        super().__init__(gettext("The verification code has expired. Please request a new code."))


class CodeAttemptsExceeded(CodeError):
    def __init__(self) -> None:
        super().__init__(
            gettext("Too many wrong attempts for this code. Please request a new code.")
        )


class CodeAlreadyUsed(CodeError):
    def __init__(self) -> None:
        super().__init__(
            gettext("This verification code has already been used. Please request a new code.")
        )


def issue_code(email: str, purpose: str, *, user: User | None = None, deliver: bool = True) -> None:
    """Create a new code for `email` and `purpose` and email it once the row is committed.

    Raises CodeRateLimited when "Send" comes too soon again, CodeDeliveryFailed when the
    mail server refuses (the code is withdrawn then, so the failure does not count against the
    limits). `deliver=False` issues a decoy that nobody receives: the forgotten-password form
    uses it for unknown addresses, so that an outsider sees exactly the same behaviour (limits,
    attempts, expiry) whether or not an address has an account. A registration code for an
    address that already has an account (`user`) is such a decoy too; the account's owner is
    told instead that someone tried to register with their address.

    Called outside a transaction (as views do), the email has gone out when this returns;
    inside one, it goes out when that commits.
    """
    email = normalize_email(email)
    purpose = CodePurpose(purpose)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    if deliver:
        message = _render_message(code, purpose, user)
    elif purpose == CodePurpose.REGISTER and user is not None:
        message = _render_registration_attempt(user)
    else:
        message = None
    row = None
    try:
        with transaction.atomic():
            _lock(email, purpose)
            now = timezone.now()
            wait = _seconds_to_wait(email, purpose, now)
            if wait:
                raise CodeRateLimited(wait)
            _pending(email, purpose).filter(expires_at__gt=now).update(expires_at=now)
            row = VerificationCode.objects.create(
                email=email,
                purpose=purpose,
                user=user if deliver else None,
                code_hash=_hash(email, purpose, code),
                created_at=now,
                expires_at=now + timedelta(seconds=settings.VERIFICATION_CODE_TTL_SECONDS),
            )
            if message is not None:
                transaction.on_commit(partial(send_mail, *message, recipient_list=[email]))
    except (smtplib.SMTPException, OSError) as exc:
        # Raised by the on-commit delivery, after the row was committed.
        if row is not None:
            VerificationCode.objects.filter(pk=row.pk).delete()
        raise CodeDeliveryFailed() from exc


def verify_code(email: str, purpose: str, code: str) -> VerificationCode:
    """Check `code` against the newest code of `email` and `purpose`, without using it up.

    Raises CodeNotRequested, CodeAlreadyUsed, CodeAttemptsExceeded, CodeExpired or CodeInvalid.
    A wrong code counts as an attempt; call this outside of any transaction (as a form's
    clean() does), or a rollback of the caller would also roll back the count.
    """
    email = normalize_email(email)
    purpose = CodePurpose(purpose)
    with transaction.atomic():
        row = _latest(email, purpose)
        _check_usable(row)
        if constant_time_compare(row.code_hash, _hash(email, purpose, (code or "").strip())):
            return row
        VerificationCode.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
        attempts_left = settings.VERIFICATION_CODE_MAX_ATTEMPTS - row.attempts - 1
    if attempts_left <= 0:
        raise CodeAttemptsExceeded()
    raise CodeInvalid(attempts_left)


def consume(email: str, purpose: str, code: str) -> VerificationCode:
    """Verify `code` and use it up: a code works once.

    Call it inside the transaction of the action the code authorises, so that a failed action
    leaves the code usable; verify it in the form first, so wrong attempts are counted.
    """
    row = verify_code(email, purpose, code)
    now = timezone.now()
    used = VerificationCode.objects.filter(pk=row.pk, consumed_at__isnull=True).update(
        consumed_at=now
    )
    if not used:  # another request used it between our check and now
        raise CodeAlreadyUsed()
    row.consumed_at = now
    return row


def _pending(email: str, purpose: str):
    return VerificationCode.objects.filter(email=email, purpose=purpose, consumed_at__isnull=True)


def _latest(email: str, purpose: str) -> VerificationCode:
    row = (
        VerificationCode.objects.select_for_update()
        .filter(email=email, purpose=purpose)
        .order_by("-created_at", "-pk")
        .first()
    )
    if row is None:
        raise CodeNotRequested()
    return row


def _check_usable(row: VerificationCode) -> None:
    if row.consumed_at is not None:
        raise CodeAlreadyUsed()
    if row.attempts >= settings.VERIFICATION_CODE_MAX_ATTEMPTS:
        raise CodeAttemptsExceeded()
    if row.expires_at <= timezone.now():
        raise CodeExpired()


def _seconds_to_wait(email: str, purpose: str, now) -> int:
    newest = (
        VerificationCode.objects.filter(email=email, purpose=purpose)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if newest is None:
        return 0
    resend_at = newest + timedelta(seconds=settings.VERIFICATION_CODE_RESEND_SECONDS)
    return max(0, math.ceil((resend_at - now).total_seconds()))


def _lock(email: str, purpose: str) -> None:
    """Serialise "Send" per email and purpose, so two quick clicks cannot both pass the limit."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{purpose}:{email}"]
        )


def _hash(email: str, purpose: str, code: str) -> str:
    return salted_hmac(HMAC_SALT, f"{purpose}:{email}:{code}", algorithm="sha256").hexdigest()


def _render_message(code: str, purpose: str, user: User | None) -> tuple[str, str, None]:
    """Subject, body and sender, in the recipient's language when we know it."""
    language = user.language if user is not None and user.language else translation.get_language()
    with translation.override(language):
        subject = SUBJECTS[purpose]()
        body = render_to_string(
            "emails/verification_code.txt",
            {
                "code": code,
                "purpose": CodePurpose(purpose).label,
                "minutes": max(1, settings.VERIFICATION_CODE_TTL_SECONDS // 60),
                "user": user,
            },
        )
    return subject, body, None


def _render_registration_attempt(user: User) -> tuple[str, str, None]:
    """The notice to an account's owner that someone asked for a registration code for their
    address: in their language, with what to do if it was them."""
    with translation.override(user.language or settings.LANGUAGE_CODE):
        subject = gettext("Someone tried to register with your MatriCloud email address")
        body = render_to_string(
            "emails/registration_attempt.txt",
            {"user": user, "email": user.email, "login_url": _absolute_url("accounts:login")},
        )
    return subject, body, None


def _absolute_url(name: str) -> str:
    """The named page on the portal's public address (PORTAL_URL), else empty."""
    base = getattr(settings, "PORTAL_URL", "")
    return f"{base.rstrip('/')}{reverse(name)}" if base else ""
