"""Site and device writes (guide §6.1–§6.2): create, edit, rename, distribute and delete a
site; bind and unbind gateways; rename and delete an inverter.

Every function takes the acting user as the keyword-only `acting_user`, checks it with
`accounts.permissions.require` (PermissionDenied), reports bad input as ValidationError with
the user-facing message (on the form field where there is one), runs in one transaction and
writes one audit row (accounts/audit.py) in it; a refused change writes none.

Gateways sign in to the broker as their own serial number with their own password
(gateways/credentials.py): neither depends on the company or the site, so binding and unbinding
change no broker credential. The ingest service caches which site a device belongs to for up to
two minutes (ingest/batch.py, `Registry`); samples received in that window are stored as before.
"""

from __future__ import annotations

import smtplib
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils.translation import gettext, ngettext
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm

from accounts import audit
from accounts import services as account_services
from accounts.models import AuditAction, Company, CompanyType, Role, User, normalize_email
from accounts.permissions import can, require
from accounts.scoping import is_visible
from accounts.stored_files import delete_on_commit
from alarms.models import Alarm
from fleet.models import CommissioningReport
from gateways.models import Gateway
from inverters.models import EnergyDaily, Inverter, InverterLatest, Sample
from inverters.placement import placement_changed
from sites.models import Site

VIEW_SITE = "pv_sites.view_site"

#: What a site form may set, in the forms' order (the picture goes through `update_site` only).
SITE_FIELD_NAMES = (
    "name",
    "address",
    "country",
    "latitude",
    "longitude",
    "time_zone",
    "site_type",
    "on_grid",
    "currency",
    "temperature_unit",
    "capacity_kwp",
    "tariff_per_kwh",
)
SITE_FIELDS = frozenset(SITE_FIELD_NAMES)
SITE_EDITABLE_FIELDS = SITE_FIELDS | {"picture"}
SITE_AUDIT_FIELDS = ("company", *SITE_FIELD_NAMES)
#: The degrees a coordinate may reach on either side of zero.
COORDINATE_LIMITS = {"latitude": 90, "longitude": 180}


