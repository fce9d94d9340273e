"""Stored files of every app: image uploads cleaned before they are stored, and the address a
stored file is shown from.

What is stored is never the visitor's file. An image upload is refused before Pillow reads it
when it has too many bytes, and before its pixels are decoded when it has too many pixels (a
decompression bomb). The pixels alone are then re-encoded to PNG or JPEG, so no metadata
survives (EXIF with the GPS position of a phone photo, ICC profiles, comments, text chunks),
and stored under a random name whose extension follows the detected format, not the uploaded
name.

Stored files are served only by the project's file views (matricloud/files.py), which look the
object up through the user's scope first; `stored_file_url` builds their address, which names
the object and never the storage path.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from functools import partial

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models.fields.files import FieldFile
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps

# Pillow format → (extension, content type) of what we store. The file views serve these
# extensions with these types and nothing else as an image.
STORED_IMAGE_TYPES = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg")}
# Lossy sources stay lossy (a photo as PNG would grow several times); the rest becomes PNG.
LOSSY_FORMATS = {"JPEG", "WEBP"}
JPEG_QUALITY = 90


class StoredImageField(forms.ImageField):
    """An uploaded image, checked and re-encoded into a clean file with a random name.

    Subclasses say which formats they accept, which setting holds their byte limit, the largest
    side accepted (`max_side`, which also caps the pixel count) and the largest side stored
    (`stored_side`: larger pictures are scaled down, so a 4096-pixel photo does not become a
    48-pixel avatar of several megabytes).
    """

    accepted_formats: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP")
    max_bytes_setting = "AVATAR_MAX_BYTES"
    max_side = 4096
    stored_side = 1024

    default_error_messages = {
        "file_too_large": _("The image is too large (%(size)s). The maximum is %(max)s."),
        "image_format": _("Please upload a JPEG, PNG, GIF or WebP image."),
        "image_too_big": _("The image may be at most %(side)d × %(side)d pixels."),
    }

    def to_python(self, data):
        if data in self.empty_values:
            return None
        self._check_size(data)
        upload = forms.FileField.to_python(self, data)  # name and emptiness, no image checks
        if upload is None:
            return None
        source = (
            upload.temporary_file_path()
            if hasattr(upload, "temporary_file_path")
            else io.BytesIO(upload.read())
        )
        try:
            # Pillow refuses more than twice MAX_IMAGE_PIXELS as it opens the file; our own
            # side limit (max_side², far below MAX_IMAGE_PIXELS) refuses the rest before
            # the pixels are decoded.
            with Image.open(source) as image:
                self._check_image(image)
                pixels, extension, content_type = clean_image(image, self.stored_side)
        except ValidationError:
            raise
        except Image.DecompressionBombError:
            raise self._too_big() from None
        except Exception as error:  # Pillow reports bad input with many exception types
            raise ValidationError(
                self.error_messages["invalid_image"], code="invalid_image"
            ) from error
        return SimpleUploadedFile(f"{uuid.uuid4().hex}.{extension}", pixels, content_type)

    def _check_size(self, data) -> None:
        """Before anything is read: the upload handler marks files it stopped storing
        (matricloud/uploads.py), and the field's own limit is usually lower."""
        limit = getattr(settings, self.max_bytes_setting)
        size = getattr(data, "size", None) or 0
        if getattr(data, "too_large", False) or size > limit:
            raise ValidationError(
                self.error_messages["file_too_large"],
                code="file_too_large",
                params={
                    "size": filesizeformat(size),
                    "max": filesizeformat(limit),
                    "limit": filesizeformat(limit),
                },
            )

    def _check_image(self, image: Image.Image) -> None:
        """The header is read, the pixels are not yet: refuse what we will not decode."""
        if image.format not in self.accepted_formats:
            raise ValidationError(self.error_messages["image_format"], code="invalid_image_format")
        if max(image.size) > self.max_side:
            raise self._too_big()

    def _too_big(self) -> ValidationError:
        return ValidationError(
            self.error_messages["image_too_big"],
            code="image_too_big",
            params={"side": self.max_side},
        )


def clean_image(image: Image.Image, max_side: int) -> tuple[bytes, str, str]:
    """The first frame's pixels, upright and at most `max_side` wide and high, re-encoded
    without metadata: (bytes, extension, content type)."""
    source_format = image.format
    image.seek(0)
    # EXIF goes, so its orientation is applied to the pixels first.
    image = ImageOps.exif_transpose(image)
    if image.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        # 16-bit and float greyscale: scale to 8 bits rather than let Pillow clip.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    if source_format in LOSSY_FORMATS and not has_alpha:
        output_format = "JPEG"
        mode = "L" if image.mode in {"1", "L"} else "RGB"
    else:
        output_format = "PNG"
        mode = "RGBA" if has_alpha else "L" if image.mode in {"1", "L"} else "RGB"
    # Converted before scaling, so palette pictures are scaled smoothly too.
    pixels = image.convert(mode)
    pixels.thumbnail((max_side, max_side))
    # A new image from raw pixels: nothing of the upload's info (EXIF, ICC, text) comes along.
    clean = Image.frombytes(mode, pixels.size, pixels.tobytes())
    buffer = io.BytesIO()
    if output_format == "JPEG":
        clean.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        clean.save(buffer, "PNG", optimize=True)
    extension, content_type = STORED_IMAGE_TYPES[output_format]
    return buffer.getvalue(), extension, content_type


def stored_file_url(url_name: str, pk: int, file: FieldFile) -> str:
    """Where a stored file is shown from: the object's file view, plus a version that changes
    with the file, so a browser may cache it and still sees a new picture at once."""
    if not file:
        return ""
    version = hashlib.sha256(file.name.encode()).hexdigest()[:12]
    return f"{reverse(url_name, args=[pk])}?v={version}"


def delete_on_commit(file: FieldFile) -> None:
    """Remove `file` from its storage once the current transaction commits (nothing for an
    empty file). A storage error is logged, not raised: the row that named the file is gone."""
    if file:
        transaction.on_commit(partial(_delete_stored, file.storage, file.name))


def _delete_stored(storage, name: str) -> None:
    try:
        storage.delete(name)
    except OSError:
        logging.getLogger(__name__).warning("could not delete the file %s", name, exc_info=True)
