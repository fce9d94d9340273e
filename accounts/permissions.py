"""Role rules, in one place: `can(user, action, obj)`.

Administrators manage companies, users and roles; O&M engineers do everything except delete
companies and change roles; owners (common users) only view. Everybody manages their own
account (profile, email, password, deregistration) and nobody else's; only administrators read
the activity log of account changes. Nobody edits, resets the password of, or changes the
role of a user above their own role. An object outside the user's scope is never allowed
(views answer 404 for it before asking here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied

from accounts.scoping import is_visible

if TYPE_CHECKING:
    from django.db import models

    from accounts.models import User

ADMIN = "admin"
OM = "om"
OWNER = "owner"
STAFF_ROLES = frozenset({ADMIN, OM})
ALL_ROLES = frozenset({ADMIN, OM, OWNER})
# A user manages only accounts of the same or a lower role: an O&M engineer who could reset an
# administrator's password or change their details could take the administrator's place.
ROLE_RANK = {OWNER: 0, OM: 1, ADMIN: 2}
RANKED_USER_ACTIONS = frozenset({"user.change", "user.change_role", "user.reset_password"})
# User configuration (guide §3): every role manages its own account, and only its own.
OWN_ACCOUNT_ACTIONS = frozenset(
    {"profile.change", "account.change_email", "account.change_password", "account.deregister"}
)

RULES: dict[str, frozenset[str]] = {
    # Account -> Company
    "company.view": STAFF_ROLES,
    "company.add": STAFF_ROLES,
    "company.change": STAFF_ROLES,
    "company.delete": frozenset({ADMIN}),
    # Account -> User management
    "user.view": STAFF_ROLES,
    "user.add": STAFF_ROLES,
    "user.change": STAFF_ROLES,
    "user.change_role": frozenset({ADMIN}),
    "user.reset_password": STAFF_ROLES,
    # User configuration: one's own profile, email, password and deregistration
    "profile.change": ALL_ROLES,
    "account.change_email": ALL_ROLES,
    "account.change_password": ALL_ROLES,
    "account.deregister": ALL_ROLES,
    # The activity log of account changes (accounts.AuditEvent)
    "audit.view": frozenset({ADMIN}),
    # Sites and devices (pages come with later features)
    "site.view": ALL_ROLES,
    "site.manage": STAFF_ROLES,
    "device.view": ALL_ROLES,
    "device.manage": STAFF_ROLES,
    "device.operate": STAFF_ROLES,
    # Firmware (guide §7): the catalogue is read and downloaded by distributors' and
    # installers' staff; only platform administrators publish releases (object rule below).
    "firmware.view": STAFF_ROLES,
    "firmware.download": STAFF_ROLES,
    "firmware.upload": frozenset({ADMIN}),
    "upgrade.manage": STAFF_ROLES,
    # Four-eyes: a second administrator of the company approves a task before it starts.
    "upgrade.approve": frozenset({ADMIN}),
    "maintenance.view": STAFF_ROLES,
}


def can(user: User, action: str, obj: models.Model | None = None) -> bool:
    """May `user` perform `action` (on `obj`, when given)?"""
    if action not in RULES:
        raise ValueError(f"unknown action {action!r}")
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if not user.is_superuser and user.role not in RULES[action]:
        return False
    if action in OWN_ACCOUNT_ACTIONS:
        # One's own row is always in scope, even for a user without a company.
        return obj is not None and obj.pk == user.pk
    if obj is not None and not is_visible(user, obj):
        return False
    return _object_rule(user, action, obj)


def can_on_visible(user: User, action: str, obj: models.Model) -> bool:
    """`can` for an object that already came from `visible_to(user)`: skips the scope query,
    e.g. for every row of a table."""
    return can(user, action) and _object_rule(user, action, obj)


def require(user: User, action: str, obj: models.Model | None = None) -> None:
    """Raise PermissionDenied unless `can(user, action, obj)`."""
    if not can(user, action, obj):
        raise PermissionDenied


def assignable_roles(user: User) -> list[str]:
    """Roles `user` may give to another user: only administrators hand out administrator."""
    if user.is_superuser or user.role == ADMIN:
        return [ADMIN, OM, OWNER]
    if user.role == OM:
        return [OM, OWNER]
    return []


def has_staff_role(user: User) -> bool:
    """Administrators and O&M engineers (and superusers): the roles that manage and operate."""
    return user.is_superuser or user.role in STAFF_ROLES


FIRMWARE_ACTIONS = frozenset({"firmware.view", "firmware.download", "firmware.upload"})


def _firmware_rule(user: User, action: str) -> bool:
    """Firmware belongs to the platform: owner companies' staff do not get it, and only the
    platform operator's administrators (or superusers) publish it."""
    from accounts.models import CompanyType

    if user.is_superuser:
        return True
    company = user.company if user.company_id else None
    if company is None or company.type == CompanyType.OWNER:
        return False
    if action == "firmware.upload":
        return company.type == CompanyType.PLATFORM
    return True


def role_rank(user: User) -> int:
    """Owner < O&M engineer < administrator < superuser (the platform operator)."""
    if user.is_superuser:
        return len(ROLE_RANK)
    return ROLE_RANK.get(user.role, -1)


def _object_rule(user: User, action: str, obj: models.Model | None) -> bool:
    """Rules that depend on the object, beyond role and scope."""
    if action in FIRMWARE_ACTIONS:
        return _firmware_rule(user, action)
    if obj is None:
        return True
    if action == "upgrade.approve":
        # Four eyes: never the task's own creator.
        return getattr(obj, "created_by_id", None) != user.pk
    if action in RANKED_USER_ACTIONS and role_rank(obj) > role_rank(user):
        return False
    if action == "company.delete":
        # The platform root and your own company are never deleted from the portal.
        return obj.superior_id is not None and obj.pk != user.company_id
    if action == "user.change_role":
        # Nobody changes their own role (an administrator cannot lock themselves out).
        return obj.pk != user.pk
    if action == "user.reset_password":
        return obj.pk != user.pk
    return True
