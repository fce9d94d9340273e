"""Apply the signed-in user's language and time zone; hold users with a temporary password
on the set-password page until they choose their own; end idle and old sessions; give account
changes made during a request its client address (accounts/audit.py)."""

import time
import zoneinfo

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_htmx.http import HttpResponseClientRedirect

from accounts import audit
from accounts.permissions import has_staff_role

ALLOWED_WHILE_TEMPORARY = ("accounts:set_password", "accounts:logout")


class UserPreferencesMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if user.language:
                translation.activate(user.language)
                request.LANGUAGE_CODE = user.language
            try:
                timezone.activate(zoneinfo.ZoneInfo(user.time_zone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
            if request.session.get("must_set_password"):
                allowed = {reverse(name) for name in ALLOWED_WHILE_TEMPORARY}
                if request.path not in allowed and not request.path.startswith("/static/"):
                    return redirect("accounts:set_password")
        with audit.request_context(request):
            return self.get_response(request)


SIGNED_IN_AT = "signed_in_at"
LAST_SEEN_AT = "last_seen_at"
# The last request's time is written at most once a minute, not on every request.
LAST_SEEN_RESOLUTION_S = 60


class SessionTimeoutMiddleware:
    """Sign out a session without a request for SESSION_IDLE_TIMEOUT_MINUTES (administrators and
    O&M engineers: SESSION_IDLE_TIMEOUT_STAFF_MINUTES), and any session SESSION_MAX_AGE_HOURS
    after sign-in, however busy. Comes after MessageMiddleware, to say why."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            reason = self.end_reason(request, user)
            if reason:
                logout(request)
                messages.info(request, reason)
                if request.headers.get("HX-Request") == "true":
                    # A fragment would swap the sign-in page into the page: reload it instead.
                    return HttpResponseClientRedirect(resolve_url(settings.LOGIN_URL))
        return self.get_response(request)

    @staticmethod
    def end_reason(request, user) -> str:
        """Why the session is over, or "" while it goes on (then this request is noted)."""
        now = int(time.time())
        session = request.session
        signed_in_at = session.setdefault(SIGNED_IN_AT, now)
        last_seen_at = session.get(LAST_SEEN_AT, now)
        minutes = (
            settings.SESSION_IDLE_TIMEOUT_STAFF_MINUTES
            if has_staff_role(user)
            else settings.SESSION_IDLE_TIMEOUT_MINUTES
        )
        if now - last_seen_at > minutes * 60:
            return ngettext(
                "You have been signed out after %(minutes)d minute without activity.",
                "You have been signed out after %(minutes)d minutes without activity.",
                minutes,
            ) % {"minutes": minutes}
        if now - signed_in_at > settings.SESSION_MAX_AGE_HOURS * 3600:
            return _("Your session has ended. Please sign in again.")
        if now - last_seen_at >= LAST_SEEN_RESOLUTION_S or LAST_SEEN_AT not in session:
            session[LAST_SEEN_AT] = now
        return ""
