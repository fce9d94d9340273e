"""Account → User management (guide §5.2): list, add, edit, select role, reset password."""

import re
import smtplib
from unittest import mock

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import Role, User
from tests.factories import DEMO_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

HTMX_TABLE = {"HX-Request": "true", "HX-Target": "user-table"}
STRONG_PASSWORD = "Sunny-day42!"


def users_url(company):
    return reverse("accounts:company_users", args=[company.pk])


def add_url(company):
    return reverse("accounts:user_add", args=[company.pk])


def edit_url(user):
    return reverse("accounts:user_edit", args=[user.pk])


def role_url(user):
    return reverse("accounts:user_role", args=[user.pk])


def reset_url(user):
    return reverse("accounts:user_reset_password", args=[user.pk])


def temporary_password(message) -> str:
    return re.search(r"Temporary password: (\S+)", message.body).group(1)


def signs_in(email: str, password: str) -> bool:
    """Through the real sign-in page, as a person would."""
    client = Client()
    client.post(reverse("accounts:login"), {"username": email, "password": password})
    return "_auth_user_id" in client.session


# --- The user management tab ------------------------------------------------------------------


def test_the_tab_lists_the_users_of_the_company(tenants, client_for):
    response = client_for(tenants.helios_admin).get(users_url(tenants.sunfix))
    assert response.status_code == 200
    rows = [row.record for row in response.context["table"].paginated_rows]
    assert rows == [tenants.owner, tenants.sunfix_admin, tenants.sunfix_om]  # by username
    html = response.content.decode()
    assert "admin@sunfix.example" in html and "O&amp;M engineer" in html
    assert "Helios Admin" not in html.split('id="user-table"')[1]  # another company's user


def test_the_table_shows_supervisor_country_description_and_operations(tenants, client_for):
    tenants.sunfix_om.supervisor = tenants.sunfix_admin
    tenants.sunfix_om.country = "AT"
    tenants.sunfix_om.description = "Service team Tyrol"
    tenants.sunfix_om.save()
    html = client_for(tenants.sunfix_admin).get(users_url(tenants.sunfix)).content.decode()
    table = html.split('id="user-table"')[1]
    assert "SunFix Admin" in table and "AT" in table and "Service team Tyrol" in table
    assert edit_url(tenants.sunfix_om) in table and reset_url(tenants.sunfix_om) in table
    assert role_url(tenants.sunfix_om) in table
    assert reset_url(tenants.sunfix_admin) not in table  # not for oneself
    assert reverse("accounts:security") in table


def test_om_gets_no_select_role_operation(tenants, client_for):
    html = client_for(tenants.sunfix_om).get(users_url(tenants.sunfix)).content.decode()
    assert role_url(tenants.owner) not in html
    assert reset_url(tenants.owner) in html


def test_search_by_username_or_email(tenants, client_for):
    client = client_for(tenants.helios_admin)
    response = client.get(users_url(tenants.sunfix), {"q": "OLIVIA"})
    assert [row.record for row in response.context["table"].paginated_rows] == [tenants.owner]
    response = client.get(users_url(tenants.sunfix), {"q": "om@sunfix"})
    assert [row.record for row in response.context["table"].paginated_rows] == [tenants.sunfix_om]
    response = client.get(users_url(tenants.sunfix), {"q": "nobody"})
    assert "No user matches" in response.content.decode()


def test_htmx_search_and_pagination_render_only_the_table(tenants, client_for):
    for index in range(25):
        UserFactory(company=tenants.sunfix, role=Role.OWNER, username=f"Member {index:02d}")
    client = client_for(tenants.helios_admin)
    response = client.get(users_url(tenants.sunfix), {"page": 2}, headers=HTMX_TABLE)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="user-table"') and "<html" not in html
    assert "21–28 of 28" in html
    assert 'hx-target="#user-table"' in html
    full = client.get(users_url(tenants.sunfix)).content.decode()
    assert "<html" in full and "1–20 of 28" in full


def test_a_foreign_company_has_no_user_tab(tenants, client_for):
    assert client_for(tenants.nordlicht_admin).get(users_url(tenants.sunfix)).status_code == 404


