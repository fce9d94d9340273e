"""Self-registration of a company and its first user (guide §2.2), and deregistration of a
user (guide §3.4).

Both record an audit event (accounts/audit.py). A registration has no acting user yet: the new
user is the actor. Deregistration follows accounts/services.py: `acting_user`, checked by
`permissions.require`.
"""

from __future__ import annotations

import logging

from django.apps import apps
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import ProtectedError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts import audit
from accounts.models import (
    NORTH_AMERICA,
    AuditAction,
    Company,
    CompanyType,
    Role,
    User,
    VerificationCode,
    normalize_email,
)
from accounts.permissions import require
from accounts.time_zones import default_time_zone

logger = logging.getLogger(__name__)

# The portal serves Europe and North America: the region list of the registration form.
EUROPE = frozenset(
    "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI "
    "LT LU LV MC MD ME MK MT NL NO PL PT RO RS SE SI SJ SK SM UA VA".split()
)
REGISTRATION_COUNTRIES = EUROPE | NORTH_AMERICA

SELF_REGISTERING_TYPES = (CompanyType.DISTRIBUTOR, CompanyType.INSTALLER, CompanyType.OWNER)

# Which companies may be the superior of a self-registered company of each type.
ALLOWED_SUPERIORS: dict[str, frozenset[str]] = {
    CompanyType.DISTRIBUTOR: frozenset({CompanyType.PLATFORM, CompanyType.DISTRIBUTOR}),
    CompanyType.INSTALLER: frozenset(
        {CompanyType.PLATFORM, CompanyType.DISTRIBUTOR, CompanyType.INSTALLER}
    ),
    CompanyType.OWNER: frozenset(
        {CompanyType.PLATFORM, CompanyType.DISTRIBUTOR, CompanyType.INSTALLER}
    ),
}

# What the audit trail keeps of a registered user.
AUDIT_FIELDS = ("email", "username", "company", "role", "country", "language", "time_zone")

FIRST_USER_ROLE: dict[str, str] = {
    CompanyType.DISTRIBUTOR: Role.ADMIN,
    CompanyType.INSTALLER: Role.ADMIN,
    CompanyType.OWNER: Role.OWNER,
}


