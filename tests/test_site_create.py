"""Create site (guide §6.1.2): the three-step dialog — an optional gateway by SN, the site's
information with region defaults, and the account — that stores nothing until Confirm and
then creates everything at once."""

import html
import re
from pathlib import Path

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from guardian.shortcuts import assign_perm

from accounts.models import AuditEvent, Role, User
from fleet import services
from fleet.regions import REGION_DEFAULTS
from gateways.models import Gateway
from inverters.models import Inverter, InverterLatest
from sites.models import Site
from tests.browser import CHROMIUM, pick_existing_owner, sign_in
from tests.factories import (
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteFactory,
    UserFactory,
)
from tests.permission_matrix import Expect, assert_matrix

pytestmark = pytest.mark.django_db

URL = reverse("sites:create")
HTMX = {"HX-Request": "true", "HX-Target": "site-create-dialog"}

SITE_INFO = {
    "name": "Solar Barn",
    "address": "Hauptstraße 1, Berlin",
    "country": "DE",
    "time_zone": "Europe/Berlin",
    "site_type": "residential",
    "on_grid": "true",
    "currency": "EUR",
    "temperature_unit": "C",
    "capacity_kwp": "9.8",
    "tariff_per_kwh": "0.30",
    "latitude": "52.52",
    "longitude": "13.405",
}


class Dialog:
    """The dialog as a browser drives it: each answer's signed state goes into the next post."""

    def __init__(self, client):
        self.client = client
        self.state = ""
        self.html = ""

    def open(self):
        response = self.client.get(URL, headers=HTMX)
        assert response.status_code == 200
        self._read(response)
        return self

    def post(self, step: int, data: dict, nav: str = "next"):
        response = self.client.post(
            URL, {"state": self.state, "step": step, "nav": nav, **data}, headers=HTMX
        )
        if response.status_code == 200:
            self._read(response)
        return response

    def _read(self, response):
        self.html = response.content.decode()
        found = re.search(r'name="state" value="([^"]*)"', self.html)
        self.state = html.unescape(found.group(1)) if found else ""

    @property
    def step(self) -> int:
        return int(re.search(r'name="step" value="(\d)"', self.html).group(1))

    def errors(self) -> list[str]:
        return [
            html.unescape(e)
            for e in re.findall(r'<div class="invalid-feedback d-block">([^<]+)</div>', self.html)
        ]


@pytest.fixture
def dialog(tenants, client_for):
    return Dialog(client_for(tenants.sunfix_om)).open()


def free_gateway(company, serial="GW-FREE-1"):
    gateway = GatewayFactory(serial_number=serial, site=None, company=company)
    inverter = InverterFactory(gateway=gateway, site=None, company=company)
    InverterLatestFactory(inverter=inverter, pv_power=2400.0)
    return gateway


@pytest.mark.matrix("sites:create")
def test_create_site_is_for_staff(tenants, client_for):
    assert_matrix(tenants, client_for, URL, Expect.tenant_wide(admin=200, om=200, owner=403))


@pytest.mark.matrix("sites:create")
def test_owners_cannot_post_the_dialog(tenants, client_for):
    assert_matrix(
        tenants,
        client_for,
        URL,
        Expect.tenant_wide(admin=200, om=200, owner=403),
        method="post",
        data={"step": 1, "nav": "next"},
    )
    assert not Site.objects.exists()


def test_the_whole_dialog_with_a_gateway_and_a_new_owner(
    tenants, dialog, client_for, django_capture_on_commit_callbacks
):
    gateway = free_gateway(tenants.sunfix)
    assert dialog.step == 1 and "Gateway information" in dialog.html
    dialog.post(1, {"serial_number": " GW-FREE-1 "})
    assert dialog.step == 2 and "Gateway GW-FREE-1 will be bound to this site." in dialog.html
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    assert dialog.step == 3
    assert not Site.objects.exists()  # nothing before Confirm
    with django_capture_on_commit_callbacks(execute=True):
        response = dialog.post(
            3,
            {
                "account_mode": "new",
                "new_company": tenants.sunfix.pk,
                "language": "de",
                "email": "New.Owner@Example.com",
            },
            nav="confirm",
        )
    site = Site.objects.get()
    assert response["HX-Redirect"] == reverse("sites:detail", args=[site.pk])
    assert site.name == "Solar Barn" and site.company == tenants.sunfix
    assert str(site.capacity_kwp) == "9.80" and site.time_zone == "Europe/Berlin"
    gateway.refresh_from_db()
    assert gateway.site == site
    assert InverterLatest.objects.get(inverter__gateway=gateway).site == site
    owner = User.objects.get(email="new.owner@example.com")
    assert owner.role == Role.OWNER and owner.company == tenants.sunfix
    assert owner.language == "de" and owner.password_is_temporary
    assert list(Site.objects.visible_to(owner)) == [site]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.owner@example.com"]
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"site.created", "site.gateway_bound", "site.distributed", "user.created"} <= actions
    # The owner sees the new site with its live power in the list.
    page = client_for(owner).get(reverse("sites:list")).content.decode()
    assert "Solar Barn" in page and "2,4 kW" in page  # in the owner's language


