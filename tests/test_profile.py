"""Guide §3, User configuration: profile (avatar, username, currency, language, time zone),
email change with codes to the old and the new address, password change, deregistration."""

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from guardian.shortcuts import assign_perm
from PIL import Image

from accounts.models import Company, CompanyType, Role, User, VerificationCode
from accounts.registration import linked_assets
from tests.factories import (
    DEMO_PASSWORD,
    CompanyFactory,
    SiteFactory,
    UserFactory,
    profile_form_data,
)

pytestmark = pytest.mark.django_db(transaction=True)

PROFILE_URL = reverse("accounts:profile")
SECURITY_URL = reverse("accounts:security")
EMAIL_URL = reverse("accounts:change_email")
PASSWORD_URL = reverse("accounts:change_password")
DEREGISTER_URL = reverse("accounts:deregister")
SEND_URL = reverse("accounts:send_code")
NEW_PASSWORD = "Copper-Wind3$"
# Deregistration asks for the current password (accounts/reauth.py).
CONFIRM_DEREGISTRATION = {"confirm": "on", "password": DEMO_PASSWORD}


def image_file(name="me.png", image_format="PNG", size=(64, 64)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, (11, 122, 92)).save(buffer, format=image_format)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type=f"image/{image_format}")


def emailed_code(email) -> str:
    message = [m for m in mail.outbox if email in m.to][-1]
    return re.search(r"\b(\d{6})\b", message.body).group(1)


# --- Profile ----------------------------------------------------------------------------------


def test_profile_page(client_for, tenants):
    response = client_for(tenants.owner).get(PROFILE_URL)
    assert response.status_code == 200
    for text in ("User configuration", "Profile", "Account security", "Currency", "Update"):
        assert text in response.text
    assert 'enctype="multipart/form-data"' in response.text


def test_user_menu_links_to_user_configuration(client_for, tenants):
    assert PROFILE_URL in client_for(tenants.owner).get(reverse("home")).text


def test_update_username_currency_and_time_zone(client_for, tenants):
    user = tenants.owner
    client = client_for(user)
    response = client.post(
        PROFILE_URL,
        profile_form_data(user, username="Olivia R.", currency="CHF", time_zone="Europe/Zurich"),
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.username, user.currency, user.time_zone) == ("Olivia R.", "CHF", "Europe/Zurich")
    assert "Your profile has been updated." in client.get(PROFILE_URL).text


def test_language_applies_at_once(client_for, tenants, settings):
    user = tenants.owner
    client = client_for(user)
    response = client.post(PROFILE_URL, profile_form_data(user, language="de"))

    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "de"
    assert '<html lang="de">' in client.get(PROFILE_URL).text
    user.refresh_from_db()
    assert user.language == "de"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time_zone", "Mars/Olympus"),
        ("language", "xx"),
        ("currency", "BTC"),
        ("username", ""),
    ],
)
def test_bad_profile_values(client_for, tenants, field, value):
    user = tenants.owner
    client = client_for(user)
    response = client.post(PROFILE_URL, profile_form_data(user, **{field: value}))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    user.refresh_from_db()
    assert user.username == "Olivia Owner"
    # An invalid form does not leak into the top bar.
    assert "Olivia Owner" in response.text


def test_avatar_upload(client_for, tenants, settings):
    user = tenants.owner
    client = client_for(user)
    response = client.post(PROFILE_URL, {**profile_form_data(user), "avatar": image_file()})

    assert response.status_code == 302
    user.refresh_from_db()
    assert re.fullmatch(rf"avatars/{user.pk}/[0-9a-f]{{32}}\.png", user.avatar.name)
    assert (Path(settings.MEDIA_ROOT) / user.avatar.name).exists()
    assert user.avatar_url in client.get(PROFILE_URL).text


def test_replacing_and_removing_the_avatar_deletes_the_old_file(client_for, tenants, settings):
    user = tenants.owner
    client = client_for(user)
    client.post(PROFILE_URL, {**profile_form_data(user), "avatar": image_file()})
    user.refresh_from_db()
    first = Path(settings.MEDIA_ROOT) / user.avatar.name

    client.post(PROFILE_URL, {**profile_form_data(user), "avatar": image_file("b.jpg", "JPEG")})
    user.refresh_from_db()
    second = Path(settings.MEDIA_ROOT) / user.avatar.name
    assert second.suffix == ".jpg" and second.exists()
    assert not first.exists()

    client.post(PROFILE_URL, {**profile_form_data(user), "remove_avatar": "on"})
    user.refresh_from_db()
    assert not user.avatar
    assert not second.exists()