class DeregistrationRefused(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def superior_for_access_code(account_type: str, access_code: str) -> Company:
    """The company whose access code was entered, if it may take an `account_type` below it.

    Raises ValidationError (code "invalid_access_code" or "unsuitable_access_code").
    """
    code = (access_code or "").strip().upper()
    superior = Company.objects.filter(access_code=code).first() if code else None
    if superior is None:
        raise ValidationError(
            _("No company has this access code. Ask your superior service provider for it."),
            code="invalid_access_code",
        )
    if superior.type not in ALLOWED_SUPERIORS[account_type]:
        raise ValidationError(
            _(
                "This access code belongs to a company that cannot take an account of type "
                "“%(account)s” below it. Ask your distributor or installer for the right code."
            )
            % {"account": CompanyType(account_type).label},
            code="unsuitable_access_code",
        )
    return superior


def email_is_registered(email: str) -> bool:
    return User.objects.filter(email=normalize_email(email)).exists()


@transaction.atomic
def register_account(
    *,
    account_type: str,
    company_name: str,
    country: str,
    email: str,
    password: str,
    access_code: str,
    language: str | None = None,
) -> User:
    """Create a company below the company whose access code was entered, and its first user.

    The first user of a distributor or installer company is its administrator (guide §2.1:
    self-registered distributors and installers "are granted administrator privileges by
    default"). The first user of an owner company is an owner (common user): owners only view
    the sites their installer grants them, and an owner company has no staff to administer —
    the installer above it manages its users.

    Raises ValidationError keyed by field (access_code, email, password) when the data does
    not allow the registration.
    """
    if account_type not in SELF_REGISTERING_TYPES:
        raise ValueError(f"accounts of type {account_type!r} cannot self-register")
    try:
        superior = superior_for_access_code(account_type, access_code)
    except ValidationError as error:
        raise ValidationError({"access_code": error}) from None
    email = normalize_email(email)
    if email_is_registered(email):
        raise ValidationError({"email": _("An account with this email already exists.")})
    company = Company.objects.create(
        type=account_type, superior=superior, name=company_name.strip(), country=country
    )
    user = User(
        email=email,
        # The guide's form labels the name field "Company Users": it names the first user too.
        username=company_name.strip()[: User._meta.get_field("username").max_length],
        company=company,
        role=FIRST_USER_ROLE[account_type],
        country=country,
        language=language or settings.LANGUAGE_CODE,
        time_zone=default_time_zone(country),
    )
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password": error.error_list}) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # registered concurrently
        raise ValidationError({"email": _("An account with this email already exists.")}) from None
    audit.record(
        user, AuditAction.ACCOUNT_REGISTERED, user, after=audit.initial(user, AUDIT_FIELDS)
    )
    logger.info("registered %s company %s below %s", account_type, company.pk, superior.pk)
    return user


def linked_assets(user: User) -> list[str]:
    """Why `user` cannot deregister yet; an empty list means they can."""
    reasons = []
    company = user.company
    if company is not None:
        others = company.users.exclude(pk=user.pk)
        subordinates = company.subordinates.count()
        last_admin = user.role == Role.ADMIN and not others.filter(role=Role.ADMIN).exists()
        if last_admin and (others.exists() or subordinates):
            reasons.append(
                _(
                    "You are the last administrator of %(company)s, which still has other "
                    "users or companies below it. Make another user administrator, or remove "
                    "them first."
                )
                % {"company": company.name}
            )
        if not others.exists():
            company_sites = _count_sites(company)
            if company_sites:
                reasons.append(
                    ngettext(
                        "%(company)s still has %(count)d site and you are its last user.",
                        "%(company)s still has %(count)d sites and you are its last user.",
                        company_sites,
                    )
                    % {"company": company.name, "count": company_sites}
                )
    user_sites = _count_sites(user)
    if user_sites:
        reasons.append(
            ngettext(
                "%(count)d site is still granted to or owned by your account. Ask your "
                "installer to unlink it.",
                "%(count)d sites are still granted to or owned by your account. Ask your "
                "installer to unlink them.",
                user_sites,
            )
            % {"count": user_sites}
        )
    return reasons


@transaction.atomic
def deregister(user: User, *, acting_user: User) -> None:
    """Delete `user`, and their company when it is left without users and sub-companies.

    Records `user.deregistered`, and `company.deleted` when the company goes too. Raises
    DeregistrationRefused with the reasons of linked_assets().
    """
    require(acting_user, "account.deregister", user)
    reasons = linked_assets(user)
    if reasons:
        raise DeregistrationRefused(reasons)
    company = user.company
    avatar = user.avatar.name if user.avatar else ""
    VerificationCode.objects.filter(email=user.email).delete()
    audit.record(
        acting_user,
        AuditAction.USER_DEREGISTERED,
        user,
        before=audit.initial(user, ("email", "username", "company", "role")),
    )
    user.delete()
    if company is not None and company.superior_id is not None:
        if not company.users.exists() and not company.subordinates.exists():
            try:
                with transaction.atomic():
                    audit.record(
                        acting_user,
                        AuditAction.COMPANY_DELETED,
                        company,
                        before=audit.initial(company, ("type", "superior", "name", "country")),
                    )
                    company.delete()
            except ProtectedError:  # still referenced by devices or the like: keep it
                logger.info("kept company %s after its last user deregistered", company.pk)
    if avatar:
        storage = User._meta.get_field("avatar").storage
        transaction.on_commit(lambda: storage.delete(avatar))


def _site_model() -> type[models.Model] | None:
    try:
        return apps.get_model("pv_sites", "Site")
    except LookupError:
        return None


def _count_sites(holder: User | Company) -> int:
    """Sites that belong to `holder`: through any relation of Site to its model and, for a
    user, through object permissions (grants). Zero while the site feature is absent."""
    site_model = _site_model()
    if site_model is None:
        return 0
    query = models.Q()
    for field in site_model._meta.get_fields():
        forward = field.is_relation and not field.auto_created
        if forward and field.related_model is type(holder):
            query |= models.Q(**{field.name: holder})
    pks = set()
    if query:
        pks |= set(site_model._default_manager.filter(query).values_list("pk", flat=True))
    if isinstance(holder, User):
        pks |= _granted_site_pks(holder, site_model)
    return len(pks)


def _granted_site_pks(user: User, site_model: type[models.Model]) -> set:
    from guardian.shortcuts import get_objects_for_user

    meta = site_model._meta
    granted = get_objects_for_user(
        user,
        f"{meta.app_label}.view_{meta.model_name}",
        klass=site_model,
        accept_global_perms=False,
        with_superuser=False,
    )
    return set(granted.values_list("pk", flat=True))