def test_select_an_existing_owner(tenants, dialog):
    dialog.post(1, {"serial_number": ""})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    assert "Olivia Owner" in dialog.html  # the owner list of step 3
    assert "SunFix O&amp;M" not in dialog.html.split('id="owner-choices"', 1)[1]
    dialog.post(3, {"account_mode": "existing"}, nav="confirm")
    assert "Please select an account." in dialog.html and not Site.objects.exists()
    dialog.post(3, {"account_mode": "existing", "owner": tenants.owner.pk}, nav="confirm")
    site = Site.objects.get()
    assert list(Site.objects.visible_to(tenants.owner)) == [site]
    assert Gateway.objects.filter(site=site).count() == 0


def test_temporarily_not_associated(tenants, dialog):
    dialog.post(1, {})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    response = dialog.post(3, {"account_mode": "none"}, nav="confirm")
    assert response.status_code == 200 and "HX-Redirect" in response
    site = Site.objects.get()
    assert not Site.objects.visible_to(tenants.owner).exists()
    assert site.name == "Solar Barn"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unknown", "Unknown gateway SN “GW-X”."),
        ("foreign", "Unknown gateway SN “GW-X”."),
        ("bound", "Gateway GW-X is already bound to the site “Old Site”."),
    ],
)
def test_step_one_refuses_gateways_that_cannot_be_bound(tenants, dialog, setup, message):
    if setup == "foreign":
        free_gateway(tenants.nordlicht, "GW-X")
    elif setup == "bound":
        GatewayFactory(
            serial_number="GW-X", site=SiteFactory(company=tenants.sunfix, name="Old Site")
        )
    dialog.post(1, {"serial_number": "GW-X"})
    assert dialog.step == 1
    assert dialog.errors() == [message]


def test_an_unclaimed_platform_gateway_can_be_added(tenants, dialog):
    free_gateway(tenants.platform, "GW-NEW")
    dialog.post(1, {"serial_number": "GW-NEW"})
    assert dialog.step == 2


@pytest.mark.parametrize(
    ("changes", "field_errors"),
    [
        ({"latitude": "90.5"}, ["The latitude must be between -90 and 90 degrees."]),
        ({"longitude": "-180.01"}, ["The longitude must be between -180 and 180 degrees."]),
        ({"tariff_per_kwh": "-0.01"}, ["The tariff cannot be negative."]),
        ({"capacity_kwp": "0"}, ["The capacity must be greater than zero."]),
        ({"name": "  "}, ["This field is required."]),
        (
            {"time_zone": "Mars/Olympus"},
            ["Select a valid choice. Mars/Olympus is not one of the available choices."],
        ),
    ],
)
def test_step_two_refuses_bad_site_information(tenants, dialog, changes, field_errors):
    dialog.post(1, {})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk, **changes})
    assert dialog.step == 2
    assert dialog.errors() == field_errors


def test_step_two_refuses_a_foreign_company(tenants, dialog):
    dialog.post(1, {})
    dialog.post(2, {**SITE_INFO, "company": tenants.nordlicht.pk})
    assert dialog.step == 2
    assert any("Select a valid choice" in error for error in dialog.errors())


def test_blank_coordinates_take_the_regions_centre(tenants, dialog):
    dialog.post(1, {})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk, "latitude": "", "longitude": ""})
    dialog.post(3, {"account_mode": "none"}, nav="confirm")
    site = Site.objects.get()
    assert site.latitude == REGION_DEFAULTS["DE"].latitude
    assert site.longitude == REGION_DEFAULTS["DE"].longitude


def test_step_three_refuses_an_existing_email(tenants, dialog):
    dialog.post(1, {})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    dialog.post(
        3,
        {
            "account_mode": "new",
            "new_company": tenants.sunfix.pk,
            "language": "en",
            "email": "OWNER@sunfix.example",
        },
        nav="confirm",
    )
    assert dialog.step == 3
    assert dialog.errors() == ["A user with this email address already exists."]
    assert not Site.objects.exists()


