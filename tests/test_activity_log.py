"""Account → Activity log: administrators see the account changes of their company tree,
filter them by user, action, object and time, and download exactly what they filtered."""

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import AuditAction, AuditEvent, Role
from tests.browser import CHROMIUM, sign_in
from tests.factories import AuditEventFactory, UserFactory
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

URL = reverse("accounts:activity_log")


def download(client, query: str) -> list[list[str]]:
    response = client.get(f"{URL}?{query}&export=csv" if query else f"{URL}?export=csv")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.matrix("accounts:activity_log")
def test_only_administrators_open_the_activity_log(tenants, client_for):
    # A foreign administrator opens their own tenant's log (200, without Helios' rows).
    assert_matrix(tenants, client_for, URL, Expect.tenant_wide(admin=200, om=403, owner=403))


def test_a_change_made_through_the_portal_shows_with_its_before_and_after(tenants, client_for):
    om = UserFactory(company=tenants.sunfix, role=Role.OM, email="tech@sunfix.example")
    services.change_role(om, acting_user=tenants.helios_admin, role=Role.ADMIN)

    page = client_for(tenants.helios_admin).get(URL)
    html = page.content.decode()
    assert page.status_code == 200
    assert "tech@sunfix.example" in html
    assert "Role changed" in html
    assert "Role: O&amp;M engineer → Administrator" in html
    assert "admin@helios.example" in html


def test_a_foreign_administrator_sees_none_of_another_tenants_changes(tenants, client_for):
    services.change_role(tenants.sunfix_om, acting_user=tenants.helios_admin, role=Role.ADMIN)
    AuditEventFactory(actor=tenants.nordlicht_admin)

    foreign = client_for(tenants.nordlicht_admin)
    rows = download(foreign, "")
    assert [row[1] for row in rows[1:]] == ["admin@nordlicht.example"]
    table = foreign.get(URL).content.decode().split("<table", 1)[1]
    assert "om@sunfix.example" not in table and "Role changed" not in table


def test_filters_select_by_user_action_object_and_time_and_the_download_matches(
    tenants, client_for
):
    now = timezone.now()
    old = AuditEventFactory(actor=tenants.helios_admin, action=AuditAction.USER_EDITED)
    AuditEvent.objects.filter(pk=old.pk).update(occurred_at=now - dt.timedelta(days=10))
    AuditEventFactory(
        actor=tenants.helios_admin,
        action=AuditAction.COMPANY_EDITED,
        object_type="accounts.company",
        object_id=str(tenants.sunfix.pk),
        object_label="SunFix Installers",
        before={"address": "Old street 1"},
        after={"address": "New street 2"},
    )
    AuditEventFactory(actor=tenants.sunfix_admin, action=AuditAction.USER_EDITED)
    client = client_for(tenants.helios_admin)

    by_action = download(client, "action=company.edited")
    assert len(by_action) == 2
    assert by_action[1][2:] == [
        "Company edited",
        "SunFix Installers",
        "Address: Old street 1 → New street 2",
    ]
    by_user = download(client, f"actor={tenants.sunfix_admin.pk}")
    assert [row[1] for row in by_user[1:]] == ["admin@sunfix.example"]
    by_object = download(client, "object=sunfix&object_type=accounts.company")
    assert [row[3] for row in by_object[1:]] == ["SunFix Installers"]
    today = timezone.localdate(now).isoformat()
    recent = download(client, f"date_from={today}&date_to={today}")
    assert len(recent) == 3  # header + the two events of today
    everything = download(client, "")
    assert len(everything) == 4

    # The page shows the same rows the download selected.
    table = client.get(f"{URL}?action=company.edited").content.decode().split("<table", 1)[1]
    assert "SunFix Installers" in table and "admin@sunfix.example" not in table


def test_a_start_after_the_end_is_refused_with_a_message(tenants, client_for):
    response = client_for(tenants.helios_admin).get(
        f"{URL}?date_from=2026-12-07&date_to=2026-12-01"
    )
    assert "The start date must not be after the end date." in response.content.decode()


def test_an_empty_log_says_why(tenants, client_for):
    html = client_for(tenants.helios_admin).get(URL).content.decode()
    assert "No account changes yet" in html


def test_administrators_find_the_log_from_the_company_page(tenants, client_for):
    link = f'href="{URL}"'
    assert (
        link
        in client_for(tenants.helios_admin).get(reverse("accounts:company_list")).content.decode()
    )
    assert (
        link
        not in client_for(tenants.helios_om).get(reverse("accounts:company_list")).content.decode()
    )


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_an_administrator_filters_the_log_by_action(page, tenants, shots):
    services.change_role(tenants.sunfix_om, acting_user=tenants.helios_admin, role=Role.ADMIN)
    services.update_company(
        tenants.sunfix, acting_user=tenants.helios_admin, address="Sonnenstraße 4, Rosenheim"
    )
    services.reset_user_password(tenants.owner, acting_user=tenants.sunfix_admin)
    sign_in(page, tenants.helios_admin.email)
    page.goto("/account/companies/")
    page.get_by_role("link", name="Activity log").click()
    page.wait_for_url(re.compile(r"/account/activity/$"))
    assert page.locator("#activity-table tbody tr").count() == 3
    page.screenshot(path=shots / "activity-log.png")

    page.select_option("select[name=action]", "user.role_changed")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"action=user.role_changed"))
    rows = page.locator("#activity-table tbody tr")
    assert rows.count() == 1
    assert "Role: O&M engineer → Administrator" in rows.first.inner_text()
