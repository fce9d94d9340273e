"""Account management writes (guide §5): companies, users, roles and temporary passwords.

Every function is atomic, takes the acting user as the keyword-only `acting_user`, checks it
with `permissions.require` (PermissionDenied) and reports bad input as ValidationError, so views,
the API and tasks share one set of rules. Each change records one audit event in the same
transaction (accounts/audit.py); a refused change records none. Emails go out once the
transaction has committed.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
import string
from functools import partial
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, models, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext, ngettext

from accounts import audit
from accounts.models import AuditAction, Company, CompanyType, User, normalize_email
from accounts.permissions import assignable_roles, require
from accounts.scoping import is_visible
from accounts.time_zones import default_time_zone, is_offered

logger = logging.getLogger(__name__)

# Where a new company may sit in the tree (guide §5.1.1): a distributor only under the platform
# or another distributor; an installer under the platform, a distributor or an installer.
ALLOWED_SUPERIOR_TYPES: dict[str, frozenset[str]] = {
    CompanyType.DISTRIBUTOR: frozenset({CompanyType.PLATFORM, CompanyType.DISTRIBUTOR}),
    CompanyType.INSTALLER: frozenset(
        {CompanyType.PLATFORM, CompanyType.DISTRIBUTOR, CompanyType.INSTALLER}
    ),
}
COMPANY_EDITABLE_FIELDS = frozenset({"name", "country", "address", "description", "logo"})
USER_EDITABLE_FIELDS = frozenset({"username", "country", "supervisor", "description"})
# What the audit trail keeps of a company or user when it is created or deleted.
COMPANY_AUDIT_FIELDS = ("type", "superior", "name", "country", "address", "description")
USER_AUDIT_FIELDS = (
    "email",
    "username",
    "company",
    "role",
    "country",
    "supervisor",
    "description",
    "time_zone",
    "password_is_temporary",
)

# Temporary passwords: long enough to resist guessing, within the policy's 18 characters, and
# without look-alike characters (I/l/1, O/0) because people type them from an email.
TEMPORARY_PASSWORD_LENGTH = 12
_UPPER = "".join(c for c in string.ascii_uppercase if c not in "IO")
_LOWER = "".join(c for c in string.ascii_lowercase if c not in "l")
_DIGITS = "23456789"
_SYMBOLS = "!#$%*+-=?@_"


class CompanyDeletionRefused(Exception):
    """The company still holds users, sub-companies or sites; `reasons` are translated."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(" ".join(reasons))


class PasswordEmailFailed(Exception):
    """The change was committed, but the email with the temporary password was not sent."""

    def __init__(self, user: User) -> None:
        self.user = user
        super().__init__(f"temporary password email to {user.email} failed")


# --- Companies --------------------------------------------------------------------------------


def check_superior(company_type: str, superior: Company | None) -> None:
    """Raise ValidationError unless a company of `company_type` may sit under `superior`."""
    if company_type not in ALLOWED_SUPERIOR_TYPES:
        raise ValidationError(
            {"type": gettext("Only distributors and installers can be added here.")}
        )
    if superior is None:
        raise ValidationError({"superior": gettext("Please choose the superior company.")})
    if superior.type not in ALLOWED_SUPERIOR_TYPES[company_type]:
        if company_type == CompanyType.DISTRIBUTOR:
            message = gettext(
                "A distributor can only be added under the platform or another distributor."
            )
        else:
            message = gettext(
                "An installer can only be added under the platform, a distributor or an installer."
            )
        raise ValidationError({"superior": message})


