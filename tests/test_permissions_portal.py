"""The permission matrix of the pages outside the apps (matricloud/urls.py): home, the menu
entry whose page comes with a later feature, the health check and the language switch.

None of them shows an object of a tenant, so a foreign user gets what the same role gets at
home; an anonymous visitor is sent to sign in, except for the health check and the language
switch, which answer everyone.
"""

import pytest
from django.urls import reverse

from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

EVERY_SIGNED_IN_USER = Expect.tenant_wide(admin=200, om=200, owner=200)


@pytest.mark.matrix("home")
def test_home(tenants, client_for):
    assert_matrix(tenants, client_for, reverse("home"), EVERY_SIGNED_IN_USER)


@pytest.mark.matrix("placeholder:maintenance")
def test_maintenance_menu_entry(tenants, client_for):
    # Staff are sent on to the operations log; owners have no maintenance pages yet.
    expect = Expect.tenant_wide(admin=302, om=302, owner=200)
    assert_matrix(tenants, client_for, reverse("placeholder:maintenance"), expect)


@pytest.mark.matrix("healthz")
def test_health_check_answers_everyone(tenants, client_for):
    assert_matrix(tenants, client_for, reverse("healthz"), Expect.everyone(200))


@pytest.mark.matrix("set_language")
def test_language_switch_sends_everyone_back(tenants, client_for):
    url = reverse("set_language")
    assert_matrix(tenants, client_for, url, Expect.everyone(302))
    data = {"language": "de", "next": "/"}
    assert_matrix(tenants, client_for, url, Expect.everyone(302), method="post", data=data)
