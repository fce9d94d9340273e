"""Limits on the emails a request can trigger: verification codes ("Send"), the notice to an
owner whose address someone tried to register, and temporary passwords (add user, reset).

Counters live in the cache (Redis), in fixed windows of MAIL_LIMIT_WINDOW_SECONDS. Each email
counts against:

- the client address (django-ipware through axes, as the sign-in lockout does) and the
  session: one visitor cannot mail many addresses;
- the pair of client address and recipient: one visitor cannot flood one inbox;
- the recipient, across all visitors: many visitors cannot flood one inbox either. A visitor
  whose address has not triggered any email in the window is let through this one, so that
  strangers who exhaust it cannot keep the real owner from getting their password reset code;
- and one email per recipient every VERIFICATION_CODE_RESEND_SECONDS (STAFF_MAIL_RESEND_SECONDS
  for the "staff" scope), which delays a legitimate request by a minute at most.

Recipients are counted by `limit_key()`: case and a `+tag` in the local part do not make a new
inbox. Limits of the "code" scope are CODE_MAIL_LIMIT_PER_*, of the "staff" scope (mails an
administrator triggers) STAFF_MAIL_LIMIT_PER_*; 0 switches one off.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import ngettext

from ui.errors import RateLimited

CODE = "code"
STAFF = "staff"
SCOPES = (CODE, STAFF)
KEY_PREFIX = "mail-limit"

# The clock of the windows; tests move it instead of sleeping.
clock = time.time


class MailRateLimited(RateLimited):
    """Too many emails were asked for; `message` is translated, `wait_seconds` is the wait."""

    def __init__(self, wait_seconds: float, *, resend: str = "") -> None:
        self.wait_seconds = max(1, math.ceil(wait_seconds))
        if resend == STAFF:
            message = ngettext(
                "Please wait %(seconds)d second before sending another email to this user.",
                "Please wait %(seconds)d seconds before sending another email to this user.",
                self.wait_seconds,
            ) % {"seconds": self.wait_seconds}
        elif resend:
            message = ngettext(
                "Please wait %(seconds)d second before requesting another code.",
                "Please wait %(seconds)d seconds before requesting another code.",
                self.wait_seconds,
            ) % {"seconds": self.wait_seconds}
        else:
            minutes = max(1, math.ceil(self.wait_seconds / 60))
            message = ngettext(
                "Too many emails have been requested. Please try again in %(minutes)d minute.",
                "Too many emails have been requested. Please try again in %(minutes)d minutes.",
                minutes,
            ) % {"minutes": minutes}
        super().__init__(message, retry_after=self.wait_seconds)


@dataclass
class Ticket:
    """The counts one email took; `refund()` gives them back when the email was not sent."""

    keys: list[str] = field(default_factory=list)
    interval_key: str = ""

    def take(self, scope: str, name: str, key: str, now: float, *, enforce: bool = True) -> None:
        """Count one against limit `name` of `scope`; raise MailRateLimited past it."""
        limit = _limit(scope, name)
        if not limit:
            return
        window = settings.MAIL_LIMIT_WINDOW_SECONDS
        cache_key = _window_key(scope, key, now, window)
        cache.add(cache_key, 0, timeout=window + 60)
        self.keys.append(cache_key)
        if cache.incr(cache_key) > limit and enforce:
            raise MailRateLimited(_window_end(now, window) - now)

    def refund(self) -> None:
        for key in self.keys:
            try:
                cache.decr(key)
            except ValueError:  # the window is over: nothing left to give back
                pass
        self.keys = []
        if self.interval_key:
            cache.delete(self.interval_key)
            self.interval_key = ""


def limit_key(email: str) -> str:
    """The inbox an address reaches, for counting only (mail still goes to the address as
    typed): lower-cased, without a `+tag` in the local part."""
    local, at, domain = (email or "").strip().lower().rpartition("@")
    if not at:
        return domain
    return f"{local.split('+', 1)[0]}@{domain}"


def client_address(request: HttpRequest) -> str:
    """The client's IP address, as the sign-in lockout sees it."""
    return get_client_ip_address(request) or request.META.get("REMOTE_ADDR") or "unknown"


def take_mail(request: HttpRequest, recipient: str, *, scope: str = CODE) -> Ticket:
    """Count one email to `recipient` that `request` triggers.

    Raises MailRateLimited (with nothing counted) when a limit is reached. Call it before
    sending; refund the ticket when the email is not sent after all.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown mail limit scope {scope!r}")
    now = clock()
    inbox = limit_key(recipient)
    address = client_address(request)
    _check_interval(scope, inbox, now)
    # A visitor whose address has not been sending may always mail one recipient, however
    # many others have mailed it: the recipient's own reset cannot be blocked by strangers.
    fresh = scope == CODE and not _count(scope, f"address:{address}", now)
    ticket = Ticket()
    try:
        ticket.take(scope, "address", f"address:{address}", now)
        ticket.take(scope, "address_and_recipient", f"pair:{address}:{inbox}", now)
        session_key = _session_key(request)
        if session_key:
            ticket.take(scope, "session", f"session:{session_key}", now)
        ticket.take(scope, "recipient", f"recipient:{inbox}", now, enforce=not fresh)
    except MailRateLimited:
        ticket.refund()
        raise
    interval = _interval(scope)
    if interval:
        ticket.interval_key = _interval_key(scope, inbox)
        cache.set(ticket.interval_key, now + interval, timeout=interval + 60)
    return ticket


def _interval(scope: str) -> int:
    if scope == STAFF:
        return settings.STAFF_MAIL_RESEND_SECONDS
    return settings.VERIFICATION_CODE_RESEND_SECONDS


def _check_interval(scope: str, inbox: str, now: float) -> None:
    if not _interval(scope):
        return
    allowed_at = cache.get(_interval_key(scope, inbox))
    if allowed_at is not None and allowed_at > now:
        raise MailRateLimited(allowed_at - now, resend=scope)


def _session_key(request: HttpRequest) -> str | None:
    """The session's key, creating the session of a new visitor. Called once the address
    limit has passed, so that cookie-less floods create no more sessions than it allows."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    if session.session_key is None:
        # A value, so that the session middleware also sends the visitor its cookie.
        session[KEY_PREFIX] = True
        session.save()
    return session.session_key


def _limit(scope: str, name: str) -> int:
    return getattr(settings, f"{scope.upper()}_MAIL_LIMIT_PER_{name.upper()}", 0)


def _count(scope: str, key: str, now: float) -> int:
    window = settings.MAIL_LIMIT_WINDOW_SECONDS
    return cache.get(_window_key(scope, key, now, window), 0)


def _window_key(scope: str, key: str, now: float, window: int) -> str:
    return f"{KEY_PREFIX}:{scope}:{key}:{int(now // window)}"


def _window_end(now: float, window: int) -> float:
    return (int(now // window) + 1) * window


def _interval_key(scope: str, inbox: str) -> str:
    return f"{KEY_PREFIX}:{scope}:next:{inbox}"
