"""Stored files (avatars, company logos, site pictures): served only to who may see their
object, stored re-encoded under random names, refused when too large before being read.

The attacks of the outside test come first, each replayed as the tester did it; then how files
are stored and served; then the permission matrix of the file URLs.
"""

import io
import re
import struct
import zlib
from types import SimpleNamespace
from uuid import uuid4

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.test.client import BOUNDARY, MULTIPART_CONTENT, FakePayload, encode_multipart
from django.urls import reverse
from guardian.shortcuts import assign_perm
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from accounts.models import Company, User
from sites.models import Site
from tests.factories import SiteFactory, profile_form_data
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

PROFILE_URL = reverse("accounts:profile")
MB = 1024 * 1024
GPS = ExifTags.IFD.GPSInfo


def image_bytes(
    image_format="PNG", size=(40, 30), mode="RGB", color="#0b7a5c", **save_options
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, image_format, **save_options)
    return buffer.getvalue()


def photo_with_gps() -> bytes:
    """A phone photo: GPS position, camera make, and "rotate 90° to show" in its EXIF."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMakerXYZ"
    exif[ExifTags.Base.Orientation] = 6
    exif.get_ifd(GPS).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
        }
    )
    return image_bytes("JPEG", size=(64, 48), exif=exif)


def png_header(width, height) -> bytes:
    """A PNG that claims width × height pixels, with hardly any data behind the claim."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def upload(name, data, content_type="image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def company_data(company, **overrides) -> dict:
    return {
        "name": company.name,
        "country": company.country.code,
        "address": company.address,
        "description": company.description,
        **overrides,
    }


def company_url(company) -> str:
    return reverse("accounts:company_detail", args=[company.pk])


def content(response) -> bytes:
    return b"".join(response.streaming_content)


def served_image(response) -> Image.Image:
    return Image.open(io.BytesIO(content(response)))


def store(obj, field, data=None) -> None:
    """Put a file in place the way a form would, without going through one."""
    getattr(obj, field).save(f"{uuid4().hex}.png", ContentFile(data or image_bytes()), save=True)


# --- The attacks of the outside test ----------------------------------------------------------