def create_company(
    *,
    acting_user: User,
    company_type: str,
    superior: Company,
    name: str,
    country: str,
    description: str = "",
    address: str = "",
) -> Company:
    """Add a distributor or installer below `superior` (guide §5.1.1)."""
    require(acting_user, "company.add", superior)
    check_superior(company_type, superior)
    with transaction.atomic():
        company = Company(
            type=company_type,
            superior=superior,
            name=name.strip(),
            country=country,
            description=description,
            address=address,
        )
        company.full_clean()
        company.save()
        # NetBox's rule: what you create must stay inside what you may see, or nothing is made.
        if not is_visible(acting_user, company):
            raise PermissionDenied
        audit.record(
            acting_user,
            AuditAction.COMPANY_CREATED,
            company,
            after=audit.initial(company, COMPANY_AUDIT_FIELDS),
        )
    return company


def update_company(company: Company, *, acting_user: User, **fields: Any) -> Company:
    """Change name, country, address, description and logo (guide §5.1.2).

    `logo` takes an uploaded image to replace the logo, or None to remove it. The replaced
    file is deleted from storage once the change is committed.
    """
    require(acting_user, "company.change", company)
    edit_fields(
        company,
        fields,
        acting_user=acting_user,
        action=AuditAction.COMPANY_EDITED,
        editable=COMPANY_EDITABLE_FIELDS,
        image_field="logo",
    )
    return company


def edit_fields(
    obj: models.Model,
    fields: dict[str, Any],
    *,
    acting_user: User,
    action: str,
    editable: frozenset[str],
    image_field: str,
    clean_exclude: tuple[str, ...] = (),
) -> None:
    """Set `fields` on `obj` (its role check already passed), validate, save them and record
    one audit row, all in one transaction. `image_field` takes an upload or None (remove); the
    replaced file is deleted once committed. A refused value leaves the caller's instance as
    it was stored."""
    unknown = set(fields) - editable
    if unknown:
        raise ValueError(f"not editable here: {', '.join(sorted(unknown))}")
    old_image = getattr(obj, image_field).name or ""
    before = audit.snapshot(obj, fields)
    with transaction.atomic():
        for name, value in fields.items():
            setattr(obj, name, "" if name == image_field and value is None else value)
        try:
            obj.full_clean(exclude=list(clean_exclude) or None)
        except ValidationError:
            obj.refresh_from_db()
            raise
        obj.save(update_fields=[*fields])
        image = getattr(obj, image_field)
        if image_field in fields and old_image and old_image != image.name:
            transaction.on_commit(partial(_delete_file, image.storage, old_image))
        audit.record_change(acting_user, action, obj, before)


def company_delete_blockers(company: Company) -> list[str]:
    """Why `company` cannot be deleted yet: translated reasons, empty when it can."""
    reasons = []
    users = company.users.count()
    if users:
        reasons.append(
            ngettext("It still has %(count)d user.", "It still has %(count)d users.", users)
            % {"count": users}
        )
    subordinates = company.subordinates.count()
    if subordinates:
        reasons.append(
            ngettext(
                "It still has %(count)d sub-company.",
                "It still has %(count)d sub-companies.",
                subordinates,
            )
            % {"count": subordinates}
        )
    site_model = _site_model()
    if site_model is not None:
        sites = site_model._default_manager.filter(company=company).count()
        if sites:
            reasons.append(
                ngettext("It still has %(count)d site.", "It still has %(count)d sites.", sites)
                % {"count": sites}
            )
    return reasons


def delete_company(company: Company, *, acting_user: User) -> None:
    """Delete an empty company (guide §5.1.3, administrators only).

    Raises CompanyDeletionRefused while it still has users, sub-companies or sites.
    """
    require(acting_user, "company.delete", company)
    with transaction.atomic():
        # Lock the row so a user or sub-company cannot be attached between check and delete.
        Company.objects.select_for_update().get(pk=company.pk)
        reasons = company_delete_blockers(company)
        if reasons:
            raise CompanyDeletionRefused(reasons)
        logo = company.logo.name if company.logo else ""
        storage = company.logo.storage
        audit.record(
            acting_user,
            AuditAction.COMPANY_DELETED,
            company,
            before=audit.initial(company, COMPANY_AUDIT_FIELDS),
        )
        company.delete()
        if logo:
            transaction.on_commit(partial(_delete_file, storage, logo))


