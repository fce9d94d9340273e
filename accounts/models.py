"""Companies (the tenant tree), users with roles, and emailed verification codes."""

from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_countries.fields import CountryField

from accounts.scoping import ScopedQuerySet
from accounts.stored_files import stored_file_url

NORTH_AMERICA = {"US", "CA", "MX"}
ACCESS_CODE_ALPHABET = string.ascii_uppercase + string.digits
PATH_SEGMENT_WIDTH = 10


class CompanyType(models.TextChoices):
    PLATFORM = "platform", _("Platform operator")
    DISTRIBUTOR = "distributor", _("Distributor")
    INSTALLER = "installer", _("Installer")
    OWNER = "owner", _("Owner")


class Role(models.TextChoices):
    ADMIN = "admin", _("Administrator")
    OM = "om", _("O&M engineer")
    OWNER = "owner", _("Owner (common user)")


class Currency(models.TextChoices):
    EUR = "EUR", _("Euro (€)")
    USD = "USD", _("US dollar ($)")
    GBP = "GBP", _("Pound sterling (£)")
    CHF = "CHF", _("Swiss franc (CHF)")
    CAD = "CAD", _("Canadian dollar (CA$)")
    PLN = "PLN", _("Polish złoty (zł)")
    SEK = "SEK", _("Swedish krona (kr)")


def new_access_code() -> str:
    return "".join(secrets.choice(ACCESS_CODE_ALPHABET) for _ in range(8))


class CompanyQuerySet(ScopedQuerySet):
    company_path = ""

    def visible_to_owner(self, user: User) -> CompanyQuerySet:
        return self.filter(pk=user.company_id)


