"""Firmware release (guide §7.1): the catalogue of gateway and inverter firmware, who may read,
download and publish it, and every reason an upload is refused."""

import hashlib
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse

from accounts.models import AuditAction, AuditEvent, Role
from tests.factories import GatewayFactory, InverterFactory, SiteFactory, UserFactory
from tests.permission_matrix import Expect, assert_matrix
from tests.release_helpers import (
    GATEWAY_MODEL,
    INVERTER_MODEL,
    OTHER_GATEWAY_MODEL,
    UPLOAD_URL,
    headerless,
    image,
    platform_user,
    publish,
    releases_url,
    row_versions,
    stored_firmware_files,
    upload_data,
)
from upgrades.models import DeviceKind, FirmwareRelease, FirmwareType, ReleaseModel

pytestmark = pytest.mark.django_db

KiB = 1024
MiB = 1024 * KiB
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "action-dialog"}


@pytest.fixture
def platform_admin(tenants):
    return platform_user(tenants, email="admin@platform.example", username="Pia Platform")


@pytest.fixture
def release(platform_admin):
    return publish(platform_admin, version="10.00")


# --- Permission matrix ------------------------------------------------------------------------


@pytest.mark.matrix("upgrades:releases")
def test_matrix_catalogue(tenants, client_for, release):
    # The catalogue is the platform's: every distributor's and installer's staff reads it.
    expect = Expect.tenant_wide(admin=200, om=200, owner=403)
    assert_matrix(tenants, client_for, releases_url(DeviceKind.GATEWAY), expect)
    assert_matrix(tenants, client_for, releases_url(DeviceKind.INVERTER), expect)


@pytest.mark.matrix("upgrades:release_download")
def test_matrix_download(tenants, client_for, release):
    url = reverse("upgrades:release_download", args=[release.pk])
    assert_matrix(tenants, client_for, url, Expect.tenant_wide(admin=200, om=200, owner=403))


@pytest.mark.matrix("upgrades:release_upload")
def test_matrix_upload(tenants, client_for):
    # Only the platform's administrators publish: a distributor's administrator may not.
    refused = Expect.tenant_wide(admin=403, om=403, owner=403)
    assert_matrix(tenants, client_for, UPLOAD_URL, refused)
    assert_matrix(tenants, client_for, UPLOAD_URL, refused, headers=HTMX_DIALOG)
    data = upload_data(image(GATEWAY_MODEL, "gateway", "10.08"))
    assert_matrix(tenants, client_for, UPLOAD_URL, refused, method="post", data=data)
    assert not FirmwareRelease.objects.exists()
    assert not stored_firmware_files()


@pytest.mark.matrix("upgrades:index")
def test_matrix_upgrade_menu_entry(tenants, client_for):
    # Staff are sent on (catalogue or task list); owners have no Upgrade section.
    assert_matrix(tenants, client_for, reverse("upgrades:index"), Expect.tenant_wide(302, 302, 403))


def test_the_menu_offers_upgrade_to_staff_only(tenants, client_for):
    staff = client_for(tenants.sunfix_om).get(reverse("home"))
    assert reverse("upgrades:index") in staff.text
    owner = client_for(tenants.owner).get(reverse("home"))
    assert reverse("upgrades:index") not in owner.text
    assert "/upgrade/" not in owner.text


def test_the_upgrade_entry_leads_to_the_catalogue(tenants, client_for):
    response = client_for(tenants.sunfix_om).get(reverse("upgrades:index"), follow=True)
    assert response.status_code == 200
    assert response.resolver_match.view_name == "upgrades:releases"


# --- Upload -----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["superuser", "platform_admin"])
def test_an_upload_is_stored_with_its_size_and_checksum(tenants, client_for, who):
    if who == "superuser":
        user = UserFactory(company=None, is_superuser=True, is_staff=True, username="root")
    else:
        user = platform_user(tenants, username="Pia Platform")
    # An image for two models has no header (a header names one model).
    data = headerless(size=300 * KiB)
    client = client_for(user)
    dialog = client.get(UPLOAD_URL, headers=HTMX_DIALOG)
    assert dialog.status_code == 200
    assert 'enctype="multipart/form-data"' in dialog.text

    response = client.post(
        UPLOAD_URL,
        upload_data(data, models=(GATEWAY_MODEL, OTHER_GATEWAY_MODEL), name="wifi-kit-10.08.bin"),
    )

    assert response.status_code == 302
    assert response["Location"] == releases_url(DeviceKind.GATEWAY)
    release = FirmwareRelease.objects.get()
    assert (release.kind, release.firmware_type, release.version) == ("gateway", "gateway", "10.08")
    assert release.size == len(data)
    assert release.sha256 == hashlib.sha256(data).hexdigest()
    assert release.file_name == "wifi-kit-10.08.bin"
    assert release.created_by == user
    with release.file.open("rb") as stored:
        assert stored.read() == data
    assert sorted(release.models.values_list("model", flat=True)) == sorted(
        [GATEWAY_MODEL, OTHER_GATEWAY_MODEL]
    )
    event = AuditEvent.objects.get(action=AuditAction.FIRMWARE_RELEASED)
    assert event.after["sha256"] == release.sha256
    # The catalogue shows it, and says so.
    page = client.get(response["Location"])
    assert "10.08" in page.text
    assert "has been released" in page.text