# --- Add a user (§5.2.1) ----------------------------------------------------------------------


def add_data(**overrides):
    data = {
        "username": "Nina Neu",
        "country": "DE",
        "email": "nina@sunfix.example",
        "supervisor": "",
        "description": "Commissioning",
        "password_mode": "automatic",
        "password1": "",
        "password2": "",
        "role": Role.OM,
    }
    return {**data, **overrides}


def test_add_with_an_automatic_password(tenants, client_for, django_capture_on_commit_callbacks):
    client = client_for(tenants.sunfix_admin)
    data = add_data(supervisor=tenants.sunfix_admin.pk, email="Nina@SunFix.example")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(add_url(tenants.sunfix), data, follow=True)
    assert response.redirect_chain[-1][0] == users_url(tenants.sunfix)
    user = User.objects.get(email="nina@sunfix.example")
    assert (user.company, user.role, user.supervisor) == (
        tenants.sunfix,
        Role.OM,
        tenants.sunfix_admin,
    )
    assert (user.username, user.country.code, user.description) == (
        "Nina Neu",
        "DE",
        "Commissioning",
    )
    assert user.password_is_temporary
    assert "temporary password has been emailed" in response.content.decode()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["nina@sunfix.example"]
    assert message.subject == "Your MatriCloud account"
    password = temporary_password(message)
    validate_password(password, user=user)
    assert signs_in("nina@sunfix.example", password)