def test_a_foreign_admin_cannot_fetch_an_avatar(tenants, client_for):
    user = tenants.owner  # a SunFix user
    own = client_for(user)
    response = own.post(
        PROFILE_URL, {**profile_form_data(user), "avatar": upload("me.png", image_bytes())}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert own.get(user.avatar_url).status_code == 200

    foreign = client_for(tenants.nordlicht_admin)
    assert foreign.get(user.avatar_url).status_code == 404
    # The storage path the tester used is served to nobody any more, not even its owner.
    assert foreign.get(f"/media/{user.avatar.name}").status_code == 404
    assert own.get(f"/media/{user.avatar.name}").status_code == 404


def test_a_foreign_admin_cannot_fetch_a_logo(tenants, client_for):
    client = client_for(tenants.helios_admin)
    logo = upload("helios.png", image_bytes())
    response = client.post(company_url(tenants.helios), company_data(tenants.helios, logo=logo))
    assert response.status_code == 302
    tenants.helios.refresh_from_db()
    assert client.get(tenants.helios.logo_url).status_code == 200

    foreign = client_for(tenants.nordlicht_admin)
    assert foreign.get(tenants.helios.logo_url).status_code == 404
    assert foreign.get(f"/media/{tenants.helios.logo.name}").status_code == 404


def test_a_png_named_pdf_is_stored_and_served_as_png(tenants, client_for):
    client = client_for(tenants.sunfix_admin)
    logo = upload("brochure.pdf", image_bytes("PNG"), "application/pdf")
    response = client.post(company_url(tenants.sunfix), company_data(tenants.sunfix, logo=logo))

    assert response.status_code == 302
    tenants.sunfix.refresh_from_db()
    assert tenants.sunfix.logo.name.endswith(".png")
    served = client.get(tenants.sunfix.logo_url)
    assert served["Content-Type"] == "image/png"
    assert served["Content-Disposition"] == "inline"
    assert served_image(served).format == "PNG"


def test_a_logo_keeps_no_guessable_name(tenants, client_for):
    client = client_for(tenants.sunfix_admin)
    logo = upload("sunfix-logo.png", image_bytes())
    client.post(company_url(tenants.sunfix), company_data(tenants.sunfix, logo=logo))

    tenants.sunfix.refresh_from_db()
    assert re.fullmatch(r"logos/[0-9a-f]{32}\.png", tenants.sunfix.logo.name)


def test_a_photo_loses_its_gps_position_and_all_other_metadata(tenants, client_for):
    user = tenants.owner
    client = client_for(user)
    photo = photo_with_gps()
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(GPS)  # the upload has a position
    client.post(
        PROFILE_URL, {**profile_form_data(user), "avatar": upload("me.jpg", photo, "image/jpeg")}
    )

    user.refresh_from_db()
    assert user.avatar.name.endswith(".jpg")
    served = client.get(user.avatar_url)
    assert served["Content-Type"] == "image/jpeg"
    data = content(served)
    image = Image.open(io.BytesIO(data))
    assert not image.getexif()
    assert not image.getexif().get_ifd(GPS)
    assert "exif" not in image.info and "icc_profile" not in image.info
    assert b"PhoneMakerXYZ" not in data
    # The orientation was applied to the pixels before the EXIF went.
    assert image.size == (48, 64)


def test_a_png_loses_its_colour_profile_and_text(tenants, client_for):
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret-office-address")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = image_bytes("PNG", pnginfo=text, icc_profile=profile)
    client = client_for(tenants.sunfix_admin)
    logo = upload("logo.png", data)
    client.post(company_url(tenants.sunfix), company_data(tenants.sunfix, logo=logo))

    tenants.sunfix.refresh_from_db()
    served = content(client.get(tenants.sunfix.logo_url))
    image = Image.open(io.BytesIO(served))
    assert "icc_profile" not in image.info and "Comment" not in image.info
    assert b"secret-office-address" not in served


def test_a_30_mb_upload_is_refused_from_its_content_length_alone(tenants, client_for):
    user = tenants.owner
    body = encode_multipart(
        BOUNDARY,
        {**profile_form_data(user), "avatar": upload("huge.png", b"\0" * (30 * MB))},
    )
    payload = FakePayload(body)
    response = client_for(user).generic(
        "POST",
        PROFILE_URL,
        **{"CONTENT_TYPE": MULTIPART_CONTENT, "CONTENT_LENGTH": str(len(body))},
        **{"wsgi.input": payload},
    )

    assert response.status_code == 413
    assert "too large" in response.text
    assert not payload.read_started  # not a byte of the body was read
    user.refresh_from_db()
    assert not user.avatar


class StoringHandlerSpy(FileUploadHandler):
    """Sits behind the size limit and counts the bytes that reach the storing handlers."""

    received: list[int] = []

    def receive_data_chunk(self, raw_data, start):
        StoringHandlerSpy.received.append(len(raw_data))
        return raw_data

    def file_complete(self, file_size):
        return None


def test_a_file_over_the_limit_is_not_stored_and_the_form_says_why(tenants, client_for, settings):
    settings.UPLOAD_MAX_FILE_BYTES = 1 * MB
    settings.FILE_UPLOAD_HANDLERS = [
        "matricloud.uploads.FileSizeLimitUploadHandler",
        "tests.test_stored_files.StoringHandlerSpy",
        *settings.FILE_UPLOAD_HANDLERS[1:],
    ]
    StoringHandlerSpy.received = []
    user = tenants.owner
    big = upload("big.png", b"\0" * (3 * MB))
    response = client_for(user).post(
        PROFILE_URL, {**profile_form_data(user, username="Olivia R."), "avatar": big}
    )

    assert response.status_code == 200
    assert "too large" in response.context["form"].errors["avatar"][0]
    assert 0 < sum(StoringHandlerSpy.received) <= 1 * MB
    # The rest of the form comes back as typed.
    assert response.context["form"]["username"].value() == "Olivia R."
    user.refresh_from_db()
    assert not user.avatar


def test_a_decompression_bomb_is_refused_before_its_pixels_are_decoded(tenants, client_for):
    user = tenants.owner
    response = client_for(user).post(
        PROFILE_URL,
        {**profile_form_data(user), "avatar": upload("bomb.png", png_header(50_000, 50_000))},
    )
    assert "at most 4096" in response.context["form"].errors["avatar"][0]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
        ("logo.png", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"),
        ("logo.png", image_bytes("PNG")[:60]),  # cut off after the header
    ],
)
def test_what_is_not_an_image_is_refused_with_a_clear_error(tenants, client_for, name, data):
    client = client_for(tenants.sunfix_admin)
    logo = upload(name, data)
    response = client.post(company_url(tenants.sunfix), company_data(tenants.sunfix, logo=logo))
    assert response.status_code == 200
    assert "valid image" in response.context["form"].errors["logo"][0]
    tenants.sunfix.refresh_from_db()
    assert not tenants.sunfix.logo