def test_choosing_a_region_fills_in_its_defaults(tenants, client_for):
    client = client_for(tenants.sunfix_om)
    response = client.get(
        URL,
        {**SITE_INFO, "prefill": "region", "country": "US", "name": "Texas Ranch"},
        headers=HTMX,
    )
    page = response.content.decode()
    assert 'value="America/New_York" selected' in page
    assert 'value="USD" selected' in page
    assert 'value="F" selected' in page
    assert 'value="0.16"' in page
    assert 'value="Texas Ranch"' in page  # what was typed stays
    assert 'name="step" value="2"' in page
    assert not Site.objects.exists()


def test_previous_keeps_what_was_typed(tenants, dialog):
    dialog.post(1, {"serial_number": ""})
    dialog.post(
        2, {**SITE_INFO, "company": tenants.sunfix.pk, "name": "Typed Name"}, nav="previous"
    )
    assert dialog.step == 1
    dialog.post(1, {"serial_number": ""})
    assert dialog.step == 2 and 'value="Typed Name"' in dialog.html


def test_an_abandoned_dialog_creates_nothing(tenants, dialog):
    gateway = free_gateway(tenants.sunfix)
    users = User.objects.count()
    dialog.post(1, {"serial_number": gateway.serial_number})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    dialog.post(
        3,
        {
            "account_mode": "new",
            "new_company": tenants.sunfix.pk,
            "language": "en",
            "email": "x@example.com",
        },
        nav="previous",
    )
    # …and the user closes the dialog.
    assert not Site.objects.exists()
    assert User.objects.count() == users
    gateway.refresh_from_db()
    assert gateway.site is None
    assert not AuditEvent.objects.exists()
    assert not mail.outbox


def test_a_gateway_bound_meanwhile_sends_the_user_back_to_step_one(tenants, dialog):
    gateway = free_gateway(tenants.sunfix)
    dialog.post(1, {"serial_number": gateway.serial_number})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    other = SiteFactory(company=tenants.sunfix, name="Quicker Site")
    Gateway.objects.filter(pk=gateway.pk).update(site=other)
    dialog.post(3, {"account_mode": "none"}, nav="confirm")
    assert dialog.step == 1
    assert dialog.errors() == ["Gateway GW-FREE-1 is already bound to the site “Quicker Site”."]
    assert list(Site.objects.all()) == [other]


def test_a_refusal_at_confirm_rolls_everything_back(tenants):
    """An email taken between step 3 and Confirm: the site and the binding roll back."""
    gateway = free_gateway(tenants.sunfix)
    with pytest.raises(ValidationError) as refused:
        services.create_site(
            acting_user=tenants.sunfix_om,
            company=tenants.sunfix,
            fields={k: v for k, v in SITE_INFO.items()} | {"on_grid": True},
            gateway=gateway.serial_number,
            new_owner={"company": tenants.sunfix, "email": "owner@sunfix.example"},
        )
    assert refused.value.message_dict == {
        "email": ["A user with this email address already exists."]
    }
    assert not Site.objects.exists()
    gateway.refresh_from_db()
    assert gateway.site is None
    assert Inverter.objects.get(gateway=gateway).site is None
    assert not AuditEvent.objects.exists()


def test_a_tampered_or_foreign_state_is_ignored(tenants, client_for, dialog):
    dialog.post(1, {"serial_number": ""})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    stolen = dialog.state
    other = Dialog(client_for(tenants.helios_om)).open()
    other.state = stolen
    other.post(3, {"account_mode": "none"}, nav="confirm")
    # The other user's state is not theirs: step 1 and 2 are empty, so step 2 asks again.
    assert not Site.objects.exists()
    assert other.step == 2
    dialog.state = stolen[:-3] + "xyz"
    dialog.post(3, {"account_mode": "none"}, nav="confirm")
    assert not Site.objects.exists()


def test_the_page_without_javascript(tenants, client_for):
    client = client_for(tenants.sunfix_om)
    page = client.get(URL).content.decode()
    assert "<h1" in page and "Create Site" in page
    response = client.post(URL, {"step": 1, "nav": "next", "serial_number": ""})
    assert 'name="step" value="2"' in response.content.decode()


def test_an_owner_list_search_in_step_three(tenants, client_for):
    UserFactory(
        company=tenants.sunfix, role=Role.OWNER, username="Zed Owner", email="zed@x.example"
    )
    client = client_for(tenants.sunfix_om)
    html_ = client.get(URL, {"part": "owners", "owner_q": "zed"}, headers=HTMX).content.decode()
    assert "Zed Owner" in html_ and "Olivia Owner" not in html_
    assert 'name="owner"' in html_


