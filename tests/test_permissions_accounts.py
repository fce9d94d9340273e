"""The permission matrix of Account → Company and User management (guide §5).

Every URL, GET and POST, for every role of the own tenant (Helios) and of a foreign one
(Nordlicht). Objects belong to the Helios tree (SunFix), so every foreign user gets 404: the
object is looked up within the user's scope before the role is checked
(accounts/views/generic.py). An owner sees only their own company and their own user, so gets
403 there and 404 on any other object.
"""

import itertools

import pytest
from django.urls import reverse

from accounts.models import CompanyType, Role, User
from tests.factories import CompanyFactory, UserFactory
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
# Staff-only pages on an object of the Helios tree.
STAFF_OBJECT = Expect(admin=200, om=200, owner=403)
STAFF_OBJECT_POST = Expect(admin=302, om=302, owner=403)
# The same on objects the owner cannot see (another user, a company other than their own).
STAFF_HIDDEN = Expect(admin=200, om=200, owner=404)
STAFF_HIDDEN_POST = Expect(admin=302, om=302, owner=404)
# Administrator-only pages: O&M in scope are refused by role.
ADMIN_OBJECT = Expect(admin=200, om=403, owner=404)
ADMIN_OBJECT_POST = Expect(admin=302, om=403, owner=404)

_serial = itertools.count()


def url(name, *args):
    return reverse(f"accounts:{name}", args=args)


def fresh_company(tenants):
    return CompanyFactory(superior=tenants.sunfix, name=f"Fresh {next(_serial)}")


def fresh_user(tenants, role=Role.OM):
    return UserFactory(company=tenants.sunfix, role=role)


# --- Account → Company ------------------------------------------------------------------------


@pytest.mark.matrix("accounts:company_list")
def test_company_list(tenants, client_for):
    assert_matrix(tenants, client_for, url("company_list"), Expect.tenant_wide())
    assert_matrix(
        tenants,
        client_for,
        url("company_list") + "?q=sun",
        Expect.tenant_wide(),
        headers={**HTMX, "HX-Target": "company-tree"},
    )


@pytest.mark.matrix("accounts:company_add")
def test_company_add(tenants, client_for):
    assert_matrix(tenants, client_for, url("company_add"), Expect.tenant_wide())


@pytest.mark.matrix("accounts:company_add")
def test_company_add_post(tenants, client_for):
    data = {
        "type": CompanyType.INSTALLER,
        "superior": tenants.sunfix.pk,
        "name": "Matrix Installer",
        "country": "DE",
    }
    # Foreign staff may add companies, but not under a Helios company: the superior is not
    # among their choices, so the form comes back with an error.
    expect = Expect(
        admin=302, om=302, owner=403, foreign_admin=200, foreign_om=200, foreign_owner=403
    )
    assert_matrix(tenants, client_for, url("company_add"), expect, method="post", data=data)


@pytest.mark.matrix("accounts:company_detail")
def test_company_detail(tenants, client_for):
    assert_matrix(tenants, client_for, url("company_detail", tenants.sunfix.pk), STAFF_OBJECT)


@pytest.mark.matrix("accounts:company_detail")
def test_company_edit_post(tenants, client_for):
    data = {"name": "SunFix Installers", "country": "DE", "address": "", "description": ""}
    target = url("company_detail", tenants.sunfix.pk)
    assert_matrix(tenants, client_for, target, STAFF_OBJECT_POST, method="post", data=data)


@pytest.mark.matrix("accounts:company_delete")
def test_company_delete(tenants, client_for):
    target = url("company_delete", fresh_company(tenants).pk)
    assert_matrix(tenants, client_for, target, ADMIN_OBJECT)
    assert_matrix(
        tenants,
        client_for,
        target,
        ADMIN_OBJECT,
        headers={**HTMX, "HX-Target": "action-dialog"},
    )


@pytest.mark.matrix("accounts:company_delete")
def test_company_delete_post(tenants, client_for):
    assert_matrix(
        tenants,
        client_for,
        lambda actor: url("company_delete", fresh_company(tenants).pk),
        ADMIN_OBJECT_POST,
        method="post",
    )


# --- Account → User management ----------------------------------------------------------------