# --- Storing and serving ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "mode", "stored_format"),
    [
        ("PNG", "RGBA", "PNG"),
        ("GIF", "P", "PNG"),
        ("WEBP", "RGB", "JPEG"),
        ("WEBP", "RGBA", "PNG"),
        ("JPEG", "CMYK", "JPEG"),
        ("PNG", "I;16", "PNG"),
    ],
)
def test_every_accepted_format_is_stored_as_png_or_jpeg(
    tenants, client_for, image_format, mode, stored_format
):
    user = tenants.owner
    client = client_for(user)
    # Translucent where there is an alpha channel, so no encoder may drop it as unused.
    color = "#0b7a5c80" if mode == "RGBA" else "#0b7a5c"
    data = image_bytes(image_format, mode=mode, color=color)
    response = client.post(
        PROFILE_URL, {**profile_form_data(user), "avatar": upload("a.img", data)}
    )
    assert response.status_code == 302

    user.refresh_from_db()
    assert served_image(client.get(user.avatar_url)).format == stored_format


def test_large_pictures_are_stored_smaller(tenants, client_for):
    user = tenants.owner
    client = client_for(user)
    client.post(
        PROFILE_URL,
        {**profile_form_data(user), "avatar": upload("big.png", image_bytes(size=(3000, 1500)))},
    )
    user.refresh_from_db()
    assert served_image(client.get(user.avatar_url)).size == (1024, 512)


