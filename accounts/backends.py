"""Login by email, case-insensitive."""

from django.contrib.auth.backends import ModelBackend

from accounts.models import User, normalize_email


class EmailBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        email = normalize_email(username or kwargs.get(User.USERNAME_FIELD) or "")
        if not email or password is None:
            return None
        try:
            user = User.objects.get(email=email)
        except User.DoesNotExist:
            User().set_password(password)  # same work as a real check: no timing oracle
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