def test_an_inverter_release_keeps_its_type_and_normalises_its_version(tenants, client_for):
    admin = platform_user(tenants)
    data = image(INVERTER_MODEL, "dsp", "1.22")
    response = client_for(admin).post(
        UPLOAD_URL,
        upload_data(
            data,
            kind=DeviceKind.INVERTER,
            models=(INVERTER_MODEL,),
            firmware_type="dsp",
            version="1.22",
        ),
    )
    assert response.status_code == 302, response.context["form"].errors
    row = ReleaseModel.objects.get()
    assert (row.kind, row.firmware_type, row.model, row.version) == (
        "inverter",
        "dsp",
        INVERTER_MODEL,
        "01.22",
    )


@pytest.mark.parametrize(
    "who", ["platform_om", "sunfix_admin", "sunfix_om", "helios_admin", "owner"]
)
def test_only_platform_administrators_may_upload(tenants, client_for, who):
    user = platform_user(tenants, role=Role.OM) if who == "platform_om" else getattr(tenants, who)
    client = client_for(user)
    data = upload_data(image(GATEWAY_MODEL, "gateway", "10.08"))
    assert client.post(UPLOAD_URL, data).status_code == 403
    assert not FirmwareRelease.objects.exists()
    assert not stored_firmware_files()
    if who != "owner":
        page = client.get(releases_url())
        assert page.status_code == 200
        assert UPLOAD_URL not in page.text


def test_the_upload_button_is_shown_to_platform_administrators(tenants, client_for):
    page = client_for(platform_user(tenants)).get(releases_url(DeviceKind.INVERTER))
    assert f"{UPLOAD_URL}?kind=inverter" in page.text


def _refused(client, data, field):
    before = stored_firmware_files()
    response = client.post(UPLOAD_URL, data)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert stored_firmware_files() == before
    return " ".join(errors[field])


def test_an_empty_file_is_refused(tenants, client_for):
    client = client_for(platform_user(tenants))
    assert "empty" in _refused(client, upload_data(b""), "file")
    assert not FirmwareRelease.objects.exists()


def test_a_file_over_the_limit_is_refused_and_not_stored(tenants, client_for, settings):
    settings.FIRMWARE_MAX_BYTES = 256 * KiB
    client = client_for(platform_user(tenants))
    data = image(GATEWAY_MODEL, "gateway", "10.08", size=256 * KiB + 1)
    message = _refused(client, upload_data(data), "file")
    assert "too large" in message and "256.0" in message
    assert not FirmwareRelease.objects.exists()
    # The rest of the form comes back as typed.
    response = client.post(UPLOAD_URL, upload_data(data, version="10.09"))
    assert response.context["form"]["version"].value() == "10.09"


def test_firmware_may_be_larger_than_other_uploads_on_its_own_url_only(
    tenants, client_for, settings
):
    settings.UPLOAD_MAX_REQUEST_BYTES = 1 * MiB
    settings.UPLOAD_MAX_FILE_BYTES = 1 * MiB
    settings.FIRMWARE_MAX_BYTES = 3 * MiB
    admin = platform_user(tenants)
    client = client_for(admin)
    data = image(GATEWAY_MODEL, "gateway", "10.08", size=2 * MiB + 5)

    response = client.post(UPLOAD_URL, upload_data(data))
    assert response.status_code == 302
    assert FirmwareRelease.objects.get().size == len(data)

    # Elsewhere the usual limit holds: the profile page refuses the same body unread.
    body = encode_multipart(
        BOUNDARY, {"username": "x", "avatar": SimpleUploadedFile("a.png", data)}
    )
    profile = client.generic(
        "POST", reverse("accounts:profile"), body, content_type=MULTIPART_CONTENT
    )
    assert profile.status_code == 413
    # Far beyond the firmware limit, the firmware URL refuses a body unread as well.
    huge = image(GATEWAY_MODEL, "gateway", "10.09", size=5 * MiB)
    assert client.post(UPLOAD_URL, upload_data(huge, version="10.09")).status_code == 413
    assert FirmwareRelease.objects.count() == 1


