"""Guide §2.2: self-registration of distributor, installer and owner accounts."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts import codes
from accounts.models import CodePurpose, Company, CompanyType, Role, User, VerificationCode
from accounts.registration import register_account
from tests.factories import DEMO_PASSWORD, CompanyFactory

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "lena@solarwerk.example"
PASSWORD = "Kestrel-42!x"


def register_url(account_type: str) -> str:
    return reverse("accounts:register_form", args=[account_type])


def send_code(client, email: str = EMAIL) -> str:
    response = client.post(reverse("accounts:send_code"), {"email": email, "purpose": "register"})
    assert response.status_code == 200, response.text
    message = [m for m in mail.outbox if email in m.to][-1]
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def form_data(access_code: str, code: str, **overrides) -> dict:
    return {
        "company_name": "Solarwerk GmbH",
        "country": "AT",
        "email": EMAIL,
        "password1": PASSWORD,
        "password2": PASSWORD,
        "code": code,
        "access_code": access_code,
        "accept_terms": "on",
        **overrides,
    }


def errors(response, field: str) -> list[str]:
    assert response.status_code == 200
    return [str(e) for e in response.context["form"].errors.get(field, [])]


# --- Step 1 -----------------------------------------------------------------------------------


def test_sign_up_link_on_the_login_page(client):
    assert reverse("accounts:register") in client.get(reverse("accounts:login")).text


def test_step_one_offers_three_account_types(client):
    response = client.get(reverse("accounts:register"))
    assert response.status_code == 200
    for label in ("Distributor account", "Installer account", "Owner account"):
        assert label in response.text
    assert "Account information" in response.text


def test_step_one_next_leads_to_the_form_of_the_chosen_type(client):
    response = client.post(reverse("accounts:register"), {"account_type": "installer"})
    assert response.status_code == 302
    assert response["Location"] == register_url("installer")


def test_step_one_without_a_choice_asks_for_one(client):
    response = client.post(reverse("accounts:register"), {})
    assert response.status_code == 200
    assert "Please choose an account type." in response.text


@pytest.mark.parametrize("account_type", ["platform", "admin", "nonsense"])
def test_other_account_types_cannot_register(client, account_type):
    assert client.get(register_url(account_type)).status_code == 404


def test_signed_in_users_go_home(client_for, tenants):
    client = client_for(tenants.helios_admin)
    assert client.get(reverse("accounts:register")).status_code == 302
    assert client.get(register_url("installer")).status_code == 302


# --- Step 2 -----------------------------------------------------------------------------------


def test_form_of_table_2_1(client):
    response = client.get(register_url("installer"))
    text = response.text
    for label in ("Company name", "Region", "Email", "Confirm password", "Code", "Access code"):
        assert label in text
    assert 'hx-post="/account/codes/send/"' in text
    assert "Terms of Use" in text and "Privacy Policy" in text
    assert 'data-bs-toggle="tooltip"' in text
    assert "Detailed information" in text


def test_region_lists_european_and_north_american_countries_only(client):
    choices = client.get(register_url("owner")).context["form"].fields["country"].choices
    codes_offered = {code for _, group in choices[1:] for code, _ in group}
    assert {"DE", "IT", "FR", "GB", "US", "CA", "MX"} <= codes_offered
    assert not {"CN", "BR", "AU", "JP"} & codes_offered


def test_installer_registers_below_the_company_of_the_access_code(client, tenants):
    code = send_code(client)
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login")
    user = User.objects.get(email=EMAIL)
    assert user.role == Role.ADMIN
    assert user.company.type == CompanyType.INSTALLER
    assert user.company.name == "Solarwerk GmbH"
    assert user.company.superior == tenants.sunfix
    assert user.company.is_below(tenants.helios)
    assert str(user.company.country) == "AT"
    assert user.check_password(PASSWORD)
    assert VerificationCode.objects.get(email=EMAIL).consumed_at is not None
    page = client.get(response["Location"])
    assert "Your account has been registered" in page.text


def test_registered_user_signs_in(client, tenants):
    code = send_code(client)
    client.post(register_url("distributor"), form_data(tenants.platform.access_code, code))

    response = client.post(reverse("accounts:login"), {"username": EMAIL, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_distributor_below_a_distributor(client, tenants):
    code = send_code(client)
    client.post(register_url("distributor"), form_data(tenants.helios.access_code.lower(), code))
    company = User.objects.get(email=EMAIL).company
    assert company.type == CompanyType.DISTRIBUTOR
    assert company.superior == tenants.helios


def test_owner_account_first_user_is_an_owner(client, tenants):
    code = send_code(client)
    client.post(register_url("owner"), form_data(tenants.sunfix.access_code, code))
    user = User.objects.get(email=EMAIL)
    assert user.role == Role.OWNER
    assert user.company.type == CompanyType.OWNER
    assert user.company.superior == tenants.sunfix


def test_registration_with_a_foreign_superior_lands_in_that_tree_only(client, tenants):
    code = send_code(client)
    client.post(register_url("installer"), form_data(tenants.nordlicht.access_code, code))

    company = User.objects.get(email=EMAIL).company
    assert company.superior == tenants.nordlicht
    assert company in Company.objects.visible_to(tenants.nordlicht_admin)
    assert company not in Company.objects.visible_to(tenants.helios_admin)
    assert company not in Company.objects.visible_to(tenants.sunfix_admin)


def test_wrong_access_code(client, tenants):
    code = send_code(client)
    response = client.post(register_url("installer"), form_data("NOPE1234", code))
    assert "No company has this access code." in errors(response, "access_code")[0]
    assert not User.objects.filter(email=EMAIL).exists()


@pytest.mark.parametrize(
    ("account_type", "superior"),
    [("distributor", "sunfix"), ("distributor", "owner_company"), ("installer", "owner_company")],
)
def test_unsuitable_access_code(client, tenants, account_type, superior):
    tenants.owner_company = CompanyFactory(
        type=CompanyType.OWNER, name="Family Rossi", superior=tenants.sunfix
    )
    code = send_code(client)
    access_code = getattr(tenants, superior).access_code
    response = client.post(register_url(account_type), form_data(access_code, code))
    assert "cannot take" in errors(response, "access_code")[0]
    assert not User.objects.filter(email=EMAIL).exists()


def test_owner_company_code_cannot_take_an_owner(client, tenants):
    owner_company = CompanyFactory(type=CompanyType.OWNER, superior=tenants.sunfix)
    code = send_code(client)
    response = client.post(register_url("owner"), form_data(owner_company.access_code, code))
    assert errors(response, "access_code")


def test_a_registered_email_is_refused_only_after_its_code(client, tenants):
    # An address with an account gets no registration code (its owner a notice instead), so
    # without the inbox the form answers as for any address: the code is wrong.
    response = client.post(
        register_url("installer"),
        form_data(tenants.sunfix.access_code, "123456", email="ADMIN@helios.example"),
    )
    assert not errors(response, "email")
    assert "request a verification code first" in errors(response, "code")[0]
    assert Company.objects.count() == 4


def test_duplicate_email_is_refused_case_insensitively(client, tenants):
    # The code came while the address was free; someone registered it meanwhile.
    code = send_code(client, "lena@solarwerk.example")
    User.objects.create_user(email="Lena@Solarwerk.example", password=DEMO_PASSWORD)
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))
    assert "already exists" in errors(response, "email")[0]
    assert Company.objects.count() == 4


def test_weak_password_is_refused(client, tenants):
    code = send_code(client)
    data = form_data(tenants.sunfix.access_code, code, password1="password", password2="password")
    response = client.post(register_url("installer"), data)
    problems = " ".join(errors(response, "password1"))
    assert "upper-case letter" in problems and "special character" in problems
    assert "6 to 18 characters, with upper-case" in response.text  # help text on re-render
    assert not User.objects.filter(email=EMAIL).exists()


def test_password_longer_than_the_policy_is_refused(client, tenants):
    long_password = "Aa1!" * 5
    data = form_data(
        tenants.sunfix.access_code, "123456", password1=long_password, password2=long_password
    )
    assert (
        "6 to 18 characters" in errors(client.post(register_url("installer"), data), "password1")[0]
    )


def test_mismatched_confirmation(client, tenants):
    code = send_code(client)
    data = form_data(tenants.sunfix.access_code, code, password2="Other-pass9!")
    response = client.post(register_url("installer"), data)
    assert errors(response, "password2") == ["The two passwords do not match."]


def test_wrong_code_is_a_form_error_and_counts(client, tenants):
    code = send_code(client)
    wrong = "000000" if code != "000000" else "111111"
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, wrong))
    assert "incorrect" in errors(response, "code")[0]
    assert VerificationCode.objects.get(email=EMAIL).attempts == 1
    assert not User.objects.filter(email=EMAIL).exists()


def test_expired_code(client, tenants):
    code = send_code(client)
    row = VerificationCode.objects.get(email=EMAIL)
    row.created_at -= timedelta(hours=1)
    row.expires_at -= timedelta(hours=1)
    row.save()
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))
    assert "expired" in errors(response, "code")[0]


def test_too_many_attempts(client, tenants, settings):
    code = send_code(client)
    VerificationCode.objects.filter(email=EMAIL).update(
        attempts=settings.VERIFICATION_CODE_MAX_ATTEMPTS
    )
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))
    assert "Too many wrong attempts" in errors(response, "code")[0]


def test_used_code_cannot_register_again(client, tenants):
    code = send_code(client)
    codes.consume(EMAIL, CodePurpose.REGISTER, code)
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))
    assert "already been used" in errors(response, "code")[0]


def test_code_without_send(client, tenants):
    response = client.post(
        register_url("installer"), form_data(tenants.sunfix.access_code, "123456")
    )
    assert "request a verification code first" in errors(response, "code")[0]


def test_code_sent_to_another_address_does_not_register_this_one(client, tenants):
    code = send_code(client, "someone.else@example.com")
    response = client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))
    assert errors(response, "code")


def test_terms_must_be_accepted(client, tenants):
    data = form_data(tenants.sunfix.access_code, "123456")
    del data["accept_terms"]
    response = client.post(register_url("installer"), data)
    assert errors(response, "accept_terms")


def test_region_outside_europe_and_north_america(client, tenants):
    data = form_data(tenants.sunfix.access_code, "123456", country="CN")
    assert errors(client.post(register_url("installer"), data), "country")


def test_language_of_the_page_becomes_the_users_language(client, tenants, settings):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "it"
    code = send_code(client)
    client.post(register_url("installer"), form_data(tenants.sunfix.access_code, code))
    assert User.objects.get(email=EMAIL).language == "it"


# --- The service ------------------------------------------------------------------------------


def test_register_account_is_atomic(tenants):
    with pytest.raises(ValidationError) as raised:
        register_account(
            account_type="installer",
            company_name="Half Done",
            country="DE",
            email=EMAIL,
            password="weak",
            access_code=tenants.sunfix.access_code,
        )
    assert "password" in raised.value.message_dict
    assert not Company.objects.filter(name="Half Done").exists()


def test_register_account_refuses_a_taken_email(tenants):
    with pytest.raises(ValidationError) as raised:
        register_account(
            account_type="installer",
            company_name="Copycat",
            country="DE",
            email="OM@helios.example",
            password=DEMO_PASSWORD,
            access_code=tenants.sunfix.access_code,
        )
    assert "email" in raised.value.message_dict
    assert not Company.objects.filter(name="Copycat").exists()


def test_register_account_refuses_an_unsuitable_superior(tenants):
    with pytest.raises(ValidationError) as raised:
        register_account(
            account_type="distributor",
            company_name="Upstart",
            country="DE",
            email=EMAIL,
            password=DEMO_PASSWORD,
            access_code=tenants.sunfix.access_code,
        )
    assert "access_code" in raised.value.message_dict
