"""Who may open the sign-in, registration and User configuration pages.

Visitor pages (sign in, registration, forgotten password) are for anonymous users; a signed-in
user is sent home. User configuration is about one's own account, so every role of every tenant
gets it, and an anonymous visitor is sent to sign in.
"""

from dataclasses import replace

import pytest
from django.urls import reverse

from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

VISITOR_PAGE = Expect(
    admin=302,
    om=302,
    owner=302,
    anonymous=200,
    foreign_admin=302,
    foreign_om=302,
    foreign_owner=302,
)
OWN_ACCOUNT_PAGE = Expect.tenant_wide(admin=200, om=200, owner=200)


def account_page(name: str, *args: str):
    """A parameter of a test below: the URL of an accounts page, marked as its matrix row."""
    return pytest.param(
        reverse(f"accounts:{name}", args=args), marks=pytest.mark.matrix(f"accounts:{name}")
    )


@pytest.mark.parametrize(
    "url",
    [
        account_page("login"),
        account_page("register"),
        account_page("register_form", "distributor"),
        account_page("register_form", "installer"),
        account_page("register_form", "owner"),
        account_page("forgot_password"),
    ],
)
def test_visitor_pages(tenants, client_for, url):
    assert_matrix(tenants, client_for, url, VISITOR_PAGE)


@pytest.mark.matrix("accounts:register_form")
def test_unknown_account_type(tenants, client_for):
    url = reverse("accounts:register_form", args=["platform"])
    assert_matrix(tenants, client_for, url, Expect.everyone(404))


@pytest.mark.parametrize(
    "url",
    [
        account_page("profile"),
        account_page("security"),
        account_page("change_email"),
        account_page("change_password"),
        account_page("deregister"),
    ],
)
def test_own_account_pages(tenants, client_for, url):
    assert_matrix(tenants, client_for, url, OWN_ACCOUNT_PAGE)


@pytest.mark.matrix("accounts:set_password")
def test_set_password_only_after_a_temporary_password(tenants, client_for):
    # Without a pending temporary password, signed-in users are sent to change_password.
    assert_matrix(tenants, client_for, reverse("accounts:set_password"), Expect.everyone(302))


@pytest.mark.matrix("accounts:logout")
def test_logout_answers_only_post(tenants, client_for):
    url = reverse("accounts:logout")
    assert_matrix(tenants, client_for, url, Expect.everyone(405))
    assert_matrix(tenants, client_for, url, Expect.everyone(302), method="post")


@pytest.mark.matrix("accounts:send_code")
def test_send_code_answers_only_post(tenants, client_for):
    url = reverse("accounts:send_code")
    assert_matrix(tenants, client_for, url, Expect.everyone(405))


@pytest.mark.matrix("accounts:send_code")
def test_send_code_for_the_current_email_needs_a_signed_in_user(tenants, client_for):
    expect = replace(Expect.everyone(200), anonymous=403)
    assert_matrix(
        tenants,
        client_for,
        reverse("accounts:send_code"),
        expect,
        method="post",
        data={"purpose": "email_old"},
    )


@pytest.mark.matrix("accounts:send_code")
def test_registration_code_is_for_anyone(tenants, client_for, settings):
    settings.VERIFICATION_CODE_RESEND_SECONDS = 0  # the same address, seven times in a row
    settings.CODE_MAIL_LIMIT_PER_ADDRESS_AND_RECIPIENT = 0  # every role from one test client
    assert_matrix(
        tenants,
        client_for,
        reverse("accounts:send_code"),
        Expect.everyone(200),
        method="post",
        data={"purpose": "register", "email": "brand.new@example.com"},
    )


@pytest.mark.parametrize(
    "url",
    [
        account_page("profile"),
        account_page("change_email"),
        account_page("change_password"),
        account_page("deregister"),
    ],
)
def test_posting_own_account_forms(tenants, client_for, url):
    # An empty form: signed-in users get the page back with errors, visitors go to sign in.
    assert_matrix(tenants, client_for, url, OWN_ACCOUNT_PAGE, method="post")