def test_a_version_already_released_for_the_model_is_refused(tenants, client_for, release):
    client = client_for(platform_user(tenants))
    data = headerless(tag="another build")
    message = _refused(
        client,
        upload_data(data, models=(OTHER_GATEWAY_MODEL, GATEWAY_MODEL), version="10.00"),
        "version",
    )
    assert "10.00" in message and GATEWAY_MODEL in message
    assert OTHER_GATEWAY_MODEL not in message
    assert FirmwareRelease.objects.count() == 1


def test_a_file_already_stored_is_refused_naming_its_release(tenants, client_for):
    admin = platform_user(tenants)
    earlier = publish(admin, models=(OTHER_GATEWAY_MODEL,), version="7.1", data=headerless())
    client = client_for(admin)
    # The same bytes under another model and version: the checksum gives them away.
    message = _refused(
        client, upload_data(headerless(), models=(GATEWAY_MODEL,), version="7.2"), "file"
    )
    assert str(earlier) in message and OTHER_GATEWAY_MODEL in message
    assert FirmwareRelease.objects.count() == 1


@pytest.mark.parametrize("firmware_type", ["exhmi", "senergy_csb", "trip_board"])
def test_a_firmware_type_the_model_does_not_take_is_refused(tenants, client_for, firmware_type):
    client = client_for(platform_user(tenants))
    data = upload_data(
        image(INVERTER_MODEL, firmware_type, "01.30"),
        kind=DeviceKind.INVERTER,
        models=(INVERTER_MODEL,),
        firmware_type=firmware_type,
        version="01.30",
    )
    message = _refused(client, data, "firmware_type")
    assert INVERTER_MODEL in message
    assert not FirmwareRelease.objects.exists()


@pytest.mark.parametrize("version", ["1.2.3", "256.01", "01.256", "v1.2", "1", ""])
def test_an_inverter_version_must_be_major_dot_minor(tenants, client_for, version):
    client = client_for(platform_user(tenants))
    data = upload_data(
        headerless(),
        kind=DeviceKind.INVERTER,
        models=(INVERTER_MODEL,),
        firmware_type="dsp",
        version=version,
    )
    _refused(client, data, "version")
    assert not FirmwareRelease.objects.exists()


@pytest.mark.parametrize(
    ("built_for", "named"),
    [
        ((OTHER_GATEWAY_MODEL, "gateway", "10.08"), f"model {OTHER_GATEWAY_MODEL}"),
        ((GATEWAY_MODEL, "gateway", "10.09"), "version 10.09"),
        ((GATEWAY_MODEL, "dsp", "10.08"), "firmware type dsp"),
    ],
)
def test_a_header_that_disagrees_with_the_form_is_refused(tenants, client_for, built_for, named):
    client = client_for(platform_user(tenants))
    message = _refused(client, upload_data(image(*built_for), version="10.08"), "file")
    assert named in message
    assert not FirmwareRelease.objects.exists()


def test_a_model_is_required_and_must_be_known(tenants, client_for):
    client = client_for(platform_user(tenants))
    data = image(GATEWAY_MODEL, "gateway", "10.08")
    _refused(client, upload_data(data, models=()), "gateway_models")
    _refused(client, upload_data(data, models=("Toaster",)), "gateway_models")
    assert not FirmwareRelease.objects.exists()


# --- Download ---------------------------------------------------------------------------------


