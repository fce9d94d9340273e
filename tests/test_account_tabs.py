"""The tabs of the company page (Company information, User management) and of a user's page
(Basic information, Select role), drawn by the shared tab block (ui/tabs.py): a click swaps
only the panel and brings the tab bar out of band, a whole page comes without htmx, and a tab
the role may not use is not shown and its URL answers 403."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from accounts.permissions import ADMIN, RULES
from tests.browser import CHROMIUM, sign_in
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

TAB_CLICK = {"HX-Request": "true", "HX-Target": "tab-panel"}
TAB_BAR = 'id="tab-panel-tabs"'
OOB_TAB_BAR = 'id="tab-panel-tabs" hx-swap-oob="true"'


def url(name, pk):
    return reverse(f"accounts:{name}", args=[pk])


def tab_links(html):
    """The tab bar's links, in order, with the current one marked."""
    bar = html.split(TAB_BAR, 1)[1].split("</ul>", 1)[0]
    return [
        (chunk.split('"', 1)[0], 'aria-current="page"' in chunk.split(">", 1)[0])
        for chunk in bar.split('href="')[1:]
    ]


# --- Company page -------------------------------------------------------------------------------


def test_the_company_page_without_htmx_is_a_whole_page_with_its_tabs(tenants, client_for):
    sunfix = tenants.sunfix
    response = client_for(tenants.helios_admin).get(url("company_detail", sunfix.pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<h1") == 1 and "<title>SunFix Installers · MatriCloud</title>" in html
    assert TAB_BAR in html and OOB_TAB_BAR not in html and 'hx-swap-oob="true"' not in html
    assert tab_links(html) == [
        (url("company_detail", sunfix.pk), True),
        (url("company_users", sunfix.pk), False),
    ]
    assert 'hx-target="#tab-panel"' in html and 'hx-push-url="true"' in html
    assert 'id="tab-panel"' in html and "Edit company" in html
    assert "HX-Target" in response["Vary"]


def test_a_click_on_user_management_swaps_only_the_panel(tenants, client_for):
    sunfix = tenants.sunfix
    client = client_for(tenants.helios_admin)
    response = client.get(url("company_users", sunfix.pk), headers=TAB_CLICK)
    html = response.content.decode()
    assert response.status_code == 200
    assert response.template_name == ["accounts/users/list.html#tab"]
    assert "<html" not in html and "<h1" not in html and "page-header" not in html
    assert "Delete Company" not in html  # the header stays as it is
    assert html.count(TAB_BAR) == 1 and OOB_TAB_BAR in html
    assert tab_links(html) == [
        (url("company_detail", sunfix.pk), False),
        (url("company_users", sunfix.pk), True),
    ]
    assert '<div id="tab-panel">' in html and "om@sunfix.example" in html
    assert 'id="user-table"' in html and url("user_add", sunfix.pk) in html  # Add User
    # The breadcrumbs and the title follow the tab.
    assert 'id="breadcrumbs" aria-label="Breadcrumb" hx-swap-oob="true"' in html
    assert "<title>User management · SunFix Installers · MatriCloud</title>" in html


def test_a_click_on_company_information_swaps_only_the_panel(tenants, client_for):
    sunfix = tenants.sunfix
    client = client_for(tenants.helios_admin)
    response = client.get(url("company_detail", sunfix.pk), headers=TAB_CLICK)
    html = response.content.decode()
    assert response.template_name == ["accounts/companies/detail.html#tab"]
    assert "<html" not in html and "<h1" not in html and OOB_TAB_BAR in html
    assert tab_links(html)[0] == (url("company_detail", sunfix.pk), True)
    assert 'id="tab-panel" class="row g-3"' in html
    assert sunfix.access_code in html and 'name="name"' in html  # the edit form
    assert "<title>SunFix Installers · MatriCloud</title>" in html


def test_the_user_table_alone_brings_no_tab_bar(tenants, client_for):
    response = client_for(tenants.helios_admin).get(
        url("company_users", tenants.sunfix.pk) + "?q=om",
        headers={"HX-Request": "true", "HX-Target": "user-table"},
    )
    html = response.content.decode()
    assert 'id="user-table"' in html and TAB_BAR not in html and 'id="tab-panel"' not in html


def test_the_whole_users_page_has_the_header_and_the_tabs(tenants, client_for):
    response = client_for(tenants.helios_om).get(url("company_users", tenants.sunfix.pk))
    html = response.content.decode()
    assert html.count("<h1") == 1 and "SunFix Installers" in html
    assert OOB_TAB_BAR not in html
    assert [active for _, active in tab_links(html)] == [False, True]
    assert "Add User" in html


def test_a_company_tab_the_role_may_not_use_is_hidden_and_refused(tenants, client_for, monkeypatch):
    # Were user management for administrators only, an O&M engineer would keep the company
    # information and lose the user management tab, as a link and as a URL.
    monkeypatch.setitem(RULES, "user.view", frozenset({ADMIN}))
    sunfix = tenants.sunfix
    client = client_for(tenants.helios_om)
    html = client.get(url("company_detail", sunfix.pk)).content.decode()
    assert tab_links(html) == [(url("company_detail", sunfix.pk), True)]
    assert "User management" not in html
    assert client.get(url("company_users", sunfix.pk)).status_code == 403
    assert client.get(url("company_users", sunfix.pk), headers=TAB_CLICK).status_code == 403
    admin = client_for(tenants.helios_admin).get(url("company_detail", sunfix.pk))
    assert len(tab_links(admin.content.decode())) == 2


@pytest.mark.matrix("accounts:company_detail", "accounts:company_users")
def test_a_company_tab_click_is_checked_like_the_page(tenants, client_for):
    staff = Expect(admin=200, om=200, owner=403)
    for name in ("company_detail", "company_users"):
        target = url(name, tenants.sunfix.pk)
        assert_matrix(tenants, client_for, target, staff, headers=TAB_CLICK)


# --- A user's page ------------------------------------------------------------------------------


def test_the_user_page_without_htmx_is_a_whole_page_with_its_tabs(tenants, client_for):
    target = tenants.sunfix_om
    response = client_for(tenants.helios_admin).get(url("user_edit", target.pk))
    html = response.content.decode()
    assert (
        html.count("<h1") == 1 and "<title>Edit user · SunFix O&amp;M · MatriCloud</title>" in html
    )
    assert OOB_TAB_BAR not in html and 'hx-swap-oob="true"' not in html
    assert tab_links(html) == [
        (url("user_edit", target.pk), True),
        (url("user_role", target.pk), False),
    ]
    assert 'id="tab-panel" class="card mw-46rem"' in html and "Basic information" in html


def test_a_click_on_select_role_swaps_only_the_panel(tenants, client_for):
    target = tenants.sunfix_om
    response = client_for(tenants.helios_admin).get(url("user_role", target.pk), headers=TAB_CLICK)
    html = response.content.decode()
    assert response.status_code == 200
    assert response.template_name == ["accounts/users/role.html#tab"]
    assert "<html" not in html and "<h1" not in html and "Reset password" not in html
    assert html.count(TAB_BAR) == 1 and OOB_TAB_BAR in html
    assert tab_links(html) == [
        (url("user_edit", target.pk), False),
        (url("user_role", target.pk), True),
    ]
    assert 'id="tab-panel" class="card mw-46rem"' in html and 'name="role"' in html
    assert 'id="breadcrumbs" aria-label="Breadcrumb" hx-swap-oob="true"' in html
    assert "<title>Select role · SunFix O&amp;M · MatriCloud</title>" in html


def test_a_click_on_basic_information_swaps_only_the_panel(tenants, client_for):
    target = tenants.sunfix_om
    response = client_for(tenants.helios_admin).get(url("user_edit", target.pk), headers=TAB_CLICK)
    html = response.content.decode()
    assert response.template_name == ["accounts/users/edit.html#tab"]
    assert "<h1" not in html and OOB_TAB_BAR in html and 'name="username"' in html
    assert [active for _, active in tab_links(html)] == [True, False]


@pytest.mark.parametrize(
    "actor, target", [("helios_om", "owner"), ("helios_admin", "helios_admin")]
)
def test_select_role_is_hidden_and_refused_where_the_role_may_not_be_changed(
    tenants, client_for, actor, target
):
    # An O&M engineer changes nobody's role; nobody changes their own.
    user = getattr(tenants, target)
    client = client_for(getattr(tenants, actor))
    for headers in ({}, TAB_CLICK):
        html = client.get(url("user_edit", user.pk), headers=headers).content.decode()
        assert tab_links(html) == [(url("user_edit", user.pk), True)]
        assert url("user_role", user.pk) not in html
        assert client.get(url("user_role", user.pk), headers=headers).status_code == 403


@pytest.mark.matrix("accounts:user_edit", "accounts:user_role")
def test_a_user_tab_click_is_checked_like_the_page(tenants, client_for):
    target = tenants.sunfix_om
    assert_matrix(
        tenants,
        client_for,
        url("user_edit", target.pk),
        Expect(admin=200, om=200, owner=404),
        headers=TAB_CLICK,
    )
    assert_matrix(
        tenants,
        client_for,
        url("user_role", target.pk),
        Expect(admin=200, om=403, owner=404),
        headers=TAB_CLICK,
    )


# --- In a browser -------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_tabs_switch_in_place_in_a_browser(page, tenants):
    sign_in(page, tenants.helios_admin.email)
    page.goto(url("company_detail", tenants.sunfix.pk))
    page.evaluate("window.sameDocument = true")  # gone if a tab click loaded a whole page
    tabs = page.locator("#tab-panel-tabs")

    tabs.locator("text=User management").click()
    page.wait_for_url(re.compile(r"/users/$"))
    page.wait_for_selector("#tab-panel >> text=om@sunfix.example")
    assert page.evaluate("window.sameDocument") is True
    assert page.title() == "User management · SunFix Installers · MatriCloud"
    assert page.locator("#breadcrumbs .active").inner_text() == "User management"
    assert page.locator(".nav-tabs").count() == 1 and page.locator("h1").count() == 1
    assert tabs.locator("[aria-current=page]").inner_text() == "User management"

    tabs.locator("text=Company information").click()
    page.wait_for_url(re.compile(r"/companies/\d+/$"))
    page.wait_for_selector("#tab-panel >> text=Edit company")
    assert page.evaluate("window.sameDocument") is True
    assert page.title() == "SunFix Installers · MatriCloud"
    assert tabs.locator("[aria-current=page]").inner_text() == "Company information"

    page.go_back()
    page.wait_for_selector("#tab-panel >> text=om@sunfix.example")
