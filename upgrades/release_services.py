"""Publishing firmware (guide §7.1): checks, storage and the catalogue's figures.

A release is stored once, under its SHA-256, and applies to one or more models; each model is
a row of the catalogue (`ReleaseModel`). The image is never held in memory whole: the upload
is read in chunks twice (hashing, then copying into storage), and nothing is stored before
every check has passed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from accounts import audit
from accounts.models import AuditAction, User
from accounts.permissions import require
from devices import ota
from devices.registermap import RegisterMap, UnknownModelError, list_models
from gateways.models import Gateway, GatewayModel
from inverters.models import Inverter
from upgrades.models import (
    INVERTER_FIRMWARE_TYPES,
    DeviceKind,
    FirmwareRelease,
    FirmwareType,
    ReleaseModel,
    firmware_upload_to,
)

#: The inverter firmware types every model takes while its register map does not list them.
DEFAULT_INVERTER_TYPES = ("dsp", "lcd", "slave_dsp", "arc")
#: How many first bytes of an image may hold its `MCFW1` header line.
HEADER_BYTES = 4096
#: An inverter's firmware version registers hold the major version in the high byte and the
#: minor one in the low byte; devices report them as "MM.mm".
INVERTER_VERSION_RE = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})\s*$")
VERSION_MAX_LENGTH = FirmwareRelease._meta.get_field("version").max_length
DESCRIPTION_MAX_LENGTH = FirmwareRelease._meta.get_field("description").max_length
FILE_NAME_MAX_LENGTH = FirmwareRelease._meta.get_field("file_name").max_length


# --- Models and types -------------------------------------------------------------------------


def model_choices(kind: str) -> list[tuple[str, str]]:
    """The models a release of `kind` may apply to: the gateway kits, or every inverter model
    with a register map."""
    if kind == DeviceKind.GATEWAY:
        return [(model.value, model.value) for model in GatewayModel]
    return [(name, name) for name in list_models()]


def inverter_types_of(model: str) -> dict[str, str]:
    """Firmware type → the key of `Inverter.firmware_versions` that reports its version, for
    the types `model` takes (its register map's, else the common four)."""
    try:
        register_map = RegisterMap.for_model(model)
    except UnknownModelError:
        return {}
    types = getattr(register_map, "firmware_types", None)
    if types:
        return {
            name: spec.version_point.removesuffix("_version").upper()
            for name, spec in types.items()
        }
    return {name: name.upper() for name in DEFAULT_INVERTER_TYPES}


def normalise_inverter_version(text: str) -> str | None:
    """ "1.2" → "01.02", as the inverter reports it; None unless MM.mm with 0–255 each."""
    match = INVERTER_VERSION_RE.match(text or "")
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    if major > 255 or minor > 255:
        return None
    return f"{major:02d}.{minor:02d}"


# --- Publishing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFacts:
    size: int
    sha256: str
    header: dict[str, str] | None


def read_image(upload: File) -> ImageFacts:
    """Size, SHA-256 and `MCFW1` header of an uploaded image, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    start = b""
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
        size += len(chunk)
        if len(start) < HEADER_BYTES:
            start += chunk[: HEADER_BYTES - len(start)]
    upload.seek(0)
    return ImageFacts(size, digest.hexdigest(), ota.read_image_header(start))


def create_release(
    user: User,
    *,
    upload: File,
    kind: str,
    models: Iterable[str],
    version: str,
    firmware_type: str = "",
    description: str = "",
) -> FirmwareRelease:
    """Check and store a firmware image and publish it for `models`.

    Raises PermissionDenied unless `user` may publish firmware, and ValidationError (keyed by
    form field where one is at fault) for an empty or oversized file, an unknown model, a type
    the model does not take, a malformed inverter version, a header that disagrees with the
    form, or a release that already exists.
    """
    require(user, "firmware.upload")
    if kind not in DeviceKind.values:
        raise ValidationError({"kind": _("Choose gateway or inverter firmware.")})
    models = sorted(set(models))
    version = (version or "").strip()
    description = (description or "").strip()
    firmware_type = FirmwareType.GATEWAY if kind == DeviceKind.GATEWAY else firmware_type
    _check_fields(kind, models, firmware_type, description)
    version = _checked_version(kind, version)

    facts = _check_file(upload)
    _check_header(facts.header, kind, models, firmware_type, version)
    _check_not_released(kind, firmware_type, models, version, facts.sha256)

    release = FirmwareRelease(
        kind=kind,
        firmware_type=firmware_type,
        version=version,
        description=description,
        file_name=_file_name(upload),
        size=facts.size,
        sha256=facts.sha256,
        created_by=user,
        creator_label=user.username or user.email,
    )
    stored = release.file.storage.save(firmware_upload_to(release, ""), upload)
    release.file.name = stored
    try:
        with transaction.atomic():
            release.save()
            ReleaseModel.objects.bulk_create(
                ReleaseModel(
                    release=release,
                    kind=kind,
                    firmware_type=firmware_type,
                    model=model,
                    version=version,
                )
                for model in models
            )
            audit.record(
                user,
                AuditAction.FIRMWARE_RELEASED,
                release,
                after={
                    "kind": kind,
                    "firmware_type": firmware_type,
                    "version": version,
                    "models": models,
                    "file_name": release.file_name,
                    "size": facts.size,
                    "sha256": facts.sha256,
                },
            )
    except IntegrityError:
        # Published at the same moment by someone else: the checks above now say who.
        release.file.storage.delete(stored)
        _check_not_released(kind, firmware_type, models, version, facts.sha256)
        raise
    return release


def _check_fields(kind: str, models: list[str], firmware_type: str, description: str) -> None:
    errors: dict[str, str] = {}
    known = {value for value, _label in model_choices(kind)}
    if not models:
        errors["models"] = _("Choose at least one model.")
    elif unknown := [model for model in models if model not in known]:
        errors["models"] = _("Unknown model: %(models)s.") % {"models": ", ".join(unknown)}
    if kind == DeviceKind.INVERTER:
        if firmware_type not in INVERTER_FIRMWARE_TYPES:
            errors["firmware_type"] = _("Choose the firmware type.")
        elif "models" not in errors:
            lacking = [m for m in models if firmware_type not in inverter_types_of(m)]
            if lacking:
                errors["firmware_type"] = _("%(models)s take no %(type)s firmware.") % {
                    "models": ", ".join(lacking),
                    "type": FirmwareType(firmware_type).label,
                }
    if len(description) > DESCRIPTION_MAX_LENGTH:
        errors["description"] = _("A description has at most %(n)d characters.") % {
            "n": DESCRIPTION_MAX_LENGTH
        }
    if errors:
        raise ValidationError(errors)


def _checked_version(kind: str, version: str) -> str:
    if not version:
        raise ValidationError({"version": _("Please enter the version.")})
    if kind == DeviceKind.INVERTER:
        normalised = normalise_inverter_version(version)
        if normalised is None:
            raise ValidationError(
                {
                    "version": _(
                        "An inverter firmware version is MM.mm, two numbers from 0 to 255, "
                        "e.g. 01.20."
                    )
                }
            )
        return normalised
    if len(version) > VERSION_MAX_LENGTH or any(c.isspace() for c in version):
        raise ValidationError(
            {
                "version": _("A version has at most %(n)d characters and no spaces.")
                % {"n": VERSION_MAX_LENGTH}
            }
        )
    return version


def _check_file(upload: File | None) -> ImageFacts:
    limit = settings.FIRMWARE_MAX_BYTES
    if upload is None:
        raise ValidationError({"file": _("Choose the firmware file.")})
    if getattr(upload, "too_large", False) or (upload.size or 0) > limit:
        raise ValidationError({"file": file_too_large_message(upload.size)})
    facts = read_image(upload)
    if facts.size == 0:
        raise ValidationError({"file": _("The file is empty.")})
    if facts.size > limit:  # the declared size was wrong
        raise ValidationError({"file": file_too_large_message(facts.size)})
    return facts


def file_too_large_message(size: int) -> str:
    return _("The file is too large (%(size)s). The maximum is %(max)s.") % {
        "size": filesizeformat(size),
        "max": filesizeformat(settings.FIRMWARE_MAX_BYTES),
    }


def _check_header(
    header: dict[str, str] | None, kind: str, models: list[str], firmware_type: str, version: str
) -> None:
    """An image that names what it is built for must be what the form says."""
    if not header:
        return
    problems = []
    if "model" in header and any(header["model"].upper() != model.upper() for model in models):
        problems.append(_("model %(model)s") % {"model": header["model"]})
    if "type" in header and header["type"] != firmware_type:
        problems.append(_("firmware type %(type)s") % {"type": header["type"]})
    if "version" in header:
        named = header["version"]
        if kind == DeviceKind.INVERTER:
            named = normalise_inverter_version(named) or named
        if named != version:
            problems.append(_("version %(version)s") % {"version": header["version"]})
    if problems:
        raise ValidationError(
            {
                "file": _("The file is built for %(what)s, which is not what this form says.")
                % {"what": ", ".join(problems)}
            }
        )


def _check_not_released(
    kind: str, firmware_type: str, models: list[str], version: str, sha256: str
) -> None:
    same = (
        ReleaseModel.objects.filter(
            kind=kind, firmware_type=firmware_type, version=version, model__in=models
        )
        .order_by("model")
        .values_list("model", flat=True)
    )
    if same:
        raise ValidationError(
            {
                "version": _("Version %(version)s is already released for %(models)s.")
                % {"version": version, "models": ", ".join(same)}
            }
        )
    existing = FirmwareRelease.objects.filter(sha256=sha256).prefetch_related("models").first()
    if existing is not None:
        raise ValidationError(
            {
                "file": _("This file is already released as %(release)s for %(models)s.")
                % {
                    "release": str(existing),
                    "models": ", ".join(m.model for m in existing.models.all()),
                }
            }
        )


def _file_name(upload: File) -> str:
    name = (getattr(upload, "name", "") or "firmware.bin").replace("\\", "/").rsplit("/", 1)[-1]
    return name[-FILE_NAME_MAX_LENGTH:] or "firmware.bin"


# --- The catalogue ----------------------------------------------------------------------------


def with_newest(rows: QuerySet) -> QuerySet:
    """`rows` annotated with `is_newest`: no later release exists for the same model, kind and
    firmware type (the catalogue's "NEW")."""
    later = ReleaseModel.objects.filter(
        kind=OuterRef("kind"), firmware_type=OuterRef("firmware_type"), model=OuterRef("model")
    ).filter(
        Q(release__created_at__gt=OuterRef("release__created_at"))
        | Q(
            release__created_at=OuterRef("release__created_at"),
            release_id__gt=OuterRef("release_id"),
        )
    )
    return rows.annotate(is_newest=~Exists(later))


def devices_running(user: User, rows: Iterable[ReleaseModel]) -> dict[int, int]:
    """Release row id → how many devices in `user`'s scope run that version of that model
    (and firmware type): one aggregate query for all the rows."""
    rows = list(rows)
    if not rows:
        return {}
    counts: dict[str, Any] = {}
    if rows[0].kind == DeviceKind.GATEWAY:
        devices = Gateway.objects.visible_to(user)
        for row in rows:
            counts[f"r{row.pk}"] = Count(
                "pk", filter=Q(model=row.model, firmware_version=row.version)
            )
    else:
        devices = Inverter.objects.visible_to(user)
        for row in rows:
            key = inverter_types_of(row.model).get(row.firmware_type, row.firmware_type.upper())
            counts[f"r{row.pk}"] = Count(
                "pk",
                filter=Q(model__iexact=row.model, **{f"firmware_versions__{key}": row.version}),
            )
    found = devices.order_by().aggregate(**counts)
    return {row.pk: found[f"r{row.pk}"] or 0 for row in rows}


# --- Demo -------------------------------------------------------------------------------------

DEMO_RELEASES = (
    # kind, firmware type, models, version, description
    (DeviceKind.GATEWAY, FirmwareType.GATEWAY, ("CPS WiFi Kit",), "10.07", "release"),
    (DeviceKind.INVERTER, FirmwareType.DSP, ("ECH10K-TH-EU",), "01.22", "release"),
)
DEMO_IMAGE_BYTES = 256 * 1024


def ensure_demo_releases(user: User | None) -> list[str]:
    """Publish the demo's releases that are missing (built with `devices.ota.build_image`);
    returns a line per release created."""
    created = []
    for kind, firmware_type, models, version, description in DEMO_RELEASES:
        known = {value for value, _label in model_choices(kind)}
        models = [model for model in models if model in known]
        if (
            not models
            or ReleaseModel.objects.filter(
                kind=kind, firmware_type=firmware_type, version=version, model__in=models
            ).exists()
        ):
            continue
        image = ota.build_image(models[0], firmware_type, version, DEMO_IMAGE_BYTES, seed="demo")
        upload = ContentFile(image, name=f"{models[0].replace(' ', '-')}-{version}.bin")
        create_release(
            user,
            upload=upload,
            kind=kind,
            models=models,
            version=version,
            firmware_type=firmware_type,
            description=description,
        )
        created.append(f"firmware release {', '.join(models)} {firmware_type} {version}")
    return created