def test_the_create_button_opens_the_dialog_from_the_list(tenants, client_for):
    page = client_for(tenants.sunfix_om).get(reverse("sites:list")).content.decode()
    assert f'hx-get="{URL}"' in page and 'id="site-create-modal"' in page
    assign_perm("pv_sites.view_site", tenants.owner, SiteFactory(company=tenants.sunfix))
    assert (
        'id="site-create-modal"'
        not in client_for(tenants.owner).get(reverse("sites:list")).content.decode()
    )


def test_the_demos_spare_gateways_can_be_added_by_the_demo_om(tenants, dialog):
    """The demo's unbound gateways (matricloud/demo_fleet.py) are simulated like the others
    and can be added in Create site: one of SunFix's, one unclaimed."""
    from matricloud.demo_fleet import SPARE_GATEWAYS, ensure_spare_gateways
    from matricloud.fleet_file import fleet_rows

    made = ensure_spare_gateways()
    assert ensure_spare_gateways()["created"] == {"gateways": 0, "inverters": 0}
    rows = {row["serial"]: row for row in fleet_rows()}
    for spare in SPARE_GATEWAYS:
        assert rows[spare.serial]["site"] is None
        assert [inv["serial"] for inv in rows[spare.serial]["inverters"]] == [
            serial for serial, _model in spare.inverters
        ]
    assert Gateway.objects.get(serial_number=made["gateways"][1]).company == tenants.platform
    dialog.post(1, {"serial_number": made["gateways"][1]})
    dialog.post(2, {**SITE_INFO, "company": tenants.sunfix.pk})
    dialog.post(3, {"account_mode": "none"}, nav="confirm")
    site = Site.objects.get()
    assert set(Inverter.objects.filter(site=site).values_list("company", flat=True)) == {
        tenants.sunfix.pk
    }
    assert services.find_bindable_gateway(made["gateways"][0], acting_user=tenants.sunfix_om)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_create_a_site_in_the_browser(page, tenants, shots):
    """O&M in the browser: Create Site → gateway SN → region defaults → an existing owner →
    the new site's page; then the list shows it and its row menu opens Rename."""
    from playwright.sync_api import expect

    free_gateway(tenants.sunfix, "GW-BROWSER")
    # Bootstrap fades a modal in only after its backdrop; axe-core, run after the htmx swap
    # that fills the dialog, could otherwise meet the dialog half transparent.
    page.emulate_media(reduced_motion="reduce")
    sign_in(page, "om@sunfix.example")
    page.goto("/site/")
    page.get_by_text("No sites yet.").wait_for()
    page.click("a:has-text('Create Site')")
    dialog = page.locator("#site-create-dialog")
    dialog.locator("input[name=serial_number]").fill("GW-NOPE")
    dialog.locator("button:has-text('Next')").click()
    dialog.get_by_text("Unknown gateway SN “GW-NOPE”.").wait_for()
    dialog.locator("input[name=serial_number]").fill("GW-BROWSER")
    dialog.locator("button:has-text('Next')").click()
    dialog.get_by_text("Gateway GW-BROWSER will be bound to this site.").wait_for()
    dialog.locator("input[name=name]").fill("Browser Barn")
    dialog.locator("input[name=address]").fill("Main Street 1, Springfield")
    dialog.locator("select[name=country]").select_option("US")
    expect(dialog.locator("select[name=currency]")).to_have_value("USD")
    assert dialog.locator("select[name=time_zone]").input_value() == "America/New_York"
    assert dialog.locator("select[name=temperature_unit]").input_value() == "F"
    assert dialog.locator("input[name=tariff_per_kwh]").input_value() == "0.16"
    assert dialog.locator("input[name=name]").input_value() == "Browser Barn"
    dialog.locator("input[name=capacity_kwp]").fill("11")
    page.screenshot(path=shots / "site-create.png")
    dialog.locator("button:has-text('Next')").click()
    pick_existing_owner(dialog, "olivia", "owner@sunfix.example")
    dialog.locator("button:has-text('Confirm')").click()
    page.wait_for_url(re.compile(r"/site/\d+/$"))
    site = Site.objects.get(name="Browser Barn")
    assert site.country == "US" and site.currency == "USD"
    assert list(Site.objects.visible_to(tenants.owner)) == [site]
    page.goto("/site/")
    page.locator("table >> text=Browser Barn").wait_for()
    page.click("button[aria-label='Operations for Browser Barn']")
    page.click("a:has-text('Rename')")
    page.locator("#action-dialog input[name=name]").fill("Browser Barn East")
    page.locator("#action-dialog button:has-text('Confirm')").click()
    page.locator("table >> text=Browser Barn East").wait_for()