# --- Users ------------------------------------------------------------------------------------


def generate_temporary_password() -> str:
    """A random password that satisfies the portal policy (accounts/passwords.py)."""
    rng = secrets.SystemRandom()
    pools = (_UPPER, _LOWER, _DIGITS, _SYMBOLS)
    alphabet = "".join(pools)
    characters = [secrets.choice(pool) for pool in pools]
    characters += [secrets.choice(alphabet) for _ in range(TEMPORARY_PASSWORD_LENGTH - len(pools))]
    rng.shuffle(characters)
    return "".join(characters)


def create_user(
    *,
    acting_user: User,
    company: Company,
    email: str,
    username: str,
    role: str,
    country: str = "",
    supervisor: User | None = None,
    description: str = "",
    password: str | None = None,
    time_zone: str = "",
    language: str = "",
) -> User:
    """Add a user to `company` (guide §5.2.1).

    `password=None` means "assign automatically": a temporary password is generated, emailed
    to the new user, and must be changed at first sign-in. A custom password is checked against
    the password validators and is the user's own from the start.
    Without a `time_zone`, the user starts in the one of their country, else of the company's
    (accounts/time_zones.py), so times do not show in UTC until they set their profile.
    Raises PasswordEmailFailed (after committing) when the email could not be sent.
    """
    require(acting_user, "user.add", company)
    _check_role(acting_user, role)
    if time_zone and not is_offered(time_zone):
        raise ValidationError(
            {
                "time_zone": gettext(
                    "Select a valid choice. %(value)s is not one of the available choices."
                )
                % {"value": time_zone}
            }
        )
    email = normalize_email(email)
    user = User(
        company=company,
        email=email,
        username=username.strip(),
        role=role,
        country=country,
        supervisor=supervisor,
        description=description,
        time_zone=time_zone or default_time_zone(str(country or company.country)),
    )
    if language:  # else the model's default; the credentials mail is in this language
        user.language = language
    _check_supervisor(user, supervisor, acting_user=acting_user)
    automatic = password is None
    if automatic:
        password = _temporary_password_for(user)
    else:
        validate_password(password, user=user)
    user.set_password(password)
    user.password_is_temporary = automatic
    try:
        with transaction.atomic():
            if User.objects.filter(email=email).exists():
                raise ValidationError(
                    {"email": gettext("A user with this email address already exists.")}
                )
            user.full_clean()
            try:
                with transaction.atomic():
                    user.save()
            except IntegrityError as exc:  # a concurrent request took the email first
                raise ValidationError(
                    {"email": gettext("A user with this email address already exists.")}
                ) from exc
            if not is_visible(acting_user, user):
                raise PermissionDenied
            audit.record(
                acting_user,
                AuditAction.USER_CREATED,
                user,
                after=audit.initial(user, USER_AUDIT_FIELDS),
            )
            if automatic:
                message = _password_message(user, password, reset=False)
                transaction.on_commit(partial(_send, message, user.email))
    except (smtplib.SMTPException, OSError) as exc:
        raise PasswordEmailFailed(user) from exc
    return user


def update_user(user: User, *, acting_user: User, **fields: Any) -> User:
    """Change a user's basic information: username, country, supervisor, description
    (guide §5.2.2). The email is the user's sign-in and changes only through the verified
    change-of-email flow (guide §3.2)."""
    require(acting_user, "user.change", user)
    unknown = set(fields) - USER_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable here: {', '.join(sorted(unknown))}")
    if "supervisor" in fields:
        _check_supervisor(user, fields["supervisor"], acting_user=acting_user)
    before = audit.snapshot(user, fields)
    with transaction.atomic():
        for name, value in fields.items():
            setattr(user, name, value.strip() if name == "username" else value)
        try:
            user.full_clean(exclude=["password"])
        except ValidationError:
            user.refresh_from_db()  # leave the caller's instance as it was stored
            raise
        user.save(update_fields=[*fields])
        audit.record_change(acting_user, AuditAction.USER_EDITED, user, before)
    return user