def test_oversized_avatar(client_for, tenants, settings):
    settings.AVATAR_MAX_BYTES = 2000
    user = tenants.owner
    big = image_file(size=(400, 400), image_format="BMP", name="big.bmp")
    assert big.size > 2000
    response = client_for(user).post(PROFILE_URL, {**profile_form_data(user), "avatar": big})

    assert response.status_code == 200
    error = response.context["form"].errors["avatar"][0]
    assert "too large" in error and "2.0\xa0KB" in error
    assert "at most 2.0\xa0KB" in response.text  # the help text follows the setting
    user.refresh_from_db()
    assert not user.avatar


def test_non_image_avatar(client_for, tenants):
    user = tenants.owner
    fake = SimpleUploadedFile("me.png", b"#!/bin/sh\necho not an image\n", content_type="image/png")
    response = client_for(user).post(PROFILE_URL, {**profile_form_data(user), "avatar": fake})
    assert response.status_code == 200
    assert "valid image" in response.context["form"].errors["avatar"][0]


def test_avatar_in_an_unusual_format(client_for, tenants):
    user = tenants.owner
    tiff = image_file("me.tiff", "TIFF")
    response = client_for(user).post(PROFILE_URL, {**profile_form_data(user), "avatar": tiff})
    assert response.status_code == 200
    assert response.context["form"].errors["avatar"]


def test_avatar_too_many_pixels(client_for, tenants):
    user = tenants.owner
    huge = image_file("wide.png", size=(5000, 2))
    response = client_for(user).post(PROFILE_URL, {**profile_form_data(user), "avatar": huge})
    assert "at most 4096" in response.context["form"].errors["avatar"][0]


# --- Account security: email ------------------------------------------------------------------


def test_security_page(client_for, tenants):
    response = client_for(tenants.helios_om).get(SECURITY_URL)
    assert response.status_code == 200
    text = response.text
    assert "om@helios.example" in text
    for label in ("Email", "Password", "Deregister account", "Modify", "Apply for cancellation"):
        assert label in text
    for url in (EMAIL_URL, PASSWORD_URL, DEREGISTER_URL):
        assert url in text


def verify_current_email(client, user):
    assert client.post(SEND_URL, {"purpose": "email_old"}).status_code == 200
    response = client.post(
        EMAIL_URL,
        {"action": "verify", "code": emailed_code(user.email), "password": DEMO_PASSWORD},
    )
    assert response.status_code == 302
    return response


