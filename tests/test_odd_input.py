"""Odd input is a 4xx or a form error, never a 500 (security finding 5): null bytes, digits of
other scripts, huge or non-finite numbers and reversed ranges, in the query string of every list
view and in every kind of form field. The hypothesis tests are derandomized, so CI sees the
same examples on every run."""

from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.registermap import RegisterMap, RegisterValueError
from maintenance.models import RemoteOperation
from maintenance.remote import OperationRefused, write_registers
from tests.factories import GatewayFactory, InverterFactory, RemoteOperationFactory, SiteFactory

pytestmark = pytest.mark.django_db

TH = "ECH10K-TH-EU"
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "parameter-dialog"}
ODD_VALUES = [
    "\x00",
    "a\x00b",
    "²",
    "٣",
    "١٢٣",
    "߁",
    "1e30",
    "1e9999",
    "-1e9999",
    "1e-9999",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "0",
    "9" * 40,
    "9" * 5000,
    "",
    " ",
    "‮",
    "'; --",
    "%",
    "0x10",
    "2024-02-30",
    "9999-12-31",
    "0001-01-01",
    "99:99",
    "x" * 2000,
]
ODD = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=20))
FUZZ = settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def inverter(tenants):
    gateway = GatewayFactory(site=SiteFactory(company=tenants.helios, name="Helios Roof"))
    RemoteOperationFactory(gateway=gateway, user=tenants.helios_admin)
    return InverterFactory(serial_number="INVODD0001", gateway=gateway)


@pytest.fixture
def admin(tenants, client_for):
    return client_for(tenants.helios_admin)


def write_url(inverter, key):
    return reverse("maintenance:parameter_write", args=[inverter.pk, key])


# --- The URLs of the finding ------------------------------------------------------------------


def test_a_null_byte_in_the_user_search_is_a_400_with_the_reason(tenants, admin):
    response = admin.get(reverse("accounts:company_users", args=[tenants.helios.pk]), {"q": "\x00"})
    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()


