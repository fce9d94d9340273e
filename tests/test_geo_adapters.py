"""The outside services of a site's page (fleet/geo.py) against a local server standing in
for the provider: what they ask, what they make of the answer, and that no failure — an error
status, a timeout, a body that is not JSON, an answer of the wrong shape, no server at all —
does more than make the result "unavailable". Answers and failures are cached.
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import time
from decimal import Decimal

import pytest
from PIL import Image

from fleet import geo
from fleet.geo import Status
from tests.provider_server import ProviderServer, tile_png

PLACE = [{"lat": "45.4641943", "lon": "9.1896346", "display_name": "Piazza del Duomo, Milano"}]


def week(**overrides) -> dict:
    start = dt.date(2025, 6, 2)
    daily = {
        "time": [(start + dt.timedelta(days=n)).isoformat() for n in range(7)],
        "weather_code": [0, 2, 3, 61, 95, 71, 45],
        "temperature_2m_max": [25.5, 24.0, 22.1, 18.0, 20.0, -1.0, 10.0],
        "temperature_2m_min": [14.0, 13.5, 12.0, 11.0, 12.5, -6.5, 4.0],
        "precipitation_sum": [0.0, 0.0, 0.2, 8.4, 12.0, 3.0, 0.0],
    }
    daily.update(overrides)
    return {"latitude": 45.46, "longitude": 9.19, "daily": daily}


@pytest.fixture
def provider():
    with ProviderServer() as server:
        yield server


@pytest.fixture
def geocoding(provider, settings):
    settings.GEOCODING_URL = f"{provider.url}/search"
    settings.GEO_TIMEOUT_S = 1.0
    return provider


@pytest.fixture
def weather(provider, settings):
    settings.WEATHER_URL = f"{provider.url}/v1/forecast"
    settings.GEO_TIMEOUT_S = 1.0
    return provider


@pytest.fixture
def tiles(provider, settings):
    settings.MAP_TILE_URL = f"{provider.url}/tile/{{z}}/{{y}}/{{x}}"
    settings.MAP_ZOOM = 17
    settings.GEO_TIMEOUT_S = 1.0
    provider.answer(body=tile_png(), content_type="image/png")
    return provider


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The ways a provider fails; each must end as "unavailable", never as an exception.
FAILURES = {
    "server error": {"status": 500, "json": {"error": "internal"}},
    "not found status": {"status": 404, "body": b"no such page"},
    "timeout": {"json": PLACE, "delay": 3.0},
    "malformed JSON": {"body": b'[{"lat": "45.4", "lon": '},
    "HTML instead of JSON": {"body": b"<html>busy</html>", "content_type": "text/html"},
}


# --- Geocoding ----------------------------------------------------------------------------------


def test_geocoding_finds_the_coordinates_of_an_address(geocoding):
    geocoding.answer(json=PLACE)

    result = geo.geocode("Piazza del Duomo 1, Milano", "IT")

    assert result.status == Status.OK
    assert (result.latitude, result.longitude) == (Decimal("45.464194"), Decimal("9.189635"))
    assert result.label == "Piazza del Duomo, Milano"
    (request,) = geocoding.requests
    assert request.path == "/search"
    assert request.params["q"] == "Piazza del Duomo 1, Milano"
    assert request.params["format"] == "jsonv2"
    assert request.params["countrycodes"] == "it"
    assert request.params["limit"] == "1"
    assert request.headers["User-Agent"].startswith("MatriCloud/")


def test_geocoding_asks_once_for_the_same_address(geocoding):
    geocoding.answer(json=PLACE)

    first = geo.geocode("Piazza del Duomo 1, Milano", "IT")
    again = geo.geocode("  piazza del duomo   1,  MILANO ", "it")

    assert again == first
    assert len(geocoding.requests) == 1


def test_an_address_nothing_matches_is_not_found(geocoding):
    geocoding.answer(json=[])

    assert geo.geocode("Nowhere street 99", "IT").status == Status.NOT_FOUND
    assert geo.geocode("Nowhere street 99", "IT").status == Status.NOT_FOUND
    assert len(geocoding.requests) == 1


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failing_geocoder_is_unavailable_and_not_asked_again_at_once(geocoding, failure):
    geocoding.answer(**failure)

    started = time.monotonic()
    result = geo.geocode("Piazza del Duomo 1, Milano", "IT")

    assert result.status == Status.UNAVAILABLE
    assert result.latitude is None
    assert time.monotonic() - started < 2.5  # the timeout, not the server, ended the wait
    assert geo.geocode("Piazza del Duomo 1, Milano", "IT").status == Status.UNAVAILABLE
    assert len(geocoding.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"lat": "45.4", "lon": "9.1"},  # an object, not a list of places
        [{"lat": "145.4", "lon": "9.1"}],  # off the globe
        [{"lat": "NaN", "lon": "9.1"}],
        [{"lat": "north", "lon": "9.1"}],
        [{"display_name": "no coordinates"}],
        ["just a string"],
    ],
)
def test_an_answer_of_the_wrong_shape_is_unavailable(geocoding, answer):
    geocoding.answer(json=answer)

    assert geo.geocode("Via Roma 1", "IT").status == Status.UNAVAILABLE


def test_a_failure_is_cached_only_briefly(geocoding, settings):
    settings.GEO_FAILURE_CACHE_SECONDS = 1
    geocoding.answer(status=503)
    assert geo.geocode("Via Roma 1", "IT").status == Status.UNAVAILABLE

    geocoding.answer(json=PLACE)
    time.sleep(1.1)

    assert geo.geocode("Via Roma 1", "IT").status == Status.OK
    assert len(geocoding.requests) == 2


def test_no_geocoder_listening_is_unavailable(settings):
    settings.GEOCODING_URL = f"http://127.0.0.1:{closed_port()}/search"

    assert geo.geocode("Via Roma 1", "IT").status == Status.UNAVAILABLE


def test_an_empty_setting_turns_geocoding_off(geocoding, settings):
    settings.GEOCODING_URL = ""

    assert geo.geocode("Via Roma 1", "IT").status == Status.DISABLED
    assert not geo.is_enabled("GEOCODING_URL")
    assert geocoding.requests == []


# --- Weather ------------------------------------------------------------------------------------


def test_the_forecast_has_seven_days_in_celsius(weather):
    weather.answer(json=week())

    forecast = geo.forecast(Decimal("45.464194"), Decimal("9.189635"), "Europe/Rome")

    assert forecast.available
    assert len(forecast.days) == 7
    first, rainy = forecast.days[0], forecast.days[3]
    assert first.day == dt.date(2025, 6, 2)
    assert (first.max_c, first.min_c, first.precipitation_mm) == (25.5, 14.0, 0.0)
    assert first.condition == "Clear sky" and first.icon == "sun"
    assert rainy.condition == "Light rain" and rainy.precipitation_mm == 8.4
    (request,) = weather.requests
    assert request.path == "/v1/forecast"
    assert request.params["latitude"] == "45.46" and request.params["longitude"] == "9.19"
    assert request.params["timezone"] == "Europe/Rome"
    assert request.params["forecast_days"] == "7"
    assert request.params["temperature_unit"] == "celsius"
    assert set(request.params["daily"].split(",")) == {
        "weather_code",
        "temperature_2m_max",
        "temperature_2m_min",
        "precipitation_sum",
    }


def test_neighbouring_sites_share_one_cached_forecast(weather):
    weather.answer(json=week())

    geo.forecast(Decimal("45.464194"), Decimal("9.189635"), "Europe/Rome")
    geo.forecast(Decimal("45.461000"), Decimal("9.191000"), "Europe/Rome")

    assert len(weather.requests) == 1


def test_missing_values_stay_missing(weather):
    weather.answer(
        json=week(
            weather_code=[0, None, 3, 61, 95, 71, 45],
            temperature_2m_max=[25.5, None, 22.1, 18.0, 20.0, -1.0, 10.0],
            precipitation_sum=[0.0, 0.0],
        )
    )

    days = geo.forecast(45.46, 9.19, "Europe/Rome").days

    assert days[1].max_c is None and days[1].code is None
    assert days[1].condition == "No description"
    assert days[6].precipitation_mm is None


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failing_weather_provider_is_unavailable_and_cached(weather, failure):
    weather.answer(**{**failure, "json": week()} if "json" in failure else failure)

    forecast = geo.forecast(45.46, 9.19, "Europe/Rome")

    assert forecast.status == Status.UNAVAILABLE and forecast.days == ()
    assert not geo.forecast(45.46, 9.19, "Europe/Rome").available
    assert len(weather.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"hourly": {}},
        {"daily": {"time": []}},
        {"daily": {"time": ["yesterday"], "weather_code": [1]}},
        {"daily": {"time": ["2025-06-02"], "temperature_2m_max": "warm"}},
        {"daily": {"time": ["2025-06-02"], "temperature_2m_max": ["hot"]}},
        [1, 2, 3],
    ],
)
def test_a_forecast_of_the_wrong_shape_is_unavailable(weather, answer):
    weather.answer(json=answer)

    assert geo.forecast(45.46, 9.19, "Europe/Rome").status == Status.UNAVAILABLE


def test_an_empty_setting_turns_the_forecast_off(weather, settings):
    settings.WEATHER_URL = ""

    assert geo.forecast(45.46, 9.19).status == Status.DISABLED
    assert weather.requests == []


# --- Map ----------------------------------------------------------------------------------------


def test_the_map_is_composed_from_tiles_with_a_marker_on_the_site(tiles):
    site_map = geo.site_map(Decimal("45.464194"), Decimal("9.189635"))

    assert site_map.available and site_map.version
    with Image.open(io.BytesIO(site_map.png)) as picture:
        assert picture.format == "PNG"
        assert picture.size == geo.MAP_SIZE
        rgb = picture.convert("RGB")
        assert rgb.getpixel((5, 5)) == (47, 107, 58)  # the tiles' colour
        # The pin stands above the site: red just above the centre.
        red, green, blue = rgb.getpixel((geo.MAP_SIZE[0] // 2, geo.MAP_SIZE[1] // 2 - 24))
        assert red > 180 and green < 100 and blue < 100
    paths = {request.path for request in tiles.requests}
    assert all(path.startswith("/tile/17/") for path in paths)
    assert 4 <= len(paths) <= 12
    assert all(r.headers["User-Agent"].startswith("MatriCloud/") for r in tiles.requests)


def test_the_map_is_fetched_once_for_the_same_place(tiles):
    first = geo.site_map(45.464194, 9.189635)
    count = len(tiles.requests)

    again = geo.site_map(Decimal("45.464194"), Decimal("9.189635"))

    assert again.png == first.png and again.version == first.version
    assert len(tiles.requests) == count
    assert geo.site_map(45.5, 9.2).version != first.version


def test_the_map_wraps_around_the_date_line(tiles):
    assert geo.site_map(-17.7, 179.9999).available
    xs = {int(request.path.rsplit("/", 1)[1]) for request in tiles.requests}
    assert 0 in xs and 2**17 - 1 in xs


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "body": b"oops"},
        {"status": 404, "body": b""},
        {"body": tile_png(), "content_type": "image/png", "delay": 3.0},
        {"body": b"this is not an image", "content_type": "image/png"},
        {"body": b"<html>rate limited</html>", "content_type": "text/html"},
    ],
    ids=["500", "404", "timeout", "not an image", "HTML"],
)
def test_failing_tiles_make_the_map_unavailable_and_are_cached(tiles, failure):
    tiles.answer(**failure)

    started = time.monotonic()
    site_map = geo.site_map(45.46, 9.19)

    assert site_map.status == Status.UNAVAILABLE and site_map.png == b""
    assert time.monotonic() - started < 2.5  # one deadline for all the tiles
    count = len(tiles.requests)
    assert not geo.site_map(45.46, 9.19).available
    assert len(tiles.requests) == count


def test_a_tile_of_the_wrong_size_makes_the_map_unavailable(tiles):
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), "blue").save(buffer, "PNG")
    tiles.answer(body=buffer.getvalue(), content_type="image/png")

    assert geo.site_map(45.46, 9.19).status == Status.UNAVAILABLE


def test_an_empty_setting_turns_the_map_off(tiles, settings):
    settings.MAP_TILE_URL = ""

    assert geo.site_map(45.46, 9.19).status == Status.DISABLED
    assert tiles.requests == []