@pytest.mark.matrix("accounts:company_users")
def test_company_users(tenants, client_for):
    target = url("company_users", tenants.sunfix.pk)
    assert_matrix(tenants, client_for, target, STAFF_OBJECT)
    assert_matrix(
        tenants, client_for, target, STAFF_OBJECT, headers={**HTMX, "HX-Target": "user-table"}
    )


@pytest.mark.matrix("accounts:user_add")
def test_user_add(tenants, client_for):
    assert_matrix(tenants, client_for, url("user_add", tenants.sunfix.pk), STAFF_OBJECT)


@pytest.mark.matrix("accounts:user_add")
def test_user_add_post(tenants, client_for, settings):
    # Every actor emails the same new address in turn: no mail limits for this matrix.
    settings.STAFF_MAIL_RESEND_SECONDS = settings.STAFF_MAIL_LIMIT_PER_RECIPIENT = 0
    data = {
        "username": "Matrix User",
        "country": "DE",
        "email": "matrix@sunfix.example",
        "password_mode": "automatic",
        "role": Role.OWNER,
    }

    def fresh_email(actor):
        # The email is unique: forget the previous actor's user before the next one tries.
        User.objects.filter(email="matrix@sunfix.example").delete()
        return url("user_add", tenants.sunfix.pk)

    assert_matrix(tenants, client_for, fresh_email, STAFF_OBJECT_POST, method="post", data=data)


@pytest.mark.matrix("accounts:user_edit")
def test_user_edit(tenants, client_for):
    assert_matrix(tenants, client_for, url("user_edit", tenants.sunfix_om.pk), STAFF_HIDDEN)


@pytest.mark.matrix("accounts:user_edit")
def test_user_edit_post(tenants, client_for):
    data = {"username": "SunFix O&M", "country": "DE", "supervisor": "", "description": ""}
    target = url("user_edit", tenants.sunfix_om.pk)
    assert_matrix(tenants, client_for, target, STAFF_HIDDEN_POST, method="post", data=data)


@pytest.mark.matrix("accounts:user_role")
def test_user_role(tenants, client_for):
    assert_matrix(tenants, client_for, url("user_role", tenants.sunfix_om.pk), ADMIN_OBJECT)


@pytest.mark.matrix("accounts:user_role")
def test_user_role_post(tenants, client_for):
    assert_matrix(
        tenants,
        client_for,
        lambda actor: url("user_role", fresh_user(tenants).pk),
        ADMIN_OBJECT_POST,
        method="post",
        data={"role": Role.OWNER},
    )


@pytest.mark.matrix("accounts:user_reset_password")
def test_user_reset_password(tenants, client_for):
    target = url("user_reset_password", tenants.sunfix_om.pk)
    assert_matrix(tenants, client_for, target, STAFF_HIDDEN)
    assert_matrix(
        tenants, client_for, target, STAFF_HIDDEN, headers={**HTMX, "HX-Target": "action-dialog"}
    )


@pytest.mark.matrix("accounts:user_reset_password")
def test_user_reset_password_post(tenants, client_for):
    assert_matrix(
        tenants,
        client_for,
        lambda actor: url("user_reset_password", fresh_user(tenants, Role.OWNER).pk),
        STAFF_HIDDEN_POST,
        method="post",
    )


# --- Object rules on top of the role ----------------------------------------------------------


def test_own_role_and_own_password_are_refused_to_everyone(tenants, client_for):
    for user in (tenants.helios_admin, tenants.sunfix_admin):
        client = client_for(user)
        assert client.get(url("user_role", user.pk)).status_code == 403
        assert client.post(url("user_role", user.pk), {"role": Role.OM}).status_code == 403
        assert client.post(url("user_reset_password", user.pk)).status_code == 403


def test_own_company_cannot_be_deleted(tenants, client_for):
    client = client_for(tenants.helios_admin)
    assert client.get(url("company_delete", tenants.helios.pk)).status_code == 403
    assert client.post(url("company_delete", tenants.helios.pk)).status_code == 403


def test_owners_in_scope_of_their_own_row_are_still_refused(tenants, client_for):
    client = client_for(tenants.owner)
    for name in ("user_edit", "user_role", "user_reset_password"):
        assert client.get(url(name, tenants.owner.pk)).status_code == 403
    assert client.get(url("company_users", tenants.sunfix.pk)).status_code == 403