def test_a_null_byte_in_the_company_search_is_a_400_with_the_reason(tenants, admin):
    response = admin.get(reverse("accounts:company_list"), {"q": "\x00"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Null characters are not allowed." in page
    assert 'class="company-tree"' not in page  # no tree for a refused search


def test_a_null_byte_in_the_inverter_search_is_a_400_with_the_reason(admin, inverter):
    response = admin.get(reverse("maintenance:parameters"), {"iq": "\x00"})
    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()


@pytest.mark.parametrize("value", ["²", "٣", "1e3", "-1", "9" * 40])
def test_an_inverter_id_that_is_not_ascii_digits_is_not_found(admin, inverter, value):
    response = admin.get(reverse("maintenance:parameters"), {"inverter": value})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1e30", "Enter a number within 0 to 100 %."),
        ("1e9999", "Enter a number within 0 to 100 %."),
        ("-1e9999", "Enter a number within 0 to 100 %."),
        ("nan", "Enter a number within 0 to 100 %."),
        ("inf", "Enter a number within 0 to 100 %."),
        ("-inf", "Enter a number within 0 to 100 %."),
        ("1e-9999", "Ensure that there are no more than 6 decimal places."),
    ],
)
def test_a_write_of_a_huge_or_non_finite_number_is_a_field_error(admin, inverter, value, error):
    before = RemoteOperation.objects.count()
    response = admin.post(
        write_url(inverter, "active_power_limit"), {"value": value}, headers=HTMX_DIALOG
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert RemoteOperation.objects.count() == before


@pytest.mark.parametrize("value", [1e30, Decimal("1e9999"), Decimal("-1e9999"), "1e9999"])
def test_the_register_map_refuses_huge_numbers_in_words(value):
    with pytest.raises(RegisterValueError) as refused:
        RegisterMap.for_model(TH).encode_write("active_power_limit", value)
    assert "out of range" in refused.value.message


def test_the_service_refuses_a_huge_number(tenants, inverter):
    with pytest.raises(OperationRefused):
        write_registers(
            inverter, {"active_power_limit": Decimal("1e9999")}, acting_user=tenants.helios_admin
        )


def test_reversed_and_impossible_dates_are_form_errors(admin):
    url = reverse("maintenance:operations")
    reversed_range = admin.get(url, {"date_from": "2025-03-05", "date_to": "2025-03-01"})
    far = admin.get(url, {"date_to": "9999-12-31"})
    assert reversed_range.status_code == far.status_code == 200
    assert "The start date must not be after the end date." in reversed_range.content.decode()
    assert far.context["filter_form"].errors["date_to"]


# --- Every list view's query string -----------------------------------------------------------

LIST_VIEWS = {
    "companies": (lambda t, i: reverse("accounts:company_list"), ["q"]),
    "users": (
        lambda t, i: reverse("accounts:company_users", args=[t.helios.pk]),
        ["q", "page", "per_page", "sort"],
    ),
    "operations": (
        lambda t, i: reverse("maintenance:operations"),
        ["site", "sn", "user", "kind", "state", "date_from", "date_to", "page", "per_page", "sort"],
    ),
    "operations_csv": (
        lambda t, i: reverse("maintenance:operations_csv"),
        ["site", "sn", "user", "kind", "state", "date_from", "date_to"],
    ),
    "parameters": (
        lambda t, i: reverse("maintenance:parameters"),
        ["inverter", "iq", "ipage", "mode"],
    ),
    "parameters_of_an_inverter": (
        lambda t, i: f"{reverse('maintenance:parameters')}?inverter={i.pk}",
        ["q", "group", "page", "mode", "iq", "ipage"],
    ),
}


@pytest.mark.parametrize("view", LIST_VIEWS)
@FUZZ
@given(data=st.data())
def test_list_views_answer_odd_query_strings_without_a_server_error(
    tenants, admin, inverter, view, data
):
    url_of, names = LIST_VIEWS[view]
    url = url_of(tenants, inverter)
    params = data.draw(st.dictionaries(st.sampled_from(names), ODD, min_size=1, max_size=3))
    joiner = "&" if "?" in url else "?"

    response = admin.get(f"{url}{joiner}{urlencode(params)}")
    assert response.status_code < 500, (url, params)


# --- Every kind of form field -----------------------------------------------------------------


def register_form(tenants):
    return {
        "company_name": "Acme",
        "country": "AT",
        "email": "new@example.com",
        "password1": "Kestrel-42!x",
        "password2": "Kestrel-42!x",
        "code": "123456",
        "access_code": tenants.sunfix.access_code,
        "accept_terms": "on",
    }


# name: (url, signed in?, the form's data, the fields to spoil). Field kinds: char, email,
# choice, model choice, boolean, decimal, time, multiple choice, date (the operations filter
# above). No form of the portal has an integer, float or date-time field.
FORMS = {
    "register": (
        lambda t, i: reverse("accounts:register_form", args=["installer"]),
        False,
        register_form,
        ["company_name", "country", "email", "code", "access_code", "accept_terms"],
    ),
    "send_code": (
        lambda t, i: reverse("accounts:send_code"),
        False,
        lambda t: {"purpose": "register", "email": "new@example.com"},
        ["purpose", "email"],
    ),
    "forgot_password": (
        lambda t, i: reverse("accounts:forgot_password"),
        False,
        lambda t: {"email": "om@helios.example", "code": "123456"},
        ["email", "code", "new_password1"],
    ),
    "company_add": (
        lambda t, i: reverse("accounts:company_add"),
        True,
        lambda t: {"name": "Acme", "type": "installer", "superior": t.helios.pk, "country": "DE"},
        ["name", "type", "superior", "country"],
    ),
    "user_add": (
        lambda t, i: reverse("accounts:user_add", args=[t.helios.pk]),
        True,
        lambda t: {
            "username": "Tech",
            "email": "tech@helios.example",
            "role": "om",
            "country": "IT",
            "password_mode": "automatic",
        },
        ["username", "email", "role", "country", "supervisor", "password_mode"],
    ),
    "write_number": (
        lambda t, i: write_url(i, "active_power_limit"),
        True,
        lambda t: {},
        ["value"],
    ),
    "write_signed_decimal": (
        lambda t, i: write_url(i, "power_factor_setpoint"),
        True,
        lambda t: {},
        ["value"],
    ),
    "write_choice": (lambda t, i: write_url(i, "work_mode"), True, lambda t: {}, ["value"]),
    "write_time": (lambda t, i: write_url(i, "tou1_start"), True, lambda t: {}, ["value"]),
    "write_flags": (lambda t, i: write_url(i, "tou1_weekdays"), True, lambda t: {}, ["value"]),
    "read": (
        lambda t, i: reverse("maintenance:parameter_read", args=[i.pk]),
        True,
        lambda t: {},
        ["key", "group"],
    ),
}


@pytest.mark.parametrize("form", FORMS)
@FUZZ
@given(data=st.data())
def test_form_fields_answer_odd_values_without_a_server_error(
    tenants, client_for, inverter, form, data
):
    url_of, signed_in, base, names = FORMS[form]
    client = client_for(tenants.helios_admin if signed_in else None)
    spoiled = data.draw(st.dictionaries(st.sampled_from(names), ODD, min_size=1, max_size=3))

    response = client.post(url_of(tenants, inverter), {**base(tenants), **spoiled})

    assert response.status_code < 500, (form, spoiled)
