"""The current password, asked again before changes that would hand the account to whoever
holds the session: a new password, a new email, deregistration.

The check goes through `authenticate()` with the user's email, exactly like a sign-in, so
django-axes refuses it during a lockout and counts a wrong password as a failed sign-in of
that account from that address: five wrong current passwords lock like five wrong sign-ins.
A user locked out this way is signed out at once; the view then answers with the lockout page
(AxesMiddleware renders it for a request marked locked out).
"""

from __future__ import annotations

from axes.utils import reset as reset_axes_attempts
from django.contrib.auth import authenticate, logout
from django.http import HttpRequest


def check_current_password(request: HttpRequest, password: str) -> bool:
    """Is `password` the signed-in user's password (and are they not locked out)?"""
    user = request.user
    checked = authenticate(request, username=user.email, password=password)
    if checked is not None and checked.pk == user.pk:
        # Like a successful sign-in: this account's earlier failures from here are forgiven.
        reset_axes_attempts(ip=getattr(request, "axes_ip_address", None), username=user.email)
        return True
    if is_locked_out(request):
        logout(request)
    return False


def is_locked_out(request: HttpRequest) -> bool:
    """Did django-axes lock this request out (during a check of the current password)?"""
    return bool(getattr(request, "axes_locked_out", False))
