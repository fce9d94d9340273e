"""User configuration writes (guide §3): profile, email and password of one's own account.

The same convention as accounts/services.py: atomic, the acting user as the keyword-only
`acting_user`, checked with `permissions.require` (everybody may change their own account and
nobody else's), bad input as ValidationError, one audit event per change in the same
transaction (accounts/audit.py). Files replaced or removed are deleted once committed.
Deregistration lives with registration (accounts/registration.py).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from accounts import audit, codes
from accounts.models import AuditAction, CodePurpose, User, normalize_email
from accounts.permissions import require
from accounts.services import edit_fields

PROFILE_EDITABLE_FIELDS = frozenset({"avatar", "username", "currency", "language", "time_zone"})


def update_profile(user: User, *, acting_user: User, **fields: Any) -> User:
    """Change avatar, username, currency, language and time zone (guide §3.1).

    `avatar` takes an uploaded image to replace the avatar, or None to remove it; the old file
    is deleted from storage once the change is committed.
    """
    require(acting_user, "profile.change", user)
    edit_fields(
        user,
        fields,
        acting_user=acting_user,
        action=AuditAction.PROFILE_EDITED,
        editable=PROFILE_EDITABLE_FIELDS,
        image_field="avatar",
        clean_exclude=("password",),
    )
    return user


def change_email(user: User, *, acting_user: User, new_email: str, code: str) -> User:
    """Make `new_email` the sign-in of `user`, using up the code sent to it (guide §3.2).

    The caller has checked the current address and password first. Raises codes.CodeError
    for a wrong or used code, ValidationError when another account took the address meanwhile;
    either way nothing changes.
    """
    require(acting_user, "account.change_email", user)
    new_email = normalize_email(new_email)
    before = audit.snapshot(user, ["email"])
    try:
        with transaction.atomic():
            codes.consume(new_email, CodePurpose.EMAIL_NEW, code)
            User.objects.filter(pk=user.pk).update(email=new_email)
            user.email = new_email
            audit.record_change(acting_user, AuditAction.EMAIL_CHANGED, user, before)
    except IntegrityError as exc:  # taken meanwhile by a registration
        user.email = before["email"]
        raise ValidationError(
            {"email": gettext("Another account already uses this email address.")}
        ) from exc
    return user


def change_password(
    user: User,
    *,
    acting_user: User,
    new_password: str,
    action: str = AuditAction.PASSWORD_CHANGED,
) -> User:
    """Give `user` a password of their own (guide §3.3), ending a temporary one.

    The caller has checked the old password, or the emailed code for a forgotten one
    (`action=AuditAction.PASSWORD_RECOVERED`). The audit event says that the password changed,
    never what it is. Sessions other than the caller's end with the old password's hash.
    """
    require(acting_user, "account.change_password", user)
    validate_password(new_password, user)
    before = audit.snapshot(user, ["password_is_temporary"])
    with transaction.atomic():
        user.set_password(new_password)
        user.password_is_temporary = False
        user.save(update_fields=["password", "password_is_temporary"])
        audit.record_change(acting_user, action, user, before, always=True)
    return user
