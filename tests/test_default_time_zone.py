"""A new user's time zone: from their country, else their company's, so times do not show in
UTC until they open their profile; they can still choose another there."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts import services
from accounts.models import Role
from accounts.registration import REGISTRATION_COUNTRIES, register_account
from accounts.time_zones import default_time_zone, is_offered
from tests.factories import CompanyFactory, profile_form_data

PASSWORD = "Copper-Wind3$"


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("DE", "Europe/Berlin"),
        ("de", "Europe/Berlin"),
        ("IT", "Europe/Rome"),
        ("NL", "Europe/Amsterdam"),  # its own city, not the Brussels zone it shares
        ("ES", "Europe/Madrid"),  # the mainland, not the Canary Islands
        ("PT", "Europe/Lisbon"),
        ("UA", "Europe/Kyiv"),  # not Crimea, which the table lists first
        ("US", "America/New_York"),  # no state is known: the most populous zone
        ("CA", "America/Toronto"),  # not Newfoundland, which the table lists first
        ("MX", "America/Mexico_City"),
        ("AQ", "UTC"),  # Antarctica: no zone the profile offers
        ("XX", "UTC"),
        ("", "UTC"),
    ],
)
def test_the_zone_of_a_country(country, zone):
    assert default_time_zone(country) == zone


def test_every_registration_country_gets_a_zone_the_profile_offers():
    for country in REGISTRATION_COUNTRIES:
        zone = default_time_zone(country)
        assert zone != "UTC" and is_offered(zone), country


def add_user(tenants, company, **kwargs):
    return services.create_user(
        acting_user=tenants.helios_admin,
        company=company,
        email=kwargs.pop("email", "nina@example.com"),
        username="Nina",
        role=Role.OM,
        password=PASSWORD,
        **kwargs,
    )


def test_a_user_of_a_german_company_starts_in_berlin(tenants):
    assert add_user(tenants, tenants.sunfix).time_zone == "Europe/Berlin"


def test_the_users_own_country_comes_first(tenants):
    user = add_user(tenants, tenants.sunfix, country="US")
    assert user.time_zone == "America/New_York"


def test_a_us_company(tenants):
    company = CompanyFactory(superior=tenants.helios, name="Sunbelt Solar", country="US")
    assert add_user(tenants, company).time_zone == "America/New_York"


def test_a_chosen_zone_is_kept(tenants):
    user = add_user(tenants, tenants.sunfix, time_zone="America/Chicago")
    assert user.time_zone == "America/Chicago"


def test_an_unknown_zone_is_refused(tenants):
    with pytest.raises(ValidationError) as refused:
        add_user(tenants, tenants.sunfix, time_zone="Mars/Olympus")
    assert "time_zone" in refused.value.message_dict


def test_the_add_user_page_applies_the_company_zone(tenants, client_for):
    data = {
        "username": "Nina Neu",
        "country": "IT",
        "email": "nina@sunfix.example",
        "supervisor": "",
        "description": "",
        "password_mode": "custom",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "role": Role.OM,
    }
    client = client_for(tenants.sunfix_admin)
    response = client.post(reverse("accounts:user_add", args=[tenants.sunfix.pk]), data)
    assert response.status_code == 302
    assert tenants.sunfix.users.get(email="nina@sunfix.example").time_zone == "Europe/Rome"


@pytest.mark.parametrize(("country", "zone"), [("DE", "Europe/Berlin"), ("US", "America/New_York")])
def test_registration(tenants, country, zone):
    user = register_account(
        account_type="installer",
        company_name="Solar One",
        country=country,
        email="info@solarone.example",
        password=PASSWORD,
        access_code=tenants.helios.access_code,
    )
    assert user.time_zone == zone


def test_the_profile_shows_the_zone_and_the_user_can_change_it(tenants, client_for):
    user = add_user(tenants, tenants.sunfix, country="US")
    client = client_for(user)
    form = client.get(reverse("accounts:profile")).context["form"]
    assert form["time_zone"].value() == "America/New_York"
    response = client.post(
        reverse("accounts:profile"), profile_form_data(user, time_zone="America/Los_Angeles")
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.time_zone == "America/Los_Angeles"