def change_role(user: User, *, acting_user: User, role: str) -> User:
    """Give `user` another role (guide §5.2.2 "Select role"; administrators only)."""
    require(acting_user, "user.change_role", user)
    _check_role(acting_user, role)
    before = audit.snapshot(user, ["role"])
    with transaction.atomic():
        user.role = role
        user.save(update_fields=["role"])
        audit.record_change(acting_user, AuditAction.USER_ROLE_CHANGED, user, before)
    return user


def reset_user_password(user: User, *, acting_user: User) -> User:
    """Email `user` a new temporary password (guide §5.2.3); the old one stops working.

    Raises PasswordEmailFailed (after committing) when the email could not be sent.
    """
    require(acting_user, "user.reset_password", user)
    password = _temporary_password_for(user)
    before = audit.snapshot(user, ["password_is_temporary"])
    try:
        with transaction.atomic():
            user.set_password(password)
            user.password_is_temporary = True
            user.save(update_fields=["password", "password_is_temporary"])
            audit.record_change(
                acting_user, AuditAction.USER_PASSWORD_RESET, user, before, always=True
            )
            message = _password_message(user, password, reset=True)
            transaction.on_commit(partial(_send, message, user.email))
    except (smtplib.SMTPException, OSError) as exc:
        raise PasswordEmailFailed(user) from exc
    return user


# --- Helpers ----------------------------------------------------------------------------------


def _check_role(acting_user: User, role: str) -> None:
    if role not in assignable_roles(acting_user):
        raise PermissionDenied


def _check_supervisor(user: User, supervisor: User | None, *, acting_user: User) -> None:
    """A supervisor works in the same company, is visible to the actor, and no chain of
    supervisors leads back to the user."""
    if supervisor is None:
        return
    error = ValidationError({"supervisor": gettext("Please choose a user of this company.")})
    if supervisor.company_id != user.company_id or not is_visible(acting_user, supervisor):
        raise error
    seen = set()
    current = supervisor
    while current is not None and current.pk not in seen:
        if user.pk is not None and current.pk == user.pk:
            raise ValidationError(
                {"supervisor": gettext("A user cannot be supervised by themselves.")}
            )
        seen.add(current.pk)
        current = current.supervisor


def _temporary_password_for(user: User) -> str:
    """A temporary password that also passes the similarity and common-password checks."""
    while True:
        password = generate_temporary_password()
        try:
            validate_password(password, user=user)
        except ValidationError:
            continue
        return password


def _password_message(user: User, password: str, *, reset: bool) -> tuple[str, str]:
    """Subject and body in the recipient's language."""
    with translation.override(user.language or settings.LANGUAGE_CODE):
        if reset:
            subject = gettext("Your MatriCloud password has been reset")
        else:
            subject = gettext("Your MatriCloud account")
        body = render_to_string(
            "emails/temporary_password.txt",
            {
                "user": user,
                "email": user.email,
                "company": user.company,
                "password": password,
                "reset": reset,
                "login_url": _absolute_url(reverse("accounts:login")),
            },
        )
    return subject, body


def _absolute_url(path: str) -> str:
    """`path` on the portal's public address when configured (PORTAL_URL), else empty."""
    base = getattr(settings, "PORTAL_URL", "")
    return f"{base.rstrip('/')}{path}" if base else ""


def _send(message: tuple[str, str], recipient: str) -> None:
    subject, body = message
    send_mail(subject, body, None, [recipient])


def _delete_file(storage, name: str) -> None:
    try:
        storage.delete(name)
    except OSError:
        logger.warning("could not delete replaced file %s", name, exc_info=True)


def _site_model():
    """The Site model once the sites feature has one; deletion checks it when present."""
    try:
        return apps.get_model("pv_sites", "Site")
    except LookupError:
        return None