def test_file_responses_are_private_and_inert(tenants, client_for):
    store(tenants.owner, "avatar")
    response = client_for(tenants.owner).get(tenants.owner.avatar_url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, max-age=86400"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "Cookie" in response["Vary"]


def test_the_address_changes_with_the_file(tenants):
    user = tenants.owner
    assert user.avatar_url == ""
    store(user, "avatar")
    first = user.avatar_url
    store(user, "avatar")
    assert first.startswith(reverse("files:avatar", args=[user.pk]) + "?v=")
    assert user.avatar_url != first


def test_behind_nginx_the_web_server_sends_the_bytes(tenants, client_for, settings):
    settings.MEDIA_X_ACCEL_REDIRECT_PREFIX = "/protected-media/"
    store(tenants.owner, "avatar")
    response = client_for(tenants.owner).get(tenants.owner.avatar_url)

    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected-media/{tenants.owner.avatar.name}"
    assert response["Content-Type"] == "image/png"
    assert response.content == b""
    # A foreign user is refused before nginx is asked for anything.
    foreign = client_for(tenants.nordlicht_admin).get(tenants.owner.avatar_url)
    assert foreign.status_code == 404 and "X-Accel-Redirect" not in foreign


def test_no_file_or_a_lost_file_answers_404(tenants, client_for):
    client = client_for(tenants.owner)
    assert client.get(reverse("files:avatar", args=[tenants.owner.pk])).status_code == 404
    store(tenants.owner, "avatar")
    tenants.owner.avatar.storage.delete(tenants.owner.avatar.name)
    assert client.get(tenants.owner.avatar_url).status_code == 404


def test_files_are_read_only(tenants, client_for):
    store(tenants.owner, "avatar")
    client = client_for(tenants.owner)
    assert client.head(tenants.owner.avatar_url).status_code == 200
    assert client.post(tenants.owner.avatar_url).status_code == 405


def test_pages_show_pictures_through_the_file_views(tenants, client_for):
    store(tenants.sunfix_om, "avatar")
    store(tenants.sunfix, "logo")
    client = client_for(tenants.sunfix_admin)
    user_page = client.get(reverse("accounts:user_edit", args=[tenants.sunfix_om.pk])).text
    assert tenants.sunfix_om.avatar_url in user_page
    assert tenants.sunfix.logo_url in client.get(company_url(tenants.sunfix)).text
    assert "/media/" not in user_page


# --- The permission matrix --------------------------------------------------------------------


@pytest.fixture
def stored(tenants):
    """A file of every kind: avatars and logos in the Helios tree and above it, the pictures of
    a SunFix site granted to the owner and of one that is not, and Nordlicht's own logo."""
    for user in (tenants.sunfix_om, tenants.owner):
        store(user, "avatar")
    for company in (tenants.platform, tenants.helios, tenants.sunfix, tenants.nordlicht):
        store(company, "logo")
    granted = SiteFactory(company=tenants.sunfix, name="Villa Rossi PV")
    hidden = SiteFactory(company=tenants.sunfix, name="Depot Nord")
    for site in (granted, hidden):
        store(site, "picture")
    assign_perm("pv_sites.view_site", tenants.owner, granted)
    return SimpleNamespace(granted=granted, hidden=hidden)


@pytest.mark.matrix("files:avatar")
def test_avatar_of_another_user(tenants, client_for, stored):
    # Owners see no other user, so not their avatar either.
    url = tenants.sunfix_om.avatar_url
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=404))


@pytest.mark.matrix("files:avatar")
def test_own_avatar(tenants, client_for, stored):
    url = tenants.owner.avatar_url
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=200))


@pytest.mark.matrix("files:logo")
def test_logo_of_the_own_company(tenants, client_for, stored):
    url = tenants.sunfix.logo_url
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=200))


@pytest.mark.matrix("files:logo")
def test_logo_of_a_company_above_the_owner(tenants, client_for, stored):
    url = tenants.helios.logo_url
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=404))


@pytest.mark.matrix("files:logo")
def test_logo_of_a_company_above_the_user(tenants, client_for, stored):
    url = tenants.platform.logo_url
    assert_matrix(tenants, client_for, url, Expect(admin=404, om=404, owner=404))


@pytest.mark.matrix("files:site_picture")
def test_picture_of_a_granted_site(tenants, client_for, stored):
    url = stored.granted.picture_url
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=200))


@pytest.mark.matrix("files:site_picture")
def test_picture_of_a_site_not_granted(tenants, client_for, stored):
    url = stored.hidden.picture_url
    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=404))


@pytest.mark.matrix("files:logo")
def test_the_foreign_tenant_sees_its_own_files(tenants, client_for, stored):
    url = tenants.nordlicht.logo_url
    # Nordlicht's owner belongs to Nordlicht, so sees its logo.
    expect = Expect(
        admin=404, om=404, owner=404, foreign_admin=200, foreign_om=200, foreign_owner=200
    )
    assert_matrix(tenants, client_for, url, expect)


@pytest.mark.matrix("files:avatar", "files:logo")
def test_users_and_companies_without_files(tenants, client_for):
    for url in (
        reverse("files:avatar", args=[tenants.owner.pk]),
        reverse("files:logo", args=[tenants.sunfix.pk]),
    ):
        assert_matrix(tenants, client_for, url, Expect(admin=404, om=404, owner=404))


@pytest.mark.matrix("files:avatar", "files:logo", "files:site_picture")
def test_unknown_ids(tenants, client_for):
    for name, model in (("avatar", User), ("logo", Company), ("site_picture", Site)):
        unknown = (model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        url = reverse(f"files:{name}", args=[unknown])
        assert_matrix(tenants, client_for, url, Expect(admin=404, om=404, owner=404))
