"""The guide's account journeys in a real browser (headless Chromium driven by Playwright).

Set MATRICLOUD_SCREENSHOTS=1 to write the README's screenshots to docs/screenshots/ at
1366×768; otherwise they go to a temporary folder, so every run still renders each page.
"""

import re
from pathlib import Path

import pytest
from django.core import mail

from accounts.models import Company, Role, User
from tests.browser import CHROMIUM, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.django_db(transaction=True),
]


def test_installer_registers_under_its_distributor_then_signs_in(page, tenants, shots):
    page.goto("/account/login/")
    page.screenshot(path=shots / "login.png")
    page.click("text=Sign up now")
    page.check("#account-type-installer")
    page.click("button[type=submit]")

    page.fill("input[name=company_name]", "Alpenstrom Solartechnik")
    page.select_option("select[name=country]", "AT")
    page.fill("input[name=email]", "office@alpenstrom.example")
    page.fill("input[name=password1]", "Sunny-Roof42")
    page.fill("input[name=password2]", "Sunny-Roof42")
    page.click("button[data-send-code]")
    page.wait_for_selector("[data-code-status] >> text=office@alpenstrom.example")
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    page.fill("input[name=code]", code)
    page.fill("input[name=access_code]", tenants.helios.access_code)
    page.check("input[name=accept_terms]")
    page.screenshot(path=shots / "registration.png", full_page=True)
    page.click("button[type=submit]:has-text('Submit')")
    page.wait_for_url(re.compile(r"/account/login/"))
    assert page.is_visible(".alert-success")
    company = Company.objects.get(name="Alpenstrom Solartechnik")
    assert company.superior == tenants.helios
    assert User.objects.get(email="office@alpenstrom.example").role == Role.ADMIN

    page.fill("input[name=username]", "office@alpenstrom.example")
    page.fill("input[name=password]", "Sunny-Roof42")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    assert page.is_visible("text=Alpenstrom Solartechnik")


def test_administrator_finds_company_in_tree_and_adds_an_om_engineer(page, tenants, shots):
    sign_in(page, tenants.helios_admin.email)
    page.click(".sidebar >> text=Account")
    page.wait_for_selector(".company-tree >> text=SunFix Installers")
    page.screenshot(path=shots / "company-tree.png")

    page.click(".company-tree >> text=SunFix Installers")
    page.click("text=User management")
    page.wait_for_selector("text=om@sunfix.example")
    page.screenshot(path=shots / "users.png")

    page.click("text=Add User")
    page.fill("input[name=username]", "Marta Kessler")
    page.fill("input[name=email]", "marta@sunfix.example")
    page.screenshot(path=shots / "add-user.png")
    page.click("text=Next")
    page.check("input[name=role][value=om]")
    page.click("button[type=submit]:has-text('Confirm')")
    page.wait_for_selector("text=marta@sunfix.example")

    created = User.objects.get(email="marta@sunfix.example")
    assert (created.company, created.role, created.password_is_temporary) == (
        tenants.sunfix,
        Role.OM,
        True,
    )
    assert "marta@sunfix.example" in mail.outbox[-1].to


def test_owner_has_no_account_menu(page, tenants):
    sign_in(page, tenants.owner.email)
    assert not page.is_visible(".sidebar >> text=Account")
    response = page.goto("/account/companies/")
    assert response.status == 403
    assert page.is_visible("text=Access denied")