def test_change_email(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    assert "Send" in client.get(EMAIL_URL).text

    verify_current_email(client, user)
    step_two = client.get(EMAIL_URL)
    assert "New email" in step_two.text and "email_new" in step_two.text

    sent = client.post(SEND_URL, {"purpose": "email_new", "email": "Ops@Helios.example"})
    assert sent.status_code == 200
    response = client.post(
        EMAIL_URL,
        {
            "action": "confirm",
            "email": "ops@helios.example",
            "code": emailed_code("ops@helios.example"),
        },
    )

    assert response.status_code == 302
    assert response["Location"] == SECURITY_URL
    user.refresh_from_db()
    assert user.email == "ops@helios.example"
    assert "email_change" not in client.session
    assert client.get(SECURITY_URL).status_code == 200  # still signed in
    fresh = Client()
    fresh.post(
        reverse("accounts:login"), {"username": "ops@helios.example", "password": DEMO_PASSWORD}
    )
    assert SESSION_KEY in fresh.session


def test_change_email_wrong_code_for_the_current_address(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    client.post(SEND_URL, {"purpose": "email_old"})
    wrong = "000000" if emailed_code(user.email) != "000000" else "111111"

    response = client.post(
        EMAIL_URL, {"action": "verify", "code": wrong, "password": DEMO_PASSWORD}
    )

    assert response.status_code == 200
    assert "incorrect" in response.context["form"].errors["code"][0]
    assert "email_change" not in client.session


def test_change_email_step_two_needs_step_one(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    response = client.post(
        EMAIL_URL, {"action": "confirm", "email": "ops@helios.example", "code": "123456"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email == "om@helios.example"


def test_change_email_step_two_expires(client_for, tenants, settings):
    user = tenants.helios_om
    client = client_for(user)
    verify_current_email(client, user)
    session = client.session
    session["email_change"]["verified_at"] -= settings.VERIFICATION_CODE_TTL_SECONDS + 1
    session.save()

    response = client.post(SEND_URL, {"purpose": "email_new", "email": "ops@helios.example"})

    assert response.status_code == 400
    assert "Modify email" in client.get(EMAIL_URL).text
    assert 'name="action" value="verify"' in client.get(EMAIL_URL).text


def test_change_email_to_a_taken_or_the_same_address(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    verify_current_email(client, user)

    taken = client.post(SEND_URL, {"purpose": "email_new", "email": "ADMIN@helios.example"})
    same = client.post(SEND_URL, {"purpose": "email_new", "email": user.email})
    assert taken.status_code == same.status_code == 400
    assert "already uses" in taken.text

    response = client.post(
        EMAIL_URL, {"action": "confirm", "email": "admin@helios.example", "code": "123456"}
    )
    assert "already uses" in response.context["form"].errors["email"][0]


def test_change_email_wrong_or_reused_code_for_the_new_address(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    verify_current_email(client, user)
    client.post(SEND_URL, {"purpose": "email_new", "email": "ops@helios.example"})
    code = emailed_code("ops@helios.example")
    wrong = "000000" if code != "000000" else "111111"

    response = client.post(
        EMAIL_URL, {"action": "confirm", "email": "ops@helios.example", "code": wrong}
    )
    assert "incorrect" in response.context["form"].errors["code"][0]

    # A code for one new address does not confirm another one.
    response = client.post(
        EMAIL_URL, {"action": "confirm", "email": "ops2@helios.example", "code": code}
    )
    assert response.context["form"].errors["code"]
    user.refresh_from_db()
    assert user.email == "om@helios.example"


def test_change_email_address_taken_meanwhile(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    verify_current_email(client, user)
    client.post(SEND_URL, {"purpose": "email_new", "email": "ops@helios.example"})
    UserFactory(email="ops@helios.example", company=tenants.helios)

    response = client.post(
        EMAIL_URL,
        {
            "action": "confirm",
            "email": "ops@helios.example",
            "code": emailed_code("ops@helios.example"),
        },
    )
    assert "already uses" in response.context["form"].errors["email"][0]


def test_change_email_cancel(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    verify_current_email(client, user)
    assert client.post(EMAIL_URL, {"action": "cancel"})["Location"] == SECURITY_URL
    assert "email_change" not in client.session


# --- Account security: password ---------------------------------------------------------------


def change_password(client, old=DEMO_PASSWORD, new=NEW_PASSWORD, repeat=None):
    return client.post(
        PASSWORD_URL,
        {"old_password": old, "new_password1": new, "new_password2": repeat or new},
    )


def test_change_password_and_stay_signed_in(client_for, tenants):
    user = tenants.helios_om
    client = client_for(user)
    page = client.get(PASSWORD_URL)
    for label in ("Old password", "New password", "Repeat password"):
        assert label in page.text

    response = change_password(client)

    assert response.status_code == 302
    assert response["Location"] == SECURITY_URL
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    page = client.get(SECURITY_URL)  # still signed in
    assert page.status_code == 200
    assert "Your password has been changed." in page.text


def test_change_password_wrong_old_password(client_for, tenants):
    response = change_password(client_for(tenants.helios_om), old="Not-mine1!")
    assert response.status_code == 200
    assert response.context["form"].errors["old_password"]


def test_change_password_weak_or_mismatched(client_for, tenants):
    client = client_for(tenants.helios_om)
    weak = change_password(client, new="copperwind")
    assert weak.status_code == 200 and weak.context["form"].errors["new_password2"]
    mismatch = change_password(client, repeat="Copper-Wind4$")
    assert mismatch.context["form"].errors["new_password2"]
    assert "Repeat password" in mismatch.text  # labels survive a re-rendered form
    tenants.helios_om.refresh_from_db()
    assert tenants.helios_om.check_password(DEMO_PASSWORD)


# --- Account security: deregistration ---------------------------------------------------------


def test_cancellation_notice(client_for, tenants):
    response = client_for(tenants.owner).get(DEREGISTER_URL)
    assert response.status_code == 200
    assert "Account Cancellation Notice" in response.text
    assert "you voluntarily waive all rights within the account and agree to withdraw" in (
        response.text
    )


def test_deregistration_needs_the_checkbox(client_for, tenants):
    response = client_for(tenants.owner).post(DEREGISTER_URL, {})
    assert response.status_code == 200
    assert response.context["form"].errors["confirm"]
    assert User.objects.filter(pk=tenants.owner.pk).exists()


def test_deregister_an_owner(client_for, tenants):
    client = client_for(tenants.owner)
    response = client.post(DEREGISTER_URL, CONFIRM_DEREGISTRATION)

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login")
    assert not User.objects.filter(pk=tenants.owner.pk).exists()
    assert Company.objects.filter(pk=tenants.sunfix.pk).exists()  # other users remain
    assert SESSION_KEY not in client.session
    assert "Your account has been cancelled." in client.get(reverse("accounts:login")).text


def test_last_user_takes_their_company_along(client_for, tenants):
    company = CompanyFactory(type=CompanyType.INSTALLER, superior=tenants.sunfix)
    solo = UserFactory(company=company, role=Role.ADMIN)

    assert client_for(solo).post(DEREGISTER_URL, CONFIRM_DEREGISTRATION).status_code == 302
    assert not Company.objects.filter(pk=company.pk).exists()


def test_an_administrator_with_a_fellow_administrator_may_leave(client_for, tenants):
    UserFactory(company=tenants.helios, role=Role.ADMIN, email="admin2@helios.example")
    response = client_for(tenants.helios_admin).post(DEREGISTER_URL, CONFIRM_DEREGISTRATION)
    assert response.status_code == 302
    assert Company.objects.filter(pk=tenants.helios.pk).exists()


def test_last_administrator_is_refused(client_for, tenants):
    client = client_for(tenants.helios_admin)
    page = client.get(DEREGISTER_URL)
    assert "last administrator of Helios Distribution" in page.text

    response = client.post(DEREGISTER_URL, CONFIRM_DEREGISTRATION)

    assert response.status_code == 200
    assert "cannot be cancelled" in response.text
    assert "last administrator of Helios Distribution" in response.text
    assert User.objects.filter(pk=tenants.helios_admin.pk).exists()
    assert SESSION_KEY in client.session


def test_owner_with_a_granted_site_is_refused(client_for, tenants):
    site = SiteFactory(company=tenants.sunfix)
    assign_perm("pv_sites.view_site", tenants.owner, site)
    assert linked_assets(tenants.owner) == [
        "1 site is still granted to or owned by your account. Ask your installer to unlink it."
    ]

    response = client_for(tenants.owner).post(DEREGISTER_URL, CONFIRM_DEREGISTRATION)

    assert response.status_code == 200
    assert "still granted to or owned by your account" in response.text
    assert User.objects.filter(pk=tenants.owner.pk).exists()


def test_last_user_of_a_company_with_sites_is_refused(tenants):
    company = CompanyFactory(type=CompanyType.OWNER, superior=tenants.sunfix, name="Casa Verdi")
    solo = UserFactory(company=company, role=Role.OWNER)
    SiteFactory.create_batch(2, company=company)
    assert linked_assets(solo) == ["Casa Verdi still has 2 sites and you are its last user."]


def test_nothing_linked_to_a_plain_user(tenants):
    assert linked_assets(tenants.owner) == []
    assert linked_assets(tenants.sunfix_om) == []


def test_deregistration_removes_the_users_codes_and_avatar(client_for, tenants, settings):
    user = tenants.owner
    client = client_for(user)
    client.post(PROFILE_URL, {**profile_form_data(user), "avatar": image_file()})
    client.post(SEND_URL, {"purpose": "email_old"})
    user.refresh_from_db()
    avatar = Path(settings.MEDIA_ROOT) / user.avatar.name
    assert avatar.exists()

    client.post(DEREGISTER_URL, CONFIRM_DEREGISTRATION)

    assert not avatar.exists()
    assert not VerificationCode.objects.filter(email=user.email).exists()
