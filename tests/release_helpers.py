"""Building blocks of the firmware catalogue's tests: platform administrators, images with and
without an `MCFW1` header, the upload form's data, and what storage holds."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import Role
from devices import ota
from tests.factories import UserFactory
from upgrades import release_services
from upgrades.models import DeviceKind, FirmwareRelease, FirmwareType

GATEWAY_MODEL = "CPS WiFi Kit"
OTHER_GATEWAY_MODEL = "CPS 4G Kit"
INVERTER_MODEL = "ECH10K-TH-EU"
UPLOAD_URL = "/upgrade/releases/upload/"


def releases_url(kind: str = DeviceKind.GATEWAY, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"kind": kind, **params}.items())
    return f"{reverse('upgrades:releases')}?{query}"


def platform_user(tenants, role: str = Role.ADMIN, **kwargs):
    """A user of the platform operator's company (not a superuser)."""
    return UserFactory(company=tenants.platform, role=role, **kwargs)


def image(model: str, firmware_type: str, version: str, size: int = 8192, seed: str = "") -> bytes:
    return ota.build_image(model, firmware_type, version, size, seed=seed)


def headerless(size: int = 4096, tag: str = "") -> bytes:
    """An image without a header (it may be released for several models); `tag` makes the
    bytes, and so the checksum, differ."""
    return b"\x5a" * size + tag.encode()


def upload_data(
    data: bytes,
    *,
    kind: str = DeviceKind.GATEWAY,
    models: tuple[str, ...] = (GATEWAY_MODEL,),
    version: str = "10.08",
    firmware_type: str = "",
    description: str = "release",
    name: str = "firmware.bin",
) -> dict:
    """The upload form's POST data."""
    field = "gateway_models" if kind == DeviceKind.GATEWAY else "inverter_models"
    return {
        "file": SimpleUploadedFile(name, data, content_type="application/octet-stream"),
        "kind": kind,
        field: list(models),
        "firmware_type": firmware_type,
        "version": version,
        "description": description,
    }


def publish(
    user,
    *,
    kind: str = DeviceKind.GATEWAY,
    models: tuple[str, ...] = (GATEWAY_MODEL,),
    version: str = "10.00",
    firmware_type: str = FirmwareType.GATEWAY,
    description: str = "release",
    data: bytes | None = None,
) -> FirmwareRelease:
    """A release published through the service, as the upload dialog does."""
    if data is None:
        # A header names one model: an image for several has none.
        if len(models) == 1:
            data = image(models[0], firmware_type, version)
        else:
            data = headerless(tag=f"{kind}|{firmware_type}|{version}|{models}")
    return release_services.create_release(
        user,
        upload=ContentFile(data, name=f"{models[0]}-{version}.bin"),
        kind=kind,
        models=models,
        version=version,
        firmware_type=firmware_type,
        description=description,
    )


def stored_firmware_files() -> list[Path]:
    """Every file under the firmware folder of MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT) / "firmware"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def row_versions(response) -> list[tuple[str, str, bool]]:
    """(model, version, marked NEW) of each row the catalogue shows."""
    table = response.context["table"]
    return [
        (row.record.model, row.record.version, bool(row.record.is_newest))
        for row in table.paginated_rows
    ]
