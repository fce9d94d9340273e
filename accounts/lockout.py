"""Sign-in lockout: django-axes' database handler with two limits instead of one.

- AXES_FAILURE_LIMIT failures of one account from one client address lock that account at that
  address. Nobody else is touched: the same account signs in from elsewhere, other accounts sign
  in from the same address. So a stranger who knows someone's email cannot lock them out.
- AXES_IP_FAILURE_LIMIT failures from one address, over any accounts (made-up emails too),
  lock that address, so guessing across many accounts stays slow.

Both last AXES_COOLOFF_TIME after the last counted failure. Attempts refused during a lockout
are not counted (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False), so they do not extend
it. The client address is django-ipware's, behind the configured proxies (settings: "Sign-in
protection").
"""

from __future__ import annotations

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import QuerySet, Sum
from django.http import HttpRequest


class PortalAxesHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """The failures that axes compares with AXES_FAILURE_LIMIT (in is_locked and after each
        failure): this account's from this address, or the address's over all accounts shifted
        so that they reach AXES_FAILURE_LIMIT exactly at AXES_IP_FAILURE_LIMIT."""
        attempts = AccessAttempt.objects.filter(ip_address=request.axes_ip_address)
        if settings.AXES_COOLOFF_TIME is not None:
            attempts = attempts.filter(attempt_time__gte=get_cool_off_threshold(request))
        username = get_client_username(request, credentials)
        by_account = _failures(attempts.filter(username=username))
        by_address = _failures(attempts)
        shift = settings.AXES_IP_FAILURE_LIMIT - get_failure_limit(request, credentials)
        return max(by_account, by_address - shift)

    def reset_user_attempts(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """After a successful sign-in, forget this account's failures from this address only:
        signing in to one's own account must not wipe out the guesses at other accounts."""
        count, _ = AccessAttempt.objects.filter(
            username=get_client_username(request, credentials),
            ip_address=request.axes_ip_address,
        ).delete()
        return count


def _failures(attempts: QuerySet) -> int:
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