def test_staff_download_the_exact_bytes(tenants, client_for, platform_admin):
    data = image(GATEWAY_MODEL, "gateway", "10.00", size=200 * KiB + 3)
    release = publish(platform_admin, version="10.00", data=data)
    url = reverse("upgrades:release_download", args=[release.pk])

    response = client_for(tenants.sunfix_om).get(url)

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Length"] == str(len(data))
    assert f'filename="{GATEWAY_MODEL}-10.00.bin"' in response["Content-Disposition"]
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Checksum-SHA256"] == hashlib.sha256(data).hexdigest()
    assert response["ETag"] == f'"{release.sha256}"'
    again = client_for(tenants.sunfix_om).get(url, headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304


def test_owners_cannot_download(tenants, client_for, release):
    url = reverse("upgrades:release_download", args=[release.pk])
    assert client_for(tenants.owner).get(url).status_code == 403
    missing = reverse("upgrades:release_download", args=[release.pk + 1000])
    assert client_for(tenants.owner).get(missing).status_code == 403
    assert client_for(tenants.sunfix_om).get(missing).status_code == 404


def test_each_row_offers_its_download(tenants, client_for, release):
    page = client_for(tenants.helios_om).get(releases_url())
    assert reverse("upgrades:release_download", args=[release.pk]) in page.text


# --- The catalogue ----------------------------------------------------------------------------


def test_statistics_count_only_devices_in_the_users_scope(tenants, client_for, platform_admin):
    publish(platform_admin, version="10.00")
    dsp = publish(
        platform_admin,
        kind=DeviceKind.INVERTER,
        models=(INVERTER_MODEL,),
        firmware_type=FirmwareType.DSP,
        version="01.22",
    )
    sunfix_site = SiteFactory(company=tenants.sunfix)
    nordlicht_site = SiteFactory(company=tenants.nordlicht)
    for _ in range(2):
        GatewayFactory(site=sunfix_site, model=GATEWAY_MODEL, firmware_version="10.00")
    GatewayFactory(site=sunfix_site, model=GATEWAY_MODEL, firmware_version="9.02")
    GatewayFactory(site=sunfix_site, model=OTHER_GATEWAY_MODEL, firmware_version="10.00")
    for _ in range(3):
        GatewayFactory(site=nordlicht_site, model=GATEWAY_MODEL, firmware_version="10.00")
    for address, versions in enumerate(
        [{"DSP": "01.22", "LCD": "02.00"}, {"DSP": "01.20"}, {"LCD": "01.22"}], start=1
    ):
        InverterFactory(
            gateway=GatewayFactory(site=sunfix_site),
            modbus_address=address,
            firmware_versions=versions,
        )
    InverterFactory(gateway=GatewayFactory(site=nordlicht_site), firmware_versions={"DSP": "01.22"})

    def running(user, kind):
        response = client_for(user).get(releases_url(kind))
        table = response.context["table"]
        return response, {table.data.data.get(pk=pk).model: n for pk, n in table.running.items()}

    response, counts = running(tenants.sunfix_om, DeviceKind.GATEWAY)
    assert counts == {GATEWAY_MODEL: 2}
    gateway_list = reverse("gateways:list")
    assert f"{gateway_list}?model=CPS+WiFi+Kit&amp;version=10.00" in response.text
    assert running(tenants.nordlicht_om, DeviceKind.GATEWAY)[1] == {GATEWAY_MODEL: 3}
    assert running(platform_admin, DeviceKind.GATEWAY)[1] == {GATEWAY_MODEL: 5}
    response, counts = running(tenants.sunfix_om, DeviceKind.INVERTER)
    assert counts == {INVERTER_MODEL: 1}
    # The count links to the inverter list showing exactly those inverters.
    link = f"{reverse('inverters:list')}?model={INVERTER_MODEL}&firmware=DSP%3A01.22"
    assert link.replace("&", "&amp;") in response.text
    listed = client_for(tenants.sunfix_om).get(link)
    assert [row.record.firmware_versions for row in listed.context["table"].page.object_list] == [
        {"DSP": "01.22", "LCD": "02.00"}
    ]
    assert running(tenants.nordlicht_om, DeviceKind.INVERTER)[1] == {INVERTER_MODEL: 1}
    assert running(platform_admin, DeviceKind.INVERTER)[1] == {INVERTER_MODEL: 2}
    assert dsp.models.get().model == INVERTER_MODEL


def test_statistics_take_one_query_for_the_whole_page(
    tenants, client_for, platform_admin, django_assert_max_num_queries
):
    for n in range(6):
        publish(platform_admin, version=f"10.0{n}")
    client = client_for(tenants.sunfix_om)
    client.get(releases_url())  # warm the session and caches
    with django_assert_max_num_queries(12) as few:
        client.get(releases_url())
    for n in range(6, 9):
        publish(platform_admin, version=f"10.0{n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(releases_url())


def test_new_marks_only_the_newest_release_of_each_model(tenants, client_for, platform_admin):
    publish(platform_admin, models=(GATEWAY_MODEL, OTHER_GATEWAY_MODEL), version="9.02")
    publish(platform_admin, models=(GATEWAY_MODEL,), version="10.00")
    publish(
        platform_admin,
        kind=DeviceKind.INVERTER,
        models=(INVERTER_MODEL,),
        firmware_type="dsp",
        version="01.22",
    )
    publish(
        platform_admin,
        kind=DeviceKind.INVERTER,
        models=(INVERTER_MODEL,),
        firmware_type="lcd",
        version="02.00",
    )

    client = client_for(tenants.helios_admin)
    gateways = client.get(releases_url(DeviceKind.GATEWAY))
    assert sorted(row_versions(gateways)) == [
        (OTHER_GATEWAY_MODEL, "9.02", True),
        (GATEWAY_MODEL, "10.00", True),
        (GATEWAY_MODEL, "9.02", False),
    ]
    assert gateways.text.count(">NEW<") == 2
    # Each board of an inverter has its own newest.
    inverters = client.get(releases_url(DeviceKind.INVERTER))
    assert sorted(row_versions(inverters)) == [
        (INVERTER_MODEL, "01.22", True),
        (INVERTER_MODEL, "02.00", True),
    ]
    assert "firmware_type" in inverters.context["table"].visible_columns
    assert "firmware_type" not in gateways.context["table"].visible_columns
    assert 'value="firmware_type"' not in gateways.text  # nor in the column chooser
    # A filter does not move NEW.
    filtered = client.get(releases_url(DeviceKind.GATEWAY, version="9.02"))
    assert (GATEWAY_MODEL, "9.02", False) in row_versions(filtered)


def test_filters_by_model_and_version_on_each_tab(tenants, client_for, platform_admin):
    publish(platform_admin, models=(GATEWAY_MODEL,), version="9.02")
    publish(platform_admin, models=(GATEWAY_MODEL, OTHER_GATEWAY_MODEL), version="10.00")
    publish(
        platform_admin,
        kind=DeviceKind.INVERTER,
        models=(INVERTER_MODEL,),
        firmware_type="dsp",
        version="01.22",
    )
    client = client_for(tenants.sunfix_admin)

    by_model = client.get(releases_url(model="CPS+4G+Kit"))
    assert row_versions(by_model) == [(OTHER_GATEWAY_MODEL, "10.00", True)]
    by_version = client.get(releases_url(version="9.0"))
    assert row_versions(by_version) == [(GATEWAY_MODEL, "9.02", False)]
    inverters = client.get(releases_url(DeviceKind.INVERTER, version="01"))
    assert row_versions(inverters) == [(INVERTER_MODEL, "01.22", True)]
    assert "Inverter model" in inverters.text
    # An inverter model is not a gateway model: the filter refuses it, and shows nothing.
    refused = client.get(releases_url(DeviceKind.GATEWAY, model=INVERTER_MODEL))
    assert row_versions(refused) == []
    nothing = client.get(releases_url(version="11"))
    assert "No firmware matches these filters." in nothing.text
    empty = client.get(releases_url(DeviceKind.INVERTER, model="ECH6K-SML-EU"))
    assert row_versions(empty) == []


def test_an_empty_catalogue_says_so(tenants, client_for):
    page = client_for(tenants.sunfix_om).get(releases_url(DeviceKind.INVERTER))
    assert page.status_code == 200
    assert "No firmware has been released for these devices yet." in page.text
    assert "Gateway firmware" in page.text and "Inverter firmware" in page.text
    assert "Firmware release" in page.text


def test_the_catalogue_pages(tenants, client_for, platform_admin):
    for n in range(25):
        publish(platform_admin, version=f"9.{n:02d}")
    client = client_for(tenants.sunfix_om)
    first = client.get(releases_url())
    assert len(row_versions(first)) == 20
    second = client.get(releases_url(page="2"))
    assert len(row_versions(second)) == 5
    download = client.get(releases_url(export="csv"))
    assert download.status_code == 200
    assert b"".join(download.streaming_content).count(b"9.") == 25


def test_a_search_stays_on_its_tab(tenants, client_for):
    """The filter bar carries the tab (a hidden `kind`), so Search and Reset keep it."""
    page = client_for(tenants.sunfix_om).get(releases_url(DeviceKind.INVERTER))
    assert 'href="/upgrade/releases/?kind=inverter" class="btn btn-light">' in page.text
    assert 'name="kind" value="inverter"' in page.text


def test_the_demo_publishes_a_gateway_and_an_inverter_release():
    call_command("seed_demo", stdout=StringIO())
    rows = set(ReleaseModel.objects.values_list("kind", "firmware_type", "model", "version"))
    assert rows == {
        ("gateway", "gateway", "CPS WiFi Kit", "10.07"),
        ("inverter", "dsp", "ECH10K-TH-EU", "01.22"),
    }
    for release in FirmwareRelease.objects.all():
        with release.file.open("rb") as stored:
            assert hashlib.sha256(stored.read()).hexdigest() == release.sha256
    output = StringIO()
    call_command("seed_demo", stdout=output)
    assert "nothing created" in output.getvalue()
    assert FirmwareRelease.objects.count() == 2