class SiteDeletionRefused(ValidationError):
    """The site still has bound gateways; `reasons` are translated sentences."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(reasons)


# --- Validation shared by the forms and the services -------------------------------------------


def check_site_values(fields: dict[str, Any]) -> None:
    """Ranges the model does not enforce: coordinates on the globe, a positive capacity, a
    tariff not below zero, a name that is not blank. Raises ValidationError keyed by field.

    The one definition of these rules: the site forms (fleet/site_forms.py) report them through
    this function too."""
    errors: dict[str, str] = {}
    for name, limit in COORDINATE_LIMITS.items():
        value = fields.get(name)
        if value is not None and not -limit <= Decimal(value) <= limit:
            errors[name] = _coordinate_message(name)
    capacity = fields.get("capacity_kwp")
    if capacity is not None and Decimal(capacity) <= 0:
        errors["capacity_kwp"] = gettext("The capacity must be greater than zero.")
    tariff = fields.get("tariff_per_kwh")
    if tariff is not None and Decimal(tariff) < 0:
        errors["tariff_per_kwh"] = gettext("The tariff cannot be negative.")
    if "name" in fields and not str(fields["name"] or "").strip():
        errors["name"] = gettext("Please enter the site name.")
    if errors:
        raise ValidationError(errors)


def _coordinate_message(name: str) -> str:
    if name == "latitude":
        return gettext("The latitude must be between -90 and 90 degrees.")
    return gettext("The longitude must be between -180 and 180 degrees.")


def site_companies(user: User) -> models.QuerySet:
    """The companies a site of `user` may belong to: their own and those below it (never the
    owners' own companies, which hold no sites)."""
    return Company.objects.visible_to(user).exclude(type=CompanyType.OWNER)


def assignable_owners(user: User) -> models.QuerySet:
    """Users a site may be distributed to by `user`: active owner-role users `user` can see.

    Administrators and O&M engineers already see every site of their company tree, so a grant
    would change nothing for them; only owners see sites through grants.
    """
    return User.objects.visible_to(user).filter(role=Role.OWNER, is_active=True)


def _unknown_gateway(serial: str) -> ValidationError:
    return ValidationError(
        {"serial_number": gettext("Unknown gateway SN “%(sn)s”.") % {"sn": serial}}
    )


# --- Gateways ---------------------------------------------------------------------------------


def find_bindable_gateway(serial: str, *, acting_user: User) -> Gateway:
    """The gateway with SN `serial` if `acting_user` may bind it to a site.

    Bindable: it exists, it is not bound to a site, and it is in the user's scope or unclaimed
    (it belongs to the platform operator's root company and has no site: fresh from the
    factory). A gateway of another tenant is reported exactly like an unknown SN, so nobody
    learns that it exists. Raises ValidationError on `serial_number`.
    """
    if not can(acting_user, "site.manage"):
        raise PermissionDenied
    serial = (serial or "").strip()
    if not serial:
        raise ValidationError({"serial_number": gettext("Please enter the gateway SN.")})
    gateway = Gateway.objects.select_related("company", "site").filter(serial_number=serial).first()
    if gateway is None:
        raise _unknown_gateway(serial)
    unclaimed = gateway.site_id is None and gateway.company.type == CompanyType.PLATFORM
    if not unclaimed and not is_visible(acting_user, gateway):
        raise _unknown_gateway(serial)
    if gateway.site_id is not None:
        site = gateway.site
        if is_visible(acting_user, site):
            message = gettext("Gateway %(sn)s is already bound to the site “%(site)s”.") % {
                "sn": serial,
                "site": site.name,
            }
        else:
            message = gettext("Gateway %(sn)s is already bound to a site.") % {"sn": serial}
        raise ValidationError({"serial_number": message})
    return gateway


def _bind(site: Site, gateway: Gateway, *, acting_user: User) -> Gateway:
    """Move `gateway` and its inverters to `site` (inside the caller's transaction)."""
    locked = Gateway.objects.select_for_update().get(pk=gateway.pk)
    if locked.site_id is not None:  # bound by someone else since it was checked
        raise ValidationError(
            {
                "serial_number": gettext("Gateway %(sn)s is already bound to a site.")
                % {"sn": locked.serial_number}
            }
        )
    locked.site = site
    locked.company = site.company
    locked.save(update_fields=["site", "company"])
    Inverter.objects.filter(gateway=locked).update(site=site, company=site.company)
    # The newest values follow at once, so the site shows its live power without waiting for
    # the next upload.
    InverterLatest.objects.filter(inverter__gateway=locked).update(site=site, company=site.company)
    if gateway.company_id != site.company_id:
        # A claimed or moved device's history belongs to its new company too.
        EnergyDaily.objects.filter(inverter__gateway=locked).update(company=site.company)
        Alarm.objects.filter(inverter__gateway=locked).update(company=site.company)
    audit.record(
        acting_user,
        AuditAction.GATEWAY_BOUND,
        site,
        after={"gateway": locked.serial_number},
    )
    placement_changed()
    return locked


def bind_gateway(site: Site, serial: str, *, acting_user: User) -> Gateway:
    """Bind the gateway with SN `serial` to `site` (guide §6.2.2 "Add gateway"): the gateway and
    every inverter on it move to the site and the site's company, with their newest values.

    Their stored history (samples, daily energy, alarms) stays with the inverters; the site's
    energy counts from the day of binding on, as ingest next updates that day.
    """
    require(acting_user, "site.manage", site)
    gateway = find_bindable_gateway(serial, acting_user=acting_user)
    with transaction.atomic():
        return _bind(site, gateway, acting_user=acting_user)


def unbind_gateway(site: Site, gateway: Gateway, *, acting_user: User) -> None:
    """Detach `gateway` from `site` (guide §6.2.2 "Unbind"): the gateway and its inverters no
    longer belong to a site; they stay with the site's company, so they can be bound again.

    Data stays with the inverters (samples, daily energy, alarms); the site keeps its own daily
    and monthly energy recorded while they were bound.
    """
    require(acting_user, "site.manage", site)
    with transaction.atomic():
        locked = Gateway.objects.select_for_update().filter(pk=gateway.pk).first()
        if locked is None or locked.site_id != site.pk:
            raise ValidationError(gettext("This gateway is not bound to this site."))
        locked.site = None
        locked.save(update_fields=["site"])
        Inverter.objects.filter(gateway=locked).update(site=None)
        InverterLatest.objects.filter(inverter__gateway=locked).update(site=None)
        audit.record(
            acting_user,
            AuditAction.GATEWAY_UNBOUND,
            site,
            before={"gateway": locked.serial_number},
        )
        placement_changed()
    gateway.site = None


def delete_inverter(site: Site | None, inverter: Inverter, *, acting_user: User) -> None:
    """Delete an inverter (guide §6.2.2 from a site's page, §6.4 from the inverter list): it
    leaves its gateway and every list.

    With `site`, the inverter must still be on that site and the audit row names the site
    (the site page's "Delete"); without, it is deleted wherever it is and the row names the
    inverter (the inverter list's "Delete"). Its newest values, daily energy, alarms and
    remote operations are deleted with it (foreign keys CASCADE), and so are its raw samples
    (the partitioned table has no foreign key, so they are deleted here). The site's own daily
    and monthly energy keeps what the inverter contributed. If the device still answers on
    the bus, a scan finds it again.
    """
    require(acting_user, "device.manage", inverter)
    with transaction.atomic():
        locked = Inverter.objects.select_for_update().filter(pk=inverter.pk).first()
        if site is not None and (locked is None or locked.site_id != site.pk):
            raise ValidationError(gettext("This inverter does not belong to this site."))
        if locked is None:
            raise ValidationError(gettext("This inverter no longer exists."))
        before = {
            "inverter": locked.serial_number,
            "gateway": locked.gateway.serial_number if locked.gateway_id else None,
        }
        if site is not None:
            audit.record(acting_user, AuditAction.INVERTER_DELETED, site, before=before)
        else:
            before["site"] = locked.site_id
            audit.record(acting_user, AuditAction.INVERTER_REMOVED, locked, before=before)
        Sample.objects.filter(inverter_id=locked.pk)._raw_delete(Sample.objects.db)
        locked.delete()
        placement_changed()


def rename_inverter(inverter: Inverter, name: str, *, acting_user: User) -> Inverter:
    """Give `inverter` a new name (guide §6.4 "Rename"); an empty name shows its SN again."""
    require(acting_user, "device.manage", inverter)
    name = (name or "").strip()
    limit = Inverter._meta.get_field("name").max_length
    if len(name) > limit:
        raise ValidationError(
            {
                "name": ngettext(
                    "Use at most %(count)d character.", "Use at most %(count)d characters.", limit
                )
                % {"count": limit}
            }
        )
    before = audit.snapshot(inverter, ["name"])
    with transaction.atomic():
        updated = Inverter.objects.filter(pk=inverter.pk).update(name=name)
        if not updated:
            raise ValidationError(gettext("This inverter no longer exists."))
        inverter.name = name
        audit.record_change(acting_user, AuditAction.INVERTER_RENAMED, inverter, before)
    return inverter


# --- Sites -------------------------------------------------------------------------------------


def create_site(
    *,
    acting_user: User,
    company: Company,
    fields: dict,
    gateway: Gateway | str | None = None,
    owner: User | None = None,
    new_owner: dict | None = None,
) -> Site:
    """Create a site (guide §6.1.2) of `company` with `fields` (see SITE_FIELDS), in one
    transaction with its optional gateway (a Gateway or an SN, bound as `bind_gateway` does)
    and its account: an existing owner `owner`, or `new_owner` — a dict with `company`,
    `email`, optionally `language` and `username` — created as an owner-role user whose
    temporary password is emailed once everything has committed.

    Raises ValidationError (keys: site fields, `serial_number`, `owner`, `email`),
    PermissionDenied, or accounts.services.PasswordEmailFailed after committing when the
    credentials email could not be sent.
    """
    require(acting_user, "site.manage", company)
    if not site_companies(acting_user).filter(pk=company.pk).exists():
        raise PermissionDenied
    unknown = set(fields) - SITE_FIELDS
    if unknown:
        raise ValueError(f"not a site field: {', '.join(sorted(unknown))}")
    if owner is not None and new_owner is not None:
        raise ValueError("either owner or new_owner, not both")
    check_site_values(fields)
    if owner is not None and not assignable_owners(acting_user).filter(pk=owner.pk).exists():
        raise ValidationError({"owner": gettext("Please choose an owner account you manage.")})
    serial = gateway.serial_number if isinstance(gateway, Gateway) else gateway
    try:
        with transaction.atomic():
            site = Site(company=company, **fields)
            site.name = site.name.strip()
            site.full_clean(exclude=["picture"])
            site.save()
            if not is_visible(acting_user, site):
                raise PermissionDenied
            audit.record(
                acting_user,
                AuditAction.SITE_CREATED,
                site,
                after=audit.initial(site, SITE_AUDIT_FIELDS),
            )
            if serial:
                found = find_bindable_gateway(serial, acting_user=acting_user)
                _bind(site, found, acting_user=acting_user)
            if new_owner is not None:
                owner = _create_owner(new_owner, acting_user=acting_user)
            if owner is not None:
                _grant(site, owner, acting_user=acting_user)
    except (smtplib.SMTPException, OSError) as exc:  # raised by the email sent on commit
        email = normalize_email((new_owner or {}).get("email") or "")
        created = User.objects.filter(email=email).first() if email else None
        if created is None:
            raise
        failed = account_services.PasswordEmailFailed(created)
        failed.site = site  # committed: the caller can go to it
        raise failed from exc
    return site


def _create_owner(data: dict, *, acting_user: User) -> User:
    """An owner-role user through the account service (temporary password emailed)."""
    company = data["company"]
    email = data["email"]
    username = (data.get("username") or "").strip() or email.split("@", 1)[0][:60]
    language = data.get("language") or ""
    return account_services.create_user(
        acting_user=acting_user,
        company=company,
        email=email,
        username=username,
        role=Role.OWNER,
        language=language,
    )


def _grant(site: Site, user: User, *, acting_user: User) -> None:
    assign_perm(VIEW_SITE, user, site)
    audit.record(
        acting_user,
        AuditAction.SITE_DISTRIBUTED,
        site,
        after={"user": user.email},
    )


def update_site(site: Site, *, acting_user: User, **changes: Any) -> Site:
    """Change a site's information (guide §6.2.1); `picture` takes an upload or None (remove).
    One audit row with the changed fields."""
    require(acting_user, "site.manage", site)
    check_site_values(changes)
    if "name" in changes:
        changes["name"] = str(changes["name"]).strip()
    account_services.edit_fields(
        site,
        changes,
        acting_user=acting_user,
        action=AuditAction.SITE_EDITED,
        editable=SITE_EDITABLE_FIELDS,
        image_field="picture",
    )
    return site


def rename_site(site: Site, name: str, *, acting_user: User) -> Site:
    """Give `site` a new name (guide §6.1.3 "Rename")."""
    require(acting_user, "site.manage", site)
    check_site_values({"name": name})
    account_services.edit_fields(
        site,
        {"name": name.strip()},
        acting_user=acting_user,
        action=AuditAction.SITE_RENAMED,
        editable=frozenset({"name"}),
        image_field="picture",
    )
    return site


def distribute_site(site: Site, user: User, *, acting_user: User) -> None:
    """Assign `site` to `user` (guide §6.1.3 "Distribute"): `user` may then see it.

    The receiver must be an active owner-role user visible to `acting_user` (see
    `assignable_owners`: staff see their company tree's sites without grants). A site may be
    distributed to several owners; distributing it again to the same owner is refused.
    """
    require(acting_user, "site.manage", site)
    if not assignable_owners(acting_user).filter(pk=user.pk).exists():
        raise ValidationError({"user": gettext("Please choose an owner account you manage.")})
    if user.has_perm(VIEW_SITE, site):
        raise ValidationError(
            {"user": gettext("%(user)s already has this site.") % {"user": user.username}}
        )
    with transaction.atomic():
        _grant(site, user, acting_user=acting_user)


def site_owners(site: Site) -> models.QuerySet:
    """The users `site` has been distributed to."""
    return User.objects.filter(
        pk__in=UserObjectPermission.objects.filter(
            content_type=ContentType.objects.get_for_model(Site),
            object_pk=str(site.pk),
            permission__codename="view_site",
        ).values("user_id")
    )


def site_delete_blockers(site: Site) -> list[str]:
    """Why `site` cannot be deleted yet (translated), empty when it can: bound gateways."""
    serials = list(
        Gateway.objects.filter(site=site)
        .order_by("serial_number")
        .values_list("serial_number", flat=True)
    )
    if not serials:
        return []
    return [
        ngettext(
            "Gateway %(serials)s is still bound to this site. Unbind it first.",
            "Gateways %(serials)s are still bound to this site. Unbind them first.",
            len(serials),
        )
        % {"serials": ", ".join(serials)}
    ]


def delete_site(site: Site, *, acting_user: User) -> None:
    """Delete a site without gateways (guide §6.1.3 "Delete").

    Refused (SiteDeletionRefused) while gateways are bound. Otherwise the site's daily and
    monthly energy and its commissioning reports (rows and PDF files) are deleted with it;
    inverters still linked without a gateway are unlinked and keep their own data; alarms and
    remote operations keep their history without the site; the owners' grants and the
    picture are removed.
    """
    require(acting_user, "site.manage", site)
    with transaction.atomic():
        Site.objects.select_for_update().get(pk=site.pk)
        reasons = site_delete_blockers(site)
        if reasons:
            raise SiteDeletionRefused(reasons)
        audit.record(
            acting_user,
            AuditAction.SITE_DELETED,
            site,
            before=audit.initial(site, SITE_AUDIT_FIELDS),
        )
        Inverter.objects.filter(site=site).update(site=None)
        UserObjectPermission.objects.filter(
            content_type=ContentType.objects.get_for_model(Site), object_pk=str(site.pk)
        ).delete()
        delete_on_commit(site.picture)
        for report in CommissioningReport.objects.filter(site=site).only("pdf"):
            delete_on_commit(report.pdf)
        site.delete()


__all__ = [
    "SITE_FIELDS",
    "SITE_FIELD_NAMES",
    "SiteDeletionRefused",
    "assignable_owners",
    "bind_gateway",
    "check_site_values",
    "create_site",
    "delete_inverter",
    "delete_site",
    "distribute_site",
    "find_bindable_gateway",
    "rename_inverter",
    "rename_site",
    "site_companies",
    "site_delete_blockers",
    "site_owners",
    "unbind_gateway",
    "update_site",
]