class Company(models.Model):
    """A merchant in the tree: platform → distributors → installers → owner companies.

    `path` holds the ids from the root down ("0000000001.0000000007."), so "this company and
    everything below it" is one indexed prefix match.
    """

    type = models.CharField(_("company type"), max_length=16, choices=CompanyType.choices)
    superior = models.ForeignKey(
        "self",
        verbose_name=_("superior"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subordinates",
    )
    name = models.CharField(_("company name"), max_length=120)
    country = CountryField(_("country/region"))
    address = models.CharField(_("address"), max_length=255, blank=True)
    description = models.TextField(_("description"), max_length=1000, blank=True)
    logo = models.ImageField(_("logo"), upload_to="logos/", blank=True)
    access_code = models.CharField(
        _("access code"), max_length=16, unique=True, default=new_access_code, editable=False
    )
    path = models.CharField(max_length=255, editable=False, db_index=True, default="")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = CompanyQuerySet.as_manager()

    class Meta:
        verbose_name = _("company")
        verbose_name_plural = _("companies")
        ordering = ["path"]
        indexes = [
            models.Index(
                fields=["path"], name="company_path_prefix", opclasses=["varchar_pattern_ops"]
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        creating = self.pk is None
        super().save(*args, **kwargs)
        if creating or not self.path:
            parent_path = self.superior.path if self.superior_id else ""
            self.path = f"{parent_path}{self.pk:0{PATH_SEGMENT_WIDTH}d}."
            type(self).objects.filter(pk=self.pk).update(path=self.path)

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("accounts:company_detail", args=[self.pk])

    @property
    def logo_url(self) -> str:
        """Where the logo is shown from: a view that checks who may see this company."""
        return stored_file_url("files:logo", self.pk, self.logo)

    @property
    def depth(self) -> int:
        return self.path.count(".") - 1

    @property
    def region(self) -> str:
        """The deployment region the guide distinguishes: Europe or North America."""
        return "north_america" if self.country.code in NORTH_AMERICA else "europe"

    def is_below(self, other: Company) -> bool:
        return self.path.startswith(other.path)


class UserQuerySet(ScopedQuerySet):
    company_path = "company"

    def visible_to_owner(self, user: User) -> UserQuerySet:
        return self.filter(pk=user.pk)


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        fields.setdefault("role", Role.ADMIN)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username: str) -> User:
        return self.get(email=normalize_email(username))


def normalize_email(email: str) -> str:
    """Emails are compared case-insensitively everywhere: store them lower-cased."""
    return (email or "").strip().lower()


def avatar_path(instance: User, filename: str) -> str:
    return f"avatars/{instance.pk or 'new'}/{filename}"


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(_("email"), unique=True)
    username = models.CharField(_("username"), max_length=60)
    company = models.ForeignKey(
        Company,
        verbose_name=_("company"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="users",
    )
    role = models.CharField(_("role"), max_length=8, choices=Role.choices, default=Role.OWNER)
    supervisor = models.ForeignKey(
        "self",
        verbose_name=_("supervisor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supervised",
    )
    country = CountryField(_("country/region"), blank=True)
    description = models.CharField(_("description"), max_length=255, blank=True)
    avatar = models.ImageField(_("avatar"), upload_to=avatar_path, blank=True)
    currency = models.CharField(
        _("currency"), max_length=3, choices=Currency.choices, default=Currency.EUR
    )
    language = models.CharField(
        _("language"), max_length=8, choices=settings.LANGUAGES, default="en"
    )
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC")
    password_is_temporary = models.BooleanField(default=False, editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(_("staff status"), default=False)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["username"]

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        ordering = ["username", "email"]

    def __str__(self) -> str:
        return self.username or self.email

    def save(self, *args, **kwargs) -> None:
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)

    def get_full_name(self) -> str:
        return str(self)

    def get_short_name(self) -> str:
        return str(self)

    @property
    def avatar_url(self) -> str:
        """Where the avatar is shown from: a view that checks who may see this user."""
        return stored_file_url("files:avatar", self.pk, self.avatar)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER and not self.is_superuser


class CodePurpose(models.TextChoices):
    REGISTER = "register", _("Registration")
    RESET_PASSWORD = "reset_password", _("Password reset")
    EMAIL_OLD = "email_old", _("Confirm current email")
    EMAIL_NEW = "email_new", _("Confirm new email")


class VerificationCode(models.Model):
    """A code emailed on "Send": single-use, expiring, with a limited number of attempts.

    Only a hash of the code is stored.
    """

    email = models.EmailField()
    purpose = models.CharField(max_length=16, choices=CodePurpose.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["email", "purpose", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} code for {self.email}"


class AuditAction(models.TextChoices):
    COMPANY_CREATED = "company.created", _("Company added")
    COMPANY_EDITED = "company.edited", _("Company edited")
    COMPANY_DELETED = "company.deleted", _("Company deleted")
    ACCOUNT_REGISTERED = "account.registered", _("Account registered")
    USER_CREATED = "user.created", _("User added")
    USER_EDITED = "user.edited", _("User edited")
    USER_ROLE_CHANGED = "user.role_changed", _("Role changed")
    USER_PASSWORD_RESET = "user.password_reset", _("Temporary password sent")
    USER_DEREGISTERED = "user.deregistered", _("Account cancelled")
    PROFILE_EDITED = "profile.edited", _("Profile edited")
    PASSWORD_CHANGED = "password.changed", _("Password changed")
    PASSWORD_RECOVERED = "password.recovered", _("Forgotten password reset")
    EMAIL_CHANGED = "email.changed", _("Email changed")
    # Sites and their devices (fleet.services)
    SITE_CREATED = "site.created", _("Site created")
    SITE_EDITED = "site.edited", _("Site edited")
    SITE_RENAMED = "site.renamed", _("Site renamed")
    SITE_DISTRIBUTED = "site.distributed", _("Site distributed")
    SITE_DELETED = "site.deleted", _("Site deleted")
    GATEWAY_BOUND = "site.gateway_bound", _("Gateway bound")
    GATEWAY_UNBOUND = "site.gateway_unbound", _("Gateway unbound")
    INVERTER_DELETED = "site.inverter_deleted", _("Inverter deleted")
    # Commissioning reports (fleet.commissioning_services)
    COMMISSIONING_CREATED = "commissioning.created", _("Commissioning report created")
    COMMISSIONING_UPDATED = "commissioning.updated", _("Commissioning report updated")
    COMMISSIONING_DELETED = "commissioning.deleted", _("Commissioning report deleted")
    COMMISSIONING_SENT = "commissioning.sent", _("Commissioning report sent")
    # Gateway and inverter pages (guide §6.3, §6.4)
    GATEWAY_RENAMED = "gateway.renamed", _("Gateway renamed")
    GATEWAY_DISTRIBUTED = "gateway.distributed", _("Gateway distributed")
    GATEWAY_DEVICE_DELETED = "gateway.device_deleted", _("Device removed from gateway")
    GATEWAY_UPGRADE_REQUESTED = "gateway.upgrade_requested", _("Gateway upgrade requested")
    INVERTER_RENAMED = "inverter.renamed", _("Inverter renamed")
    INVERTER_REMOVED = "inverter.deleted", _("Inverter removed")
    AUTOTEST_STARTED = "inverter.autotest_started", _("AutoTest started")
    # Firmware (upgrades)
    FIRMWARE_RELEASED = "firmware.released", _("Firmware released")
    UPGRADE_CREATED = "upgrade.created", _("Upgrade task created")
    UPGRADE_APPROVED = "upgrade.approved", _("Upgrade task approved")
    UPGRADE_PAUSED = "upgrade.paused", _("Upgrade task paused")
    UPGRADE_RESUMED = "upgrade.resumed", _("Upgrade task resumed")
    UPGRADE_RETRIED = "upgrade.retried", _("Failed devices retried")
    UPGRADE_CANCELLED = "upgrade.cancelled", _("Upgrade task cancelled")
    UPGRADE_POLICY_CHANGED = "upgrade.policy_changed", _("Upgrade approval rule changed")


class AuditEventQuerySet(models.QuerySet):
    def visible_to(self, user: User) -> AuditEventQuerySet:
        """The activity log is for administrators: the events of actors in their company and
        the companies below it. O&M engineers and owners see none; superusers see all.

        Scoped by the actor's company path as it was, so events stay visible to the companies
        above after the actor's company is deleted.
        """
        from accounts.permissions import can

        if not can(user, "audit.view"):
            return self.none()
        if user.is_superuser:
            return self
        if user.company_id is None:
            return self.none()
        return self.filter(company_path__startswith=user.company.path)


class AuditEvent(models.Model):
    """One change to an account, company or user: who, when, what, and the changed fields.

    The object is named by type, id and label rather than a foreign key, and the actor's email
    is kept, so the record outlives both. `before` and `after` never hold passwords, hashes or
    codes (accounts/audit.py).
    """

    occurred_at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(_("user email"), max_length=254, blank=True)
    company = models.ForeignKey(
        Company,
        verbose_name=_("company"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    company_path = models.CharField(max_length=255, blank=True, editable=False)
    action = models.CharField(_("action"), max_length=32, choices=AuditAction.choices)
    object_type = models.CharField(_("object type"), max_length=100)
    object_id = models.CharField(_("object id"), max_length=64)
    object_label = models.CharField(_("object"), max_length=200, blank=True)
    before = models.JSONField(_("before"), default=dict, blank=True)
    after = models.JSONField(_("after"), default=dict, blank=True)
    client_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("account event")
        verbose_name_plural = _("account events")
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(
                fields=["company_path"],
                name="audit_company_path_prefix",
                opclasses=["varchar_pattern_ops"],
            ),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.object_label}"
