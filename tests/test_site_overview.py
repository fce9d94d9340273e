"""Site → Overview (guide §6.2, §6.2.1, §6.2.2): the basic information and picture, live
values, the map and the forecast (from a local server standing in for the providers), Edit
with its refusals, the gateway and inverter lists with Add gateway, Unbind and Delete, what an
owner and a foreign tenant get, and the permission matrix of every URL of the tab.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm
from PIL import Image

from accounts.models import AuditEvent
from fleet.views.site_base import site_local_today
from gateways.models import Gateway, GatewayStatus
from inverters.models import EnergyDaily, Inverter, InverterStatus
from sites.models import Site
from tests.browser import CHROMIUM, sign_in
from tests.factories import (
    EnergyDailyFactory,
    GatewayFactory,
    InverterFactory,
    InverterLatestFactory,
    SiteFactory,
)
from tests.permission_matrix import Expect, assert_matrix
from tests.provider_server import ProviderServer, tile_png

pytestmark = pytest.mark.django_db

HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "action-dialog"}
HTMX_EDIT = {"HX-Request": "true", "HX-Target": "site-edit-dialog"}
HTMX_LIVE = {"HX-Request": "true", "HX-Target": "site-live", "HX-Trigger": "site-live"}


def url(name: str, *args) -> str:
    return reverse(f"sites:{name}", args=args)


@pytest.fixture
def site(tenants):
    """A SunFix site granted to the owner: one gateway with two inverters reporting."""
    site = SiteFactory(
        company=tenants.sunfix,
        name="Villa Sole",
        address="Via Roma 1, Milano",
        country="IT",
        latitude=Decimal("45.464194"),
        longitude=Decimal("9.189635"),
        time_zone="Europe/Rome",
        capacity_kwp=Decimal("10"),
        tariff_per_kwh=Decimal("0.2500"),
    )
    assign_perm("pv_sites.view_site", tenants.owner, site)
    gateway = GatewayFactory(
        site=site,
        serial_number="GW-VILLA-1",
        name="Garage logger",
        status=GatewayStatus.ONLINE,
        firmware_version="1.4.2",
        signal_strength=-61,
    )
    today = site_local_today(site)
    for address, (serial, power, soc, day_kwh) in enumerate(
        [("INV-A-0001", 3000.0, 60.0, 7.5), ("INV-B-0002", 2000.0, 80.0, 5.0)], start=1
    ):
        inverter = InverterFactory(
            gateway=gateway,
            serial_number=serial,
            modbus_address=address,
            status=InverterStatus.RUNNING,
            firmware_versions={"DSP": "02.07", "LCD": "02.00"},
        )
        InverterLatestFactory(inverter=inverter, pv_power=power, batt_soc=soc)
        EnergyDailyFactory(inverter=inverter, day=today, pv_kwh=day_kwh)
    return site


@pytest.fixture
def provider(settings):
    """One local server standing in for every provider; each test says how it answers."""
    with ProviderServer() as server:
        settings.GEOCODING_URL = f"{server.url}/search"
        settings.WEATHER_URL = f"{server.url}/v1/forecast"
        settings.MAP_TILE_URL = f"{server.url}/tile/{{z}}/{{y}}/{{x}}"
        settings.GEO_TIMEOUT_S = 1.0
        yield server


def edit_data(site: Site, **overrides) -> dict:
    data = {
        "name": site.name,
        "address": site.address,
        "country": str(site.country),
        "latitude": str(site.latitude),
        "longitude": str(site.longitude),
        "time_zone": site.time_zone,
        "site_type": site.site_type,
        "on_grid": "true" if site.on_grid else "false",
        "currency": site.currency,
        "temperature_unit": site.temperature_unit,
        "capacity_kwp": str(site.capacity_kwp),
        "tariff_per_kwh": str(site.tariff_per_kwh),
    }
    data.update(overrides)
    return data


def image_file(name="site.jpg", image_format="JPEG", size=(320, 240)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, "#3a7bd5").save(buffer, image_format)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type=f"image/{image_format.lower()}")


def week_in_celsius() -> dict:
    start = dt.date(2025, 6, 2)
    return {
        "daily": {
            "time": [(start + dt.timedelta(days=n)).isoformat() for n in range(7)],
            "weather_code": [0, 1, 2, 3, 61, 95, 71],
            "temperature_2m_max": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0],
            "temperature_2m_min": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, -5.0],
            "precipitation_sum": [0, 0, 0, 0, 4.2, 9.0, 1.0],
        }
    }


# --- The page -----------------------------------------------------------------------------------


def test_overview_shows_the_basic_information(tenants, client_for, site):
    response = client_for(tenants.sunfix_om).get(url("detail", site.pk))

    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Villa Sole",
        "Via Roma 1, Milano",
        "Italy",
        "45.464194° N, 9.189635° E",
        "Europe/Rome (UTC+0",
        "Residential ESS",
        "On-grid",
        "Euro (€)",
        "°C",
        "10 kWp",
        "€0.25/kWh",
        "SunFix Installers",
        "Olivia Owner",
    ):
        assert text in html, text
    assert 'class="flag me-1"' in html
    assert site.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00:00") in html


def test_numbers_follow_the_site_and_the_reader(tenants, client_for, site):
    Site.objects.filter(pk=site.pk).update(
        tariff_per_kwh=Decimal("0.0850"),
        currency="USD",
        temperature_unit="F",
        latitude=Decimal("-33.9"),
        longitude=Decimal("-70.65"),
        on_grid=False,
    )

    html = client_for(tenants.sunfix_om).get(url("detail", site.pk)).content.decode()

    assert "$0.085/kWh" in html  # a tariff keeps its decimals
    assert "33.9° S, 70.65° W" in html
    assert "°F" in html
    assert "Off-grid" in html


def test_live_values_come_from_the_inverters_newest_uploads(tenants, client_for, site):
    html = client_for(tenants.owner).get(url("detail", site.pk)).content.decode()

    live = html[html.index('id="site-live"') :]
    assert "5 kW" in live  # 3,000 W + 2,000 W
    assert "12.5 kWh" in live  # today's yield of both inverters
    assert "70 %" in live  # mean battery SOC
    assert "2 of 2" in live
    assert 'hx-trigger="every 60s"' in live


def test_a_site_without_data_shows_dashes(tenants, client_for):
    empty = SiteFactory(company=tenants.sunfix, name="Empty site")

    html = client_for(tenants.sunfix_admin).get(url("detail", empty.pk)).content.decode()

    assert "No data received yet" in html
    assert "No gateway is bound to this site yet." in html
    assert "Not associated" in html
    live = html[html.index('id="site-live"') :]
    assert live.count("–") >= 3


def test_the_live_part_refreshes_alone(tenants, client_for, site):
    response = client_for(tenants.owner).get(
        url("detail", site.pk) + "?devices=inverters", headers=HTMX_LIVE
    )

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="site-live"')
    assert "INV-A-0001" in html
    assert "Basic information" not in html and "<h1" not in html


def test_the_gateway_list(tenants, client_for, site):
    html = client_for(tenants.sunfix_om).get(url("detail", site.pk)).content.decode()

    devices = html[html.index('id="site-live"') :]
    for text in ("GW-VILLA-1", "Garage logger", "WiFi kit", "Online", "1.4.2", "-61 dBm"):
        assert text in devices, text
    assert url("gateway_unbind", site.pk, site.gateways.get().pk) in devices
    assert "Add Gateway" in devices


def test_the_inverter_list(tenants, client_for, site):
    html = client_for(tenants.sunfix_om).get(url("detail", site.pk) + "?devices=inverters")

    devices = html.content.decode()
    devices = devices[devices.index('id="site-live"') :]
    for text in (
        "Running",
        "INV-A-0001",
        "ECH10K-TH-EU",
        "GW-VILLA-1",
        "DSP: 02.07 LCD: 02.00",
        "3 kW",
        "7.5 kWh",
        "60 %",
    ):
        assert text in devices, text
    inverter = Inverter.objects.get(serial_number="INV-A-0001")
    assert url("inverter_delete", site.pk, inverter.pk) in devices


def test_device_names_link_to_the_device_pages(tenants, client_for, site):
    html = client_for(tenants.owner).get(url("detail", site.pk)).content.decode()
    gateway = site.gateways.get(serial_number="GW-VILLA-1")
    inverter = Inverter.objects.get(serial_number="INV-A-0001")

    assert f'<a href="/gateway/{gateway.pk}/" class="fw-semibold">GW-VILLA-1</a>' in html
    inverters = client_for(tenants.owner).get(url("detail", site.pk) + "?devices=inverters")
    assert f'href="/inverter/{inverter.pk}/"' in inverters.content.decode()


def test_the_map_and_forecast_load_after_the_page(tenants, client_for, site, provider):
    html = client_for(tenants.owner).get(url("detail", site.pk)).content.decode()

    assert f'hx-get="{url("map_card", site.pk)}" hx-trigger="load"' in html
    assert f'hx-get="{url("weather", site.pk)}" hx-trigger="load"' in html
    assert provider.requests == []  # the page itself asks no provider


def test_services_turned_off_leave_their_cards_out(tenants, client_for, site, settings):
    settings.WEATHER_URL = ""
    settings.MAP_TILE_URL = ""
    settings.GEOCODING_URL = ""

    html = client_for(tenants.sunfix_om).get(url("detail", site.pk)).content.decode()
    dialog = client_for(tenants.sunfix_om).get(url("edit", site.pk)).content.decode()

    assert url("weather", site.pk) not in html and url("map_card", site.pk) not in html
    assert "Locate address" not in dialog
    assert client_for(tenants.sunfix_om).get(url("map", site.pk)).status_code == 404


def queries_of(client, address: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(address).status_code == 200
    return len(queries)


def test_queries_do_not_grow_with_the_devices(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    gateways_page = url("detail", site.pk)
    inverters_page = gateways_page + "?devices=inverters"
    client.get(gateways_page)  # the session and Django's own caches are filled once
    before = (queries_of(client, gateways_page), queries_of(client, inverters_page))

    for n in range(4):
        gateway = GatewayFactory(site=site)
        for address in (1, 2, 3):
            inverter = InverterFactory(gateway=gateway, modbus_address=address)
            InverterLatestFactory(inverter=inverter, pv_power=100.0 * n)
            EnergyDailyFactory(inverter=inverter, day=site_local_today(site), pv_kwh=1.0)

    assert (queries_of(client, gateways_page), queries_of(client, inverters_page)) == before


# --- Weather and map ------------------------------------------------------------------------------


def test_the_forecast_shows_seven_days_in_the_sites_unit(tenants, client_for, site, provider):
    provider.answer(json=week_in_celsius())
    Site.objects.filter(pk=site.pk).update(temperature_unit="F")

    html = client_for(tenants.owner).get(url("weather", site.pk)).content.decode()

    assert html.count('class="site-weather-day') == 7
    assert "68 °F" in html and "23 °F" in html  # 20 °C, -5 °C
    assert "Thunderstorm" in html and "4.2 mm" in html
    assert provider.requests[0].params["timezone"] == "Europe/Rome"


def test_the_forecast_in_celsius(tenants, client_for, site, provider):
    provider.answer(json=week_in_celsius())

    html = client_for(tenants.sunfix_om).get(url("weather", site.pk)).content.decode()

    assert "20 °C" in html and "-5 °C" in html


@pytest.mark.parametrize(
    "failure",
    [{"status": 500}, {"body": b"{oops"}, {"json": {}, "delay": 3.0}],
    ids=["500", "malformed JSON", "timeout"],
)
def test_a_failing_forecast_says_so(tenants, client_for, site, provider, failure):
    provider.answer(**failure)

    response = client_for(tenants.owner).get(url("weather", site.pk))

    assert response.status_code == 200
    assert "The weather forecast is unavailable right now." in response.content.decode()


def test_the_map_shows_the_satellite_picture(tenants, client_for, site, provider):
    provider.answer(body=tile_png(), content_type="image/png")
    client = client_for(tenants.owner)

    card = client.get(url("map_card", site.pk)).content.decode()
    asked = len(provider.requests)
    image = client.get(url("map", site.pk))

    assert f'src="{url("map", site.pk)}?v=' in card
    assert "45.464194° N, 9.189635° E" in card
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert image["Cache-Control"].startswith("private")
    with Image.open(io.BytesIO(image.content)) as picture:
        assert picture.size == (640, 360)
    assert len(provider.requests) == asked  # the picture came from the cache


@pytest.mark.parametrize(
    "failure",
    [{"status": 500}, {"body": b"not a picture"}, {"body": b"", "delay": 3.0}],
    ids=["500", "not an image", "timeout"],
)
def test_without_tiles_the_page_says_map_unavailable(tenants, client_for, site, provider, failure):
    provider.answer(**failure)
    client = client_for(tenants.owner)

    card = client.get(url("map_card", site.pk))

    assert card.status_code == 200
    assert "Map unavailable" in card.content.decode()
    assert client.get(url("map", site.pk)).status_code == 503


def test_without_internet_the_page_still_works(tenants, client_for, site, settings):
    settings.GEOCODING_URL = "http://127.0.0.1:9/search"
    settings.WEATHER_URL = "http://127.0.0.1:9/v1/forecast"
    settings.MAP_TILE_URL = "http://127.0.0.1:9/tile/{z}/{y}/{x}"
    client = client_for(tenants.sunfix_om)

    assert client.get(url("detail", site.pk)).status_code == 200
    assert "unavailable" in client.get(url("weather", site.pk)).content.decode()
    assert "Map unavailable" in client.get(url("map_card", site.pk)).content.decode()


# --- Edit ---------------------------------------------------------------------------------------


def test_edit_every_field(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    data = edit_data(
        site,
        name="Villa Sole Nord",
        address="Via Dante 2, Torino",
        latitude="45.0703",
        longitude="7.6869",
        time_zone="Europe/Berlin",
        site_type="commercial",
        on_grid="false",
        currency="CHF",
        temperature_unit="F",
        capacity_kwp="12.5",
        tariff_per_kwh="0",
    )

    response = client.post(url("edit", site.pk), data)

    assert response.status_code == 302 and response.url == url("detail", site.pk)
    site.refresh_from_db()
    assert site.name == "Villa Sole Nord"
    assert (site.latitude, site.longitude) == (Decimal("45.070300"), Decimal("7.686900"))
    assert (site.time_zone, site.site_type, site.on_grid) == ("Europe/Berlin", "commercial", False)
    assert (site.currency, site.temperature_unit) == ("CHF", "F")
    assert (site.capacity_kwp, site.tariff_per_kwh) == (Decimal("12.50"), Decimal("0"))
    assert AuditEvent.objects.filter(action="site.edited", object_id=str(site.pk)).exists()
    assert "has been saved" in client.get(url("detail", site.pk)).content.decode()


def test_coordinates_finer_than_stored_are_rounded(tenants, client_for, site):
    client_for(tenants.sunfix_om).post(
        url("edit", site.pk), edit_data(site, latitude="45.46419433", longitude="9.18963466")
    )

    site.refresh_from_db()
    assert (site.latitude, site.longitude) == (Decimal("45.464194"), Decimal("9.189635"))


def test_upload_and_remove_the_picture(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)

    client.post(url("edit", site.pk), {**edit_data(site), "picture": image_file()})
    site.refresh_from_db()
    assert site.picture.name.startswith("sites/") and site.picture.name.endswith(".jpg")
    html = client.get(url("detail", site.pk)).content.decode()
    assert f'src="{site.picture_url}"' in html
    picture = client_for(tenants.owner).get(site.picture_url)
    assert picture.status_code == 200 and picture["Content-Type"] == "image/jpeg"

    client.post(url("edit", site.pk), {**edit_data(site), "remove_picture": "on"})
    site.refresh_from_db()
    assert not site.picture


REFUSALS = {
    "latitude above 90": ({"latitude": "90.5"}, "latitude", "between -90 and 90"),
    "latitude below -90": ({"latitude": "-91"}, "latitude", "between -90 and 90"),
    "longitude above 180": ({"longitude": "180.01"}, "longitude", "between -180 and 180"),
    "longitude below -180": ({"longitude": "-200"}, "longitude", "between -180 and 180"),
    "latitude not a number": ({"latitude": "north"}, "latitude", "Enter a number."),
    "latitude missing": ({"latitude": ""}, "latitude", "This field is required."),
    "negative tariff": ({"tariff_per_kwh": "-0.01"}, "tariff_per_kwh", "cannot be negative"),
    "zero capacity": ({"capacity_kwp": "0"}, "capacity_kwp", "greater than zero"),
    "negative capacity": ({"capacity_kwp": "-5"}, "capacity_kwp", "greater than zero"),
    "blank name": ({"name": "   "}, "name", "This field is required."),
    "unknown time zone": ({"time_zone": "Mars/Olympus"}, "time_zone", "Select a valid choice"),
    "unknown currency": ({"currency": "XXX"}, "currency", "Select a valid choice"),
}


@pytest.mark.parametrize("change, field, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_bad_input_is_refused_on_its_field(tenants, client_for, site, change, field, message):
    response = client_for(tenants.sunfix_om).post(url("edit", site.pk), edit_data(site, **change))

    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert f'id="id_{field}"' in response.content.decode()
    site.refresh_from_db()
    assert site.name == "Villa Sole" and site.latitude == Decimal("45.464194")
    assert not AuditEvent.objects.filter(action="site.edited").exists()


def test_a_picture_that_is_not_an_image_is_refused(tenants, client_for, site):
    fake = SimpleUploadedFile("site.jpg", b"%PDF-1.4 not a picture", content_type="image/jpeg")

    response = client_for(tenants.sunfix_om).post(
        url("edit", site.pk), {**edit_data(site), "picture": fake}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["picture"]
    assert "valid image" in response.context["form"].errors["picture"][0]
    site.refresh_from_db()
    assert not site.picture


def test_an_oversized_picture_is_refused(tenants, client_for, site, settings):
    settings.SITE_PICTURE_MAX_BYTES = 2048
    big = image_file(image_format="PNG", size=(400, 400))
    big.file = io.BytesIO(big.read() + b"\0" * 4096)  # a PNG of more than 2 KB

    response = client_for(tenants.sunfix_om).post(
        url("edit", site.pk), {**edit_data(site), "picture": big}
    )

    assert response.status_code == 200
    errors = response.context["form"].errors["picture"]
    assert "too large" in errors[0] and "2.0\xa0KB" in errors[0]
    site.refresh_from_db()
    assert not site.picture


def test_the_edit_dialog_in_htmx(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)

    dialog = client.get(url("edit", site.pk), headers=HTMX_EDIT).content.decode()
    refused = client.post(
        url("edit", site.pk), edit_data(site, latitude="95"), headers=HTMX_EDIT
    ).content.decode()
    saved = client.post(url("edit", site.pk), edit_data(site, name="Villa"), headers=HTMX_EDIT)

    assert dialog.lstrip().startswith("<form") and "Locate address" in dialog
    assert 'hx-target="#site-edit-dialog"' in dialog
    assert refused.lstrip().startswith("<form") and "between -90 and 90" in refused
    assert saved.status_code == 200 and saved["HX-Redirect"] == url("detail", site.pk)


def test_locate_address_fills_the_coordinates(tenants, client_for, site, provider):
    provider.answer(
        json=[{"lat": "45.0703393", "lon": "7.6869012", "display_name": "Via Dante, Torino"}]
    )

    html = (
        client_for(tenants.sunfix_om)
        .get(url("geocode", site.pk), {"address": "Via Dante 2, Torino", "country": "IT"})
        .content.decode()
    )

    assert html.lstrip().startswith('<div id="site-coordinates">')
    assert 'value="45.070339"' in html and 'value="7.686901"' in html
    assert "Found: Via Dante, Torino" in html
    assert provider.requests[0].params["countrycodes"] == "it"


def test_locate_address_without_a_match_keeps_the_typed_coordinates(
    tenants, client_for, site, provider
):
    provider.answer(json=[])

    html = (
        client_for(tenants.sunfix_om)
        .get(url("geocode", site.pk), {"address": "Nowhere 1", "latitude": "1.5"})
        .content.decode()
    )

    assert 'value="1.5"' in html
    assert "No place matches this address." in html


@pytest.mark.parametrize(
    "failure",
    [{"status": 500}, {"body": b"[{"}, {"json": [], "delay": 3.0}],
    ids=["500", "malformed JSON", "timeout"],
)
def test_locate_address_when_the_search_fails(tenants, client_for, site, provider, failure):
    provider.answer(**failure)

    response = client_for(tenants.sunfix_om).get(url("geocode", site.pk), {"address": "Via X"})

    assert response.status_code == 200
    assert "The address search is unavailable right now." in response.content.decode()


# --- Gateways and inverters -----------------------------------------------------------------------


def test_add_a_gateway_by_sn_brings_its_inverters(tenants, client_for, site):
    gateway = GatewayFactory(site=None, company=tenants.sunfix, serial_number="GW-NEW-7")
    InverterFactory(gateway=gateway, serial_number="INV-NEW-1", company=tenants.sunfix)
    client = client_for(tenants.sunfix_admin)

    response = client.post(url("gateway_add", site.pk), {"serial_number": " GW-NEW-7 "})

    assert response.status_code == 302
    assert response.url == url("detail", site.pk) + "?devices=gateways"
    gateway.refresh_from_db()
    assert gateway.site == site
    page = client.get(response.url).content.decode()
    assert "Gateway GW-NEW-7 has been added with 1 inverter." in page
    assert "GW-NEW-7" in page
    inverters = client.get(url("detail", site.pk) + "?devices=inverters").content.decode()
    assert "INV-NEW-1" in inverters


def test_add_gateway_in_htmx_reloads_the_page(tenants, client_for, site):
    GatewayFactory(site=None, company=tenants.sunfix, serial_number="GW-NEW-8")

    response = client_for(tenants.sunfix_om).post(
        url("gateway_add", site.pk), {"serial_number": "GW-NEW-8"}, headers=HTMX_DIALOG
    )

    assert response["HX-Redirect"] == url("detail", site.pk) + "?devices=gateways"


def refusal_of(client, site, serial: str) -> str:
    response = client.post(url("gateway_add", site.pk), {"serial_number": serial})
    assert response.status_code == 200
    return " ".join(response.context["form"].errors["serial_number"])


def test_add_gateway_refusals_are_on_the_sn_field(tenants, client_for, site):
    client = client_for(tenants.sunfix_om)
    GatewayFactory(site=None, company=tenants.nordlicht, serial_number="GW-FOREIGN")
    other = SiteFactory(company=tenants.sunfix, name="Casa Luna")
    GatewayFactory(site=other, serial_number="GW-BOUND")

    assert "Unknown gateway SN" in refusal_of(client, site, "GW-DOES-NOT-EXIST")
    # A foreign gateway reads exactly like an unknown one.
    assert refusal_of(client, site, "GW-FOREIGN") == "Unknown gateway SN “GW-FOREIGN”."
    assert "already bound to the site “Casa Luna”" in refusal_of(client, site, "GW-BOUND")
    assert "already bound" in refusal_of(client, site, "GW-VILLA-1")
    assert "Please enter" in refusal_of(client, site, "   ")
    assert Gateway.objects.get(serial_number="GW-FOREIGN").site is None
    assert Gateway.objects.get(serial_number="GW-BOUND").site == other


def test_unbind_confirmation_names_the_gateway_and_what_happens(tenants, client_for, site):
    gateway = site.gateways.get()

    html = (
        client_for(tenants.sunfix_om)
        .get(url("gateway_unbind", site.pk, gateway.pk), headers=HTMX_DIALOG)
        .content.decode()
    )

    assert "Unbind the gateway GW-VILLA-1 from the site “Villa Sole”?" in html
    assert "Its 2 inverters leave the site with it." in html
    assert "keep their data" in html
    assert "<h1" not in html  # only the dialog, for the page's modal


def test_unbind_a_gateway(tenants, client_for, site):
    gateway = site.gateways.get()
    client = client_for(tenants.sunfix_om)

    response = client.post(url("gateway_unbind", site.pk, gateway.pk))

    assert response.status_code == 302
    assert response.url == url("detail", site.pk) + "?devices=gateways"
    gateway.refresh_from_db()
    assert gateway.site is None
    assert not Inverter.objects.filter(site=site).exists()
    assert EnergyDaily.objects.filter(inverter__gateway=gateway).count() == 2  # data stays
    page = client.get(response.url).content.decode()
    assert "Gateway GW-VILLA-1 has been unbound from the site." in page
    assert "No gateway is bound to this site yet." in page


def test_a_gateway_of_another_site_cannot_be_unbound_here(tenants, client_for, site):
    other = GatewayFactory(site=SiteFactory(company=tenants.sunfix))

    response = client_for(tenants.sunfix_om).post(url("gateway_unbind", site.pk, other.pk))

    assert response.status_code == 404
    other.refresh_from_db()
    assert other.site is not None


def test_delete_an_inverter(tenants, client_for, site):
    inverter = Inverter.objects.get(serial_number="INV-A-0001")
    client = client_for(tenants.sunfix_admin)

    dialog = client.get(url("inverter_delete", site.pk, inverter.pk)).content.decode()
    response = client.post(url("inverter_delete", site.pk, inverter.pk))

    assert "Delete the inverter INV-A-0001?" in dialog and "GW-VILLA-1" in dialog
    assert response.status_code == 302
    assert response.url == url("detail", site.pk) + "?devices=inverters"
    assert not Inverter.objects.filter(pk=inverter.pk).exists()
    page = client.get(response.url).content.decode()
    assert "Inverter INV-A-0001 has been deleted." in page
    assert "INV-B-0002" in page and "INV-A-0001</span>" not in page


# --- Who sees what ------------------------------------------------------------------------------


def test_the_owner_sees_the_granted_site_read_only(tenants, client_for, site):
    client = client_for(tenants.owner)
    gateway = site.gateways.get()
    inverter = Inverter.objects.get(serial_number="INV-A-0001")

    html = client.get(url("detail", site.pk)).content.decode()
    inverters = client.get(url("detail", site.pk) + "?devices=inverters").content.decode()

    assert "Villa Sole" in html and "GW-VILLA-1" in html
    for forbidden in (url("edit", site.pk), url("gateway_add", site.pk), "Unbind", "Operation"):
        assert forbidden not in html, forbidden
    assert url("inverter_delete", site.pk, inverter.pk) not in inverters
    posts = [
        client.post(url("edit", site.pk), edit_data(site, name="Mine now")),
        client.post(url("gateway_add", site.pk), {"serial_number": "GW-VILLA-1"}),
        client.post(url("gateway_unbind", site.pk, gateway.pk)),
        client.post(url("inverter_delete", site.pk, inverter.pk)),
        client.get(url("geocode", site.pk), {"address": "Via Roma"}),
    ]
    assert [response.status_code for response in posts] == [403] * 5
    site.refresh_from_db()
    gateway.refresh_from_db()
    assert site.name == "Villa Sole" and gateway.site == site
    assert Inverter.objects.filter(pk=inverter.pk).exists()


def test_an_owner_does_not_see_a_site_not_granted(tenants, client_for, site):
    other = SiteFactory(company=tenants.sunfix)

    assert client_for(tenants.owner).get(url("detail", other.pk)).status_code == 404
    assert client_for(tenants.owner).get(url("weather", other.pk)).status_code == 404


def test_a_foreign_tenant_gets_404_everywhere(tenants, client_for, site):
    client = client_for(tenants.nordlicht_admin)
    gateway = site.gateways.get()
    inverter = site.inverters.first()

    for address in (
        url("detail", site.pk),
        url("edit", site.pk),
        url("map", site.pk),
        url("gateway_unbind", site.pk, gateway.pk),
        url("inverter_delete", site.pk, inverter.pk),
    ):
        assert client.get(address).status_code == 404, address
    assert client.post(url("edit", site.pk), edit_data(site, name="Taken")).status_code == 404
    assert client.post(url("gateway_unbind", site.pk, gateway.pk)).status_code == 404
    site.refresh_from_db()
    assert site.name == "Villa Sole"


# --- Permission matrix --------------------------------------------------------------------------

VIEW = Expect(admin=200, om=200, owner=200)
MANAGE = Expect(admin=200, om=200, owner=403)


@pytest.mark.matrix("sites:detail")
def test_matrix_overview(tenants, client_for, site):
    assert_matrix(tenants, client_for, url("detail", site.pk), VIEW)


@pytest.mark.matrix("sites:weather")
def test_matrix_weather(tenants, client_for, site, provider):
    provider.answer(json=week_in_celsius())
    assert_matrix(tenants, client_for, url("weather", site.pk), VIEW)


@pytest.mark.matrix("sites:map_card")
def test_matrix_map_card(tenants, client_for, site, provider):
    provider.answer(body=tile_png(), content_type="image/png")
    assert_matrix(tenants, client_for, url("map_card", site.pk), VIEW)


@pytest.mark.matrix("sites:map")
def test_matrix_map_image(tenants, client_for, site, provider):
    provider.answer(body=tile_png(), content_type="image/png")
    assert_matrix(tenants, client_for, url("map", site.pk), VIEW)


@pytest.mark.matrix("sites:geocode")
def test_matrix_geocode(tenants, client_for, site, provider):
    provider.answer(json=[])
    assert_matrix(tenants, client_for, url("geocode", site.pk) + "?address=Via+Roma", MANAGE)


@pytest.mark.matrix("sites:edit")
def test_matrix_edit(tenants, client_for, site):
    assert_matrix(tenants, client_for, url("edit", site.pk), MANAGE)
    assert_matrix(
        tenants,
        client_for,
        url("edit", site.pk),
        Expect(admin=302, om=302, owner=403),
        method="post",
        data=edit_data(site),
    )


@pytest.mark.matrix("sites:gateway_add")
def test_matrix_gateway_add(tenants, client_for, site):
    assert_matrix(tenants, client_for, url("gateway_add", site.pk), MANAGE)
    # An unknown SN: staff get the form back with the refusal.
    assert_matrix(
        tenants,
        client_for,
        url("gateway_add", site.pk),
        MANAGE,
        method="post",
        data={"serial_number": "GW-UNKNOWN"},
    )


@pytest.mark.matrix("sites:gateway_unbind")
def test_matrix_gateway_unbind(tenants, client_for, site):
    assert_matrix(
        tenants, client_for, url("gateway_unbind", site.pk, site.gateways.get().pk), MANAGE
    )

    def fresh_gateway(actor: str) -> str:
        gateway = GatewayFactory(site=site, serial_number=f"GW-{actor}")
        return url("gateway_unbind", site.pk, gateway.pk)

    assert_matrix(
        tenants,
        client_for,
        fresh_gateway,
        Expect(admin=302, om=302, owner=403),
        method="post",
    )


@pytest.mark.matrix("sites:inverter_delete")
def test_matrix_inverter_delete(tenants, client_for, site):
    gateway = site.gateways.get()
    inverter = site.inverters.first()
    assert_matrix(tenants, client_for, url("inverter_delete", site.pk, inverter.pk), MANAGE)

    def fresh_inverter(actor: str) -> str:
        address = 10 + Inverter.objects.filter(gateway=gateway).count()
        created = InverterFactory(
            gateway=gateway, serial_number=f"INV-{actor}", modbus_address=address
        )
        return url("inverter_delete", site.pk, created.pk)

    assert_matrix(
        tenants,
        client_for,
        fresh_inverter,
        Expect(admin=302, om=302, owner=403),
        method="post",
    )


# --- In a browser -------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_overview_in_a_browser(page, tenants, site, provider, settings):
    """An O&M engineer sees the map and the forecast arrive, switches to the inverters, edits
    the site with "Locate address", and is refused an unknown gateway SN — without a
    Content-Security-Policy violation or an accessibility finding (the `page` fixture)."""
    settings.GEO_TIMEOUT_S = 5  # the browser asks for the map and the forecast at once
    provider.answer(json=week_in_celsius(), path="/v1/forecast")
    provider.answer(body=tile_png(), content_type="image/png", path="/tile/")
    provider.answer(
        json=[{"lat": "45.0703", "lon": "7.6869", "display_name": "Via Dante, Torino"}],
        path="/search",
    )
    sign_in(page, "om@sunfix.example")

    page.goto(url("detail", site.pk))
    page.wait_for_selector("#site-map img.site-map-image")
    page.wait_for_selector("#site-weather .site-weather-day")
    assert page.locator(".site-weather-day").count() == 7

    page.click(".site-device-tabs a[href$='devices=inverters']")
    page.wait_for_selector("#site-live >> text=INV-B-0002")
    assert page.url.endswith("?devices=inverters")

    page.click("a:has-text('Edit')")
    page.wait_for_selector("#site-edit-dialog form")
    page.fill("#id_latitude", "95")
    page.click("#site-edit-dialog button[type=submit]")
    page.wait_for_selector("#site-edit-dialog >> text=between -90 and 90")
    page.fill("#id_address", "Via Dante 2, Torino")
    page.click("button:has-text('Locate address')")
    page.wait_for_selector("#site-coordinates >> text=Found: Via Dante, Torino")
    assert page.input_value("#id_latitude") == "45.070300"
    page.click("#site-edit-dialog button[type=submit]")
    page.wait_for_selector("text=has been saved")
    site.refresh_from_db()
    assert site.address == "Via Dante 2, Torino" and site.latitude == Decimal("45.070300")

    page.click("a:has-text('Add Gateway')")
    page.fill("#id_serial_number", "GW-NOPE")
    page.click("#action-dialog button[type=submit]")
    page.wait_for_selector("#action-dialog >> text=Unknown gateway SN")