def test_add_with_a_custom_password(tenants, client_for, django_capture_on_commit_callbacks):
    data = add_data(password_mode="custom", password1=STRONG_PASSWORD, password2=STRONG_PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(tenants.helios_om).post(add_url(tenants.sunfix), data)
    assert response.status_code == 302
    user = User.objects.get(email="nina@sunfix.example")
    assert not user.password_is_temporary
    assert mail.outbox == []
    assert signs_in("nina@sunfix.example", STRONG_PASSWORD)


def test_a_weak_custom_password_is_refused(tenants, client_for):
    data = add_data(password_mode="custom", password1="sunny", password2="sunny")
    response = client_for(tenants.sunfix_admin).post(add_url(tenants.sunfix), data)
    assert response.status_code == 200
    errors = response.context["form"].errors["password1"]
    assert any("upper-case" in error for error in errors)
    assert response.context["form"].first_step_has_errors
    assert not User.objects.filter(email="nina@sunfix.example").exists()


def test_the_confirmation_must_match(tenants, client_for):
    data = add_data(password_mode="custom", password1=STRONG_PASSWORD, password2="Other-pass1!")
    response = client_for(tenants.sunfix_admin).post(add_url(tenants.sunfix), data)
    assert "password2" in response.context["form"].errors
    assert not User.objects.filter(email="nina@sunfix.example").exists()


def test_a_custom_password_is_ignored_when_automatic(tenants, client_for):
    data = add_data(password1="weak", password2="different")
    assert client_for(tenants.sunfix_admin).post(add_url(tenants.sunfix), data).status_code == 302


def test_the_email_is_unique_whatever_its_case(tenants, client_for):
    data = add_data(email="ADMIN@Nordlicht.Example")  # a user of another tenant
    response = client_for(tenants.sunfix_admin).post(add_url(tenants.sunfix), data)
    assert "already exists" in response.context["form"].errors["email"][0]
    assert User.objects.filter(email="admin@nordlicht.example").count() == 1


def test_a_foreign_supervisor_posted_by_hand_is_refused(tenants, client_for):
    data = add_data(supervisor=tenants.nordlicht_om.pk)
    response = client_for(tenants.sunfix_admin).post(add_url(tenants.sunfix), data)
    assert "supervisor" in response.context["form"].errors
    assert not User.objects.filter(email="nina@sunfix.example").exists()


def test_the_supervisor_works_in_the_same_company(tenants, client_for):
    data = add_data(supervisor=tenants.helios_om.pk)  # visible to Helios, but not in SunFix
    response = client_for(tenants.helios_admin).post(add_url(tenants.sunfix), data)
    assert "supervisor" in response.context["form"].errors


def test_om_cannot_create_an_administrator(tenants, client_for):
    client = client_for(tenants.sunfix_om)
    form = client.get(add_url(tenants.sunfix)).context["form"]
    assert [value for value, _ in form.fields["role"].choices] == [Role.OM, Role.OWNER]
    response = client.post(add_url(tenants.sunfix), add_data(role=Role.ADMIN))
    assert "role" in response.context["form"].errors
    assert not response.context["form"].first_step_has_errors  # the role step is shown
    assert not User.objects.filter(email="nina@sunfix.example").exists()


def test_the_service_refuses_a_role_the_actor_cannot_give(tenants):
    with pytest.raises(services.PermissionDenied):
        services.create_user(
            acting_user=tenants.sunfix_om,
            company=tenants.sunfix,
            email="nina@sunfix.example",
            username="Nina",
            role=Role.ADMIN,
        )


def test_roles_are_described_as_in_the_guide(tenants, client_for):
    html = client_for(tenants.sunfix_admin).get(add_url(tenants.sunfix)).content.decode()
    assert "Views site, gateway and inverter information." in html
    assert "Basic information" in html and "Assign role" in html and "Next" in html


def test_a_user_cannot_be_added_to_a_foreign_company(tenants, client_for):
    response = client_for(tenants.nordlicht_admin).post(add_url(tenants.sunfix), add_data())
    assert response.status_code == 404
    assert not User.objects.filter(email="nina@sunfix.example").exists()


@pytest.mark.django_db(transaction=True)
def test_a_failed_email_is_reported(tenants, client_for):
    # A real transaction: the email goes out when the service's own transaction commits.
    with mock.patch("accounts.services.send_mail", side_effect=smtplib.SMTPException):
        response = client_for(tenants.sunfix_admin).post(
            add_url(tenants.sunfix), add_data(), follow=True
        )
    assert User.objects.get(email="nina@sunfix.example").password_is_temporary
    html = response.content.decode()
    assert "could not be sent" in html and "has been added." in html
    assert "has been emailed" not in html


@pytest.mark.django_db(transaction=True)
def test_the_email_goes_out_only_after_commit(tenants, client_for):
    client = client_for(tenants.sunfix_admin)
    assert client.post(add_url(tenants.sunfix), add_data()).status_code == 302
    assert len(mail.outbox) == 1


# --- Edit a user (§5.2.2) ---------------------------------------------------------------------


def edit_data(**overrides):
    data = {"username": "Sam Service", "country": "AT", "supervisor": "", "description": "Tyrol"}
    return {**data, **overrides}


def test_edit_basic_information(tenants, client_for):
    data = edit_data(supervisor=tenants.sunfix_admin.pk, email="hijack@example.com")
    response = client_for(tenants.helios_om).post(edit_url(tenants.sunfix_om), data, follow=True)
    assert response.redirect_chain[-1][0] == users_url(tenants.sunfix)
    user = User.objects.get(pk=tenants.sunfix_om.pk)
    assert (user.username, user.country.code, user.description) == ("Sam Service", "AT", "Tyrol")
    assert user.supervisor == tenants.sunfix_admin
    assert user.email == "om@sunfix.example"  # the sign-in does not change here
    assert "has been saved" in response.content.decode()


def test_a_user_is_not_their_own_supervisor(tenants, client_for):
    data = edit_data(supervisor=tenants.sunfix_om.pk)
    response = client_for(tenants.sunfix_admin).post(edit_url(tenants.sunfix_om), data)
    assert "supervisor" in response.context["form"].errors


def test_supervisors_do_not_form_a_loop(tenants, client_for):
    tenants.sunfix_admin.supervisor = tenants.sunfix_om
    tenants.sunfix_admin.save()
    data = edit_data(supervisor=tenants.sunfix_admin.pk)
    response = client_for(tenants.helios_admin).post(edit_url(tenants.sunfix_om), data)
    assert "supervisor" in response.context["form"].errors
    assert User.objects.get(pk=tenants.sunfix_om.pk).supervisor is None


def test_a_foreign_user_cannot_be_edited(tenants, client_for):
    response = client_for(tenants.nordlicht_admin).post(edit_url(tenants.sunfix_om), edit_data())
    assert response.status_code == 404
    assert User.objects.get(pk=tenants.sunfix_om.pk).username == "SunFix O&M"


def test_a_user_above_cannot_be_edited(tenants, client_for):
    assert client_for(tenants.sunfix_admin).get(edit_url(tenants.helios_om)).status_code == 404


# --- Select role (§5.2.2) ---------------------------------------------------------------------


def test_admin_changes_a_role(tenants, client_for):
    response = client_for(tenants.helios_admin).post(
        role_url(tenants.sunfix_om), {"role": Role.ADMIN}, follow=True
    )
    assert response.redirect_chain[-1][0] == users_url(tenants.sunfix)
    assert User.objects.get(pk=tenants.sunfix_om.pk).role == Role.ADMIN
    assert "is now Administrator" in response.content.decode()


def test_om_cannot_change_roles(tenants, client_for):
    client = client_for(tenants.helios_om)
    assert client.get(role_url(tenants.owner)).status_code == 403
    assert client.post(role_url(tenants.owner), {"role": Role.OM}).status_code == 403
    assert User.objects.get(pk=tenants.owner.pk).role == Role.OWNER
    assert role_url(tenants.owner) not in client.get(edit_url(tenants.owner)).content.decode()


def test_nobody_changes_their_own_role(tenants, client_for):
    client = client_for(tenants.sunfix_admin)
    assert client.post(role_url(tenants.sunfix_admin), {"role": Role.OWNER}).status_code == 403
    assert User.objects.get(pk=tenants.sunfix_admin.pk).role == Role.ADMIN


def test_an_unknown_role_is_refused(tenants, client_for):
    response = client_for(tenants.sunfix_admin).post(role_url(tenants.owner), {"role": "root"})
    assert "role" in response.context["form"].errors


# --- Reset password (§5.2.3) ------------------------------------------------------------------


def test_reset_a_password(tenants, client_for, django_capture_on_commit_callbacks):
    client = client_for(tenants.sunfix_om)
    assert "A new temporary password" in client.get(reset_url(tenants.owner)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reset_url(tenants.owner), follow=True)
    assert response.redirect_chain[-1][0] == users_url(tenants.sunfix)
    assert "has been emailed to owner@sunfix.example" in response.content.decode()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["owner@sunfix.example"]
    assert message.subject == "Your MatriCloud password has been reset"
    password = temporary_password(message)
    owner = User.objects.get(pk=tenants.owner.pk)
    assert owner.password_is_temporary
    assert not signs_in("owner@sunfix.example", DEMO_PASSWORD)
    assert signs_in("owner@sunfix.example", password)


def test_reset_dialog_for_htmx(tenants, client_for):
    response = client_for(tenants.sunfix_admin).get(
        reset_url(tenants.owner), headers={"HX-Request": "true", "HX-Target": "action-dialog"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith("<form") and "owner@sunfix.example" in html


def test_nobody_resets_their_own_password_here(tenants, client_for):
    response = client_for(tenants.sunfix_admin).post(reset_url(tenants.sunfix_admin))
    assert response.status_code == 403


def test_owners_cannot_reset_passwords(tenants, client_for):
    # Other users are outside an owner's scope: not even acknowledged.
    assert client_for(tenants.owner).post(reset_url(tenants.sunfix_om)).status_code == 404
    assert client_for(tenants.owner).post(reset_url(tenants.owner)).status_code == 403


def test_a_foreign_password_cannot_be_reset(tenants, client_for):
    assert client_for(tenants.nordlicht_admin).post(reset_url(tenants.owner)).status_code == 404
    assert mail.outbox == []


# --- Temporary passwords ----------------------------------------------------------------------


def test_temporary_passwords_follow_the_policy():
    passwords = {services.generate_temporary_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        validate_password(password)
