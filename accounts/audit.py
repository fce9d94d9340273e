"""The audit trail of account changes: one `AuditEvent` per change, written by the service
function that makes the change, inside its transaction, so a change and its record commit or
roll back together.

    before = audit.snapshot(company, ["name", "country"])
    ... change and save company ...
    audit.record_change(acting_user, AuditAction.COMPANY_EDITED, company, before)

Only changed fields are kept, as JSON values (foreign keys as ids, countries as codes, files as
names). Secrets never are: passwords, hashes, codes and access codes are dropped whatever the
caller passes; a password change is recorded by its action alone.

The client address comes from the request being served (`request_context`, entered by
accounts.middleware), so services stay free of requests and tasks record none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models.fields.files import FieldFile
from django_countries.fields import Country

from accounts.models import AuditEvent

if TYPE_CHECKING:
    from django.http import HttpRequest

    from accounts.models import User

NEVER_RECORDED = frozenset({"password", "code_hash", "code", "access_code"})
LABEL_MAX_LENGTH = AuditEvent._meta.get_field("object_label").max_length

_client_address: ContextVar[str | None] = ContextVar("audit_client_address", default=None)


@contextmanager
def request_context(request: HttpRequest) -> Iterator[None]:
    """Record the request's client address on the events written while it is served."""
    from accounts.throttle import client_address

    token = _client_address.set(_valid_address(client_address(request)))
    try:
        yield
    finally:
        _client_address.reset(token)


def snapshot(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The JSON values of `fields` of `obj`, secrets left out."""
    return {
        name: json_value(obj._meta.get_field(name).value_from_object(obj))
        for name in fields
        if name not in NEVER_RECORDED
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields whose value differs, as (before, after)."""
    changed = [name for name in {**before, **after} if before.get(name) != after.get(name)]
    return (
        {name: before[name] for name in changed if name in before},
        {name: after[name] for name in changed if name in after},
    )


def record(
    actor: User | None,
    action: str,
    obj: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one event. Call it inside the change's transaction, before a deletion.

    An actor who has just deleted themselves (deregistration) is kept by email only.
    """
    company = actor.company if actor is not None and actor.company_id else None
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.pk is not None else None,
        actor_label=actor.email if actor is not None else "",
        company=company,
        company_path=company.path if company is not None else "",
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_label=str(obj)[:LABEL_MAX_LENGTH],
        before=_without_secrets(before),
        after=_without_secrets(after),
        client_address=_client_address.get(),
    )


def record_change(
    actor: User | None,
    action: str,
    obj: models.Model,
    before: dict[str, Any],
    *,
    always: bool = False,
) -> AuditEvent | None:
    """Record how the fields of `before` (a `snapshot`) changed. An edit that changed nothing
    records nothing, unless `always` (the action itself is the news, e.g. a password reset)."""
    old, new = diff(before, snapshot(obj, before))
    if not old and not new and not always:
        return None
    return record(actor, action, obj, old, new)


def initial(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The `snapshot` of a created or deleted object, without its empty fields."""
    return {
        name: value
        for name, value in snapshot(obj, fields).items()
        if value is not None and value is not False and value != ""
    }


def json_value(value: Any) -> Any:
    """A field value as JSON: files by name, countries by code, numbers and dates as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, FieldFile):
        return value.name or ""
    if isinstance(value, Country):
        return value.code or ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return str(value)


def _without_secrets(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if k not in NEVER_RECORDED}


def _valid_address(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None
