"""Apply the signed-in user's language and time zone; hold users with a temporary password
on the set-password page until they choose their own."""

import zoneinfo

from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone, translation

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
        return self.get_response(request)
