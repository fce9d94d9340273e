"""Writes of the gateway pages (guide §6.3): rename, distribute to a site, remove a device from
the gateway. (Its Upgrade dialog creates an upgrade task: fleet/views/upgrade_dialog.py.)

Each function follows fleet/services.py: keyword `acting_user`, a role check through
accounts.permissions, validation (ValidationError), one transaction with one audit row.
Binding a gateway to a site and deleting an inverter are fleet/services.py's own services;
these functions call them instead of repeating their rules.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from accounts import audit
from accounts.models import AuditAction, User
from accounts.permissions import require
from fleet import services
from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site

NAME_MAX_LENGTH = Gateway._meta.get_field("name").max_length


def rename_gateway(gateway: Gateway, name: str, *, acting_user: User) -> Gateway:
    """Rename (guide §6.3.1.2). An empty name shows the serial number again."""
    require(acting_user, "device.manage", gateway)
    name = (name or "").strip()
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(
            {
                "name": gettext("A gateway name has at most %(n)d characters.")
                % {"n": NAME_MAX_LENGTH}
            }
        )
    with transaction.atomic():
        locked = Gateway.objects.select_for_update().get(pk=gateway.pk)
        old = locked.name
        if old == name:
            return locked
        locked.name = name
        locked.save(update_fields=["name"])
        audit.record(
            acting_user, AuditAction.GATEWAY_RENAMED, locked, {"name": old}, {"name": name}
        )
    gateway.name = name
    return locked


def distribute_gateway(gateway: Gateway, site: Site, *, acting_user: User) -> Gateway:
    """Distribute (guide §6.3.1.2): assign the gateway, with its inverters, to `site`.

    A gateway already on another site leaves it first (fleet.services.unbind_gateway) and is
    then bound through fleet.services.bind_gateway, so both sites' activity logs show the move
    and the binding rules (scope, one site per gateway) stay in one place.
    """
    require(acting_user, "device.manage", gateway)
    require(acting_user, "site.manage", site)
    if gateway.site_id == site.pk:
        raise ValidationError(
            {"site": gettext("The gateway is already on the site “%(site)s”.") % {"site": site}}
        )
    with transaction.atomic():
        old_site = Site.objects.filter(pk=gateway.site_id).first() if gateway.site_id else None
        if old_site is not None:
            services.unbind_gateway(old_site, gateway, acting_user=acting_user)
        bound = services.bind_gateway(site, gateway.serial_number, acting_user=acting_user)
        audit.record(
            acting_user,
            AuditAction.GATEWAY_DISTRIBUTED,
            bound,
            {"site": old_site.name if old_site else None},
            {"site": site.name},
        )
    gateway.site, gateway.company_id = site, site.company_id
    return bound


def delete_gateway_device(gateway: Gateway, inverter: Inverter, *, acting_user: User) -> None:
    """Delete a device of the gateway's device list (guide §6.3.2.1).

    The gateway's audit row names the device; the deletion itself is fleet.services.
    delete_inverter (which records the site's or the inverter's own row). If the device still
    answers on the bus, an Intellisense scan finds it again.
    """
    require(acting_user, "device.manage", gateway)
    with transaction.atomic():
        locked = Inverter.objects.select_for_update().filter(pk=inverter.pk).first()
        if locked is None or locked.gateway_id != gateway.pk:
            raise ValidationError(gettext("This device is not on this gateway."))
        audit.record(
            acting_user,
            AuditAction.GATEWAY_DEVICE_DELETED,
            gateway,
            before={"inverter": locked.serial_number, "address": locked.modbus_address},
        )
        services.delete_inverter(locked.site, locked, acting_user=acting_user)
