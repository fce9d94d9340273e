"""The outside services of a site's page (guide §6.2.1): an address's coordinates
(geocoding), the 7-day weather forecast at the site and a satellite map around it.

Each is an adapter behind a setting (docs/geo-providers.md): GEOCODING_URL
(Nominatim-compatible), WEATHER_URL (Open-Meteo-compatible), MAP_TILE_URL (an XYZ tile
template). An empty setting turns the service off. The portal calls the providers itself, never
the browser, so the Content-Security-Policy stays `img-src 'self'` and the providers never see
who looks at which site.

No provider can break or slow a page: every call has a deadline (GEO_TIMEOUT_S, for the whole
answer, not per read), answers are read up to a size limit, and any failure — no network, a
timeout, an error status, a body that is not what the provider promised — becomes a result with
status UNAVAILABLE, never an exception. Answers are cached (Django cache) by normalised address
or rounded coordinates for GEO_CACHE_SECONDS, failures for GEO_FAILURE_CACHE_SECONDS, so a
provider that is down is not asked again by every page view.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

TILE_SIZE = 256
MAP_SIZE = (640, 360)
MAX_LATITUDE = 85.05112878  # where Web Mercator ends
JSON_MAX_BYTES = 1024 * 1024
TILE_MAX_BYTES = 2 * 1024 * 1024
COORDINATE_PLACES = Decimal("0.000001")  # what Site.latitude/longitude store


class Status(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"  # the provider answered: nothing matches
    UNAVAILABLE = "unavailable"  # no answer we could use
    DISABLED = "disabled"  # the setting is empty


class ProviderError(Exception):
    """The provider's answer cannot be used (raised inside this module only)."""


# --- Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geocoded:
    status: Status
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    label: str = ""

    @property
    def found(self) -> bool:
        return self.status == Status.OK


#: WMO weather interpretation codes (what Open-Meteo's `weather_code` means): label, icon.
WEATHER_CODES: dict[int, tuple[Any, str]] = {
    0: (_("Clear sky"), "sun"),
    1: (_("Mainly clear"), "sun"),
    2: (_("Partly cloudy"), "cloud-sun"),
    3: (_("Overcast"), "clouds"),
    45: (_("Fog"), "cloud-fog2"),
    48: (_("Freezing fog"), "cloud-fog2"),
    51: (_("Light drizzle"), "cloud-drizzle"),
    53: (_("Drizzle"), "cloud-drizzle"),
    55: (_("Dense drizzle"), "cloud-drizzle"),
    56: (_("Freezing drizzle"), "cloud-sleet"),
    57: (_("Freezing drizzle"), "cloud-sleet"),
    61: (_("Light rain"), "cloud-rain"),
    63: (_("Rain"), "cloud-rain"),
    65: (_("Heavy rain"), "cloud-rain-heavy"),
    66: (_("Freezing rain"), "cloud-sleet"),
    67: (_("Freezing rain"), "cloud-sleet"),
    71: (_("Light snow"), "cloud-snow"),
    73: (_("Snow"), "cloud-snow"),
    75: (_("Heavy snow"), "snow"),
    77: (_("Snow grains"), "cloud-snow"),
    80: (_("Rain showers"), "cloud-rain"),
    81: (_("Rain showers"), "cloud-rain-heavy"),
    82: (_("Violent rain showers"), "cloud-rain-heavy"),
    85: (_("Snow showers"), "cloud-snow"),
    86: (_("Heavy snow showers"), "cloud-snow"),
    95: (_("Thunderstorm"), "cloud-lightning-rain"),
    96: (_("Thunderstorm with hail"), "cloud-hail"),
    99: (_("Thunderstorm with heavy hail"), "cloud-hail"),
}
UNKNOWN_WEATHER = (_("No description"), "question-circle")


@dataclass(frozen=True)
class ForecastDay:
    day: dt.date
    code: int | None
    max_c: float | None
    min_c: float | None
    precipitation_mm: float | None

    @property
    def condition(self) -> str:
        return str(WEATHER_CODES.get(self.code, UNKNOWN_WEATHER)[0])

    @property
    def icon(self) -> str:
        return WEATHER_CODES.get(self.code, UNKNOWN_WEATHER)[1]


@dataclass(frozen=True)
class Forecast:
    status: Status
    days: tuple[ForecastDay, ...] = ()

    @property
    def available(self) -> bool:
        return self.status == Status.OK


@dataclass(frozen=True)
class SiteMap:
    status: Status
    png: bytes = field(default=b"", repr=False)
    version: str = ""  # changes with what the picture shows, for the image's URL

    @property
    def available(self) -> bool:
        return self.status == Status.OK


# --- Settings, HTTP, cache ----------------------------------------------------------------------


def is_enabled(setting: str) -> bool:
    """Is the service of this setting (GEOCODING_URL, WEATHER_URL, MAP_TILE_URL) turned on?"""
    return bool(getattr(settings, setting, ""))


def _timeout() -> float:
    return float(settings.GEO_TIMEOUT_S)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call: building one (reading the CA bundle) costs more than a
    cached answer."""
    return httpx.create_ssl_context()


def _client() -> httpx.Client:
    # The providers' usage policies (Nominatim's in particular) ask for a User-Agent that names
    # the application and how to reach whoever runs it.
    return httpx.Client(
        verify=_tls(),
        timeout=_timeout(),
        headers={"User-Agent": settings.GEO_USER_AGENT, "Accept-Encoding": "gzip"},
        follow_redirects=True,
        max_redirects=3,
    )


def _fetch(
    client: httpx.Client, url: str, params: dict | None, *, deadline: float, max_bytes: int
) -> bytes:
    """The body of a 200 answer, read until `deadline` (time.monotonic()) and `max_bytes`."""
    remaining = max(deadline - time.monotonic(), 0.01)
    with client.stream("GET", url, params=params, timeout=remaining) as response:
        if response.status_code != 200:
            raise ProviderError(f"HTTP {response.status_code}")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise ProviderError("answer too large")
            if time.monotonic() > deadline:
                raise ProviderError("answer too slow")
        return bytes(body)


def _fetch_json(url: str, params: dict) -> Any:
    deadline = time.monotonic() + _timeout()
    with _client() as client:
        body = _fetch(client, url, params, deadline=deadline, max_bytes=JSON_MAX_BYTES)
    return json.loads(body)


# Whatever a provider, the network or a strange answer can raise: each becomes UNAVAILABLE.
FAILURES = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    ProviderError,
    OSError,
    ValueError,  # bad JSON, bad numbers, a malformed URL template
    LookupError,
    TypeError,
    ArithmeticError,
    Image.DecompressionBombError,
)


def _key(kind: str, *parts: Any) -> str:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()
    return f"geo:{kind}:{digest[:40]}"


def _cached(key: str, compute: Callable[[], tuple[Status, Any]]) -> tuple[Status, Any]:
    """`compute()` once per GEO_CACHE_SECONDS (GEO_FAILURE_CACHE_SECONDS when UNAVAILABLE).

    A cache that is down costs the caching, never the page.
    """
    try:
        stored = cache.get(key)
    except Exception:  # any cache backend error: go without the cache
        logger.warning("geo: cache read failed for %s", key, exc_info=True)
        stored = None
    if stored is not None:
        status, payload = stored
        return Status(status), payload
    status, payload = compute()
    ttl = (
        settings.GEO_FAILURE_CACHE_SECONDS
        if status == Status.UNAVAILABLE
        else settings.GEO_CACHE_SECONDS
    )
    try:
        cache.set(key, (status.value, payload), ttl)
    except Exception:
        logger.warning("geo: cache write failed for %s", key, exc_info=True)
    return status, payload


# --- Geocoding ----------------------------------------------------------------------------------


def normalise_address(address: str) -> str:
    return " ".join(address.split()).casefold()


def geocode(address: str, country: str = "") -> Geocoded:
    """The coordinates of `address` (in `country`, an ISO 3166 code, when given)."""
    url = settings.GEOCODING_URL
    if not url:
        return Geocoded(Status.DISABLED)
    query = " ".join(address.split())
    if not query:
        return Geocoded(Status.NOT_FOUND)
    country = country.strip().lower()

    def compute() -> tuple[Status, Any]:
        params = {"q": query, "format": "jsonv2", "limit": 1, "addressdetails": 0}
        if country:
            params["countrycodes"] = country
        try:
            places = _fetch_json(url, params)
            if not isinstance(places, list):
                raise ProviderError("not a list of places")
            if not places:
                return Status.NOT_FOUND, None
            place = places[0]
            latitude = _coordinate(place["lat"], 90)
            longitude = _coordinate(place["lon"], 180)
            label = str(place.get("display_name") or "")[:255]
        except FAILURES as error:
            logger.warning("geocoding unavailable: %s", error)
            return Status.UNAVAILABLE, None
        return Status.OK, (str(latitude), str(longitude), label)

    status, payload = _cached(_key("geocode", url, country, normalise_address(query)), compute)
    if status != Status.OK:
        return Geocoded(status)
    latitude, longitude, label = payload
    return Geocoded(status, Decimal(latitude), Decimal(longitude), label)


def _coordinate(value: Any, limit: int) -> Decimal:
    try:
        number = Decimal(str(value)).quantize(COORDINATE_PLACES)
    except InvalidOperation as error:
        raise ProviderError(f"not a coordinate: {value!r}") from error
    if not number.is_finite() or abs(number) > limit:
        raise ProviderError(f"coordinate out of range: {value!r}")
    return number


# --- Weather ------------------------------------------------------------------------------------

FORECAST_DAYS = 7
DAILY_VARIABLES = ("weather_code", "temperature_2m_max", "temperature_2m_min", "precipitation_sum")


def _rounded(latitude: Any, longitude: Any, places: int) -> tuple[float, float]:
    return round(float(latitude), places), round(float(longitude), places)


def forecast(latitude: Any, longitude: Any, time_zone: str = "auto") -> Forecast:
    """The next 7 days at the coordinates (days in `time_zone`): weather, °C and mm.

    Coordinates are rounded to 0.01° (about a kilometre, finer than a forecast grid), so
    neighbouring sites share one cached forecast.
    """
    url = settings.WEATHER_URL
    if not url:
        return Forecast(Status.DISABLED)
    try:
        lat, lon = _rounded(latitude, longitude, 2)
    except (TypeError, ValueError):
        return Forecast(Status.UNAVAILABLE)
    time_zone = time_zone or "auto"

    def compute() -> tuple[Status, Any]:
        params = {
            "latitude": lat,
            "longitude": lon,
            "daily": ",".join(DAILY_VARIABLES),
            "timezone": time_zone,
            "forecast_days": FORECAST_DAYS,
            "temperature_unit": "celsius",
            "precipitation_unit": "mm",
        }
        try:
            days = _forecast_days(_fetch_json(url, params))
        except FAILURES as error:
            logger.warning("weather forecast unavailable: %s", error)
            return Status.UNAVAILABLE, None
        # Plain values in the cache, so a changed ForecastDay never meets an old pickle.
        return Status.OK, [(d.day.isoformat(), *astuple(d)[1:]) for d in days]

    status, rows = _cached(_key("weather", url, lat, lon, time_zone), compute)
    days = tuple(ForecastDay(dt.date.fromisoformat(day), *values) for day, *values in rows or ())
    return Forecast(status, days)


def _forecast_days(answer: Any) -> list[ForecastDay]:
    daily = answer["daily"]
    days = [dt.date.fromisoformat(str(day)) for day in daily["time"]]
    if not days:
        raise ProviderError("no days")

    def column(name: str, kind: Callable[[Any], Any]) -> list[Any]:
        values = daily.get(name) or []
        if not isinstance(values, list):
            raise ProviderError(f"{name} is not a list")
        values = [None if v is None else kind(v) for v in values[: len(days)]]
        return values + [None] * (len(days) - len(values))

    def finite(value: Any) -> float:
        number = float(value)
        if not math.isfinite(number):
            raise ProviderError("not a finite number")
        return number

    codes = column("weather_code", int)
    highs = column("temperature_2m_max", finite)
    lows = column("temperature_2m_min", finite)
    rain = column("precipitation_sum", finite)
    return [
        ForecastDay(day, code, high, low, mm)
        for day, code, high, low, mm in zip(days, codes, highs, lows, rain, strict=True)
    ][:FORECAST_DAYS]


# --- Map ----------------------------------------------------------------------------------------


def _pixel(latitude: float, longitude: float, zoom: int) -> tuple[float, float]:
    """Web Mercator: the point's position in pixels on the whole world at `zoom`."""
    latitude = max(-MAX_LATITUDE, min(MAX_LATITUDE, latitude))
    scale = TILE_SIZE * 2**zoom
    x = (longitude + 180.0) / 360.0 * scale
    sin = math.sin(math.radians(latitude))
    y = (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * scale
    return x, y


def _tiles(center: tuple[float, float], zoom: int) -> Iterator[tuple[int, int]]:
    """The tiles (x, y) the map picture around `center` (world pixels) covers."""
    width, height = MAP_SIZE
    left, top = center[0] - width / 2, center[1] - height / 2
    for ty in range(math.floor(top / TILE_SIZE), math.floor((top + height - 1) / TILE_SIZE) + 1):
        for tx in range(
            math.floor(left / TILE_SIZE), math.floor((left + width - 1) / TILE_SIZE) + 1
        ):
            yield tx, ty


def site_map(latitude: Any, longitude: Any) -> SiteMap:
    """A MAP_SIZE satellite picture (PNG) centred on the coordinates, with a marker."""
    template = settings.MAP_TILE_URL
    if not template:
        return SiteMap(Status.DISABLED)
    try:
        lat, lon = _rounded(latitude, longitude, 5)  # about a metre
    except (TypeError, ValueError):
        return SiteMap(Status.UNAVAILABLE)
    zoom = int(settings.MAP_ZOOM)
    key = _key("map", template, zoom, lat, lon)

    def compute() -> tuple[Status, Any]:
        try:
            return Status.OK, _compose_map(template, lat, lon, zoom)
        except FAILURES as error:
            logger.warning("map tiles unavailable: %s", error)
            return Status.UNAVAILABLE, None

    status, png = _cached(key, compute)
    return SiteMap(status, png or b"", version=key.rsplit(":", 1)[1][:12])


def _compose_map(template: str, latitude: float, longitude: float, zoom: int) -> bytes:
    center = _pixel(latitude, longitude, zoom)
    tiles = list(_tiles(center, zoom))
    count = 2**zoom
    deadline = time.monotonic() + _timeout()

    def fetch(tile: tuple[int, int], client: httpx.Client) -> Image.Image | None:
        x, y = tile
        if not 0 <= y < count:
            return None  # beyond the poles: left blank
        url = template.format(z=zoom, x=x % count, y=y)
        body = _fetch(client, url, None, deadline=deadline, max_bytes=TILE_MAX_BYTES)
        with Image.open(io.BytesIO(body)) as image:
            if image.size != (TILE_SIZE, TILE_SIZE):
                raise ProviderError(f"tile of {image.size[0]}×{image.size[1]} pixels")
            return image.convert("RGB")

    with _client() as client, ThreadPoolExecutor(max_workers=min(6, len(tiles))) as pool:
        images = list(pool.map(lambda tile: fetch(tile, client), tiles))

    width, height = MAP_SIZE
    left, top = round(center[0] - width / 2), round(center[1] - height / 2)
    picture = Image.new("RGB", MAP_SIZE, "#dde3ea")
    for (tx, ty), image in zip(tiles, images, strict=True):
        if image is not None:
            picture.paste(image, (tx * TILE_SIZE - left, ty * TILE_SIZE - top))
    _draw_marker(picture, (round(center[0]) - left, round(center[1]) - top))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def _draw_marker(picture: Image.Image, point: tuple[int, int]) -> None:
    """A pin whose tip is on the site: drawn four times larger and scaled down, so its edges
    are smooth."""
    scale, radius, height = 4, 11, 30
    size = (2 * radius + 4) * scale, (height + 4) * scale
    pin = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(pin)
    cx, cy, r = size[0] // 2, (radius + 2) * scale, radius * scale
    tip = (cx, (height + 2) * scale)
    draw.polygon([(cx - r * 0.8, cy + r * 0.55), (cx + r * 0.8, cy + r * 0.55), tip], fill="white")
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill="white")
    inner = r - 2 * scale
    draw.polygon(
        [
            (cx - inner * 0.8, cy + inner * 0.55),
            (cx + inner * 0.8, cy + inner * 0.55),
            (cx, tip[1] - 3 * scale),
        ],
        fill="#d63939",
    )
    draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill="#d63939")
    dot = 4 * scale
    draw.ellipse((cx - dot, cy - dot, cx + dot, cy + dot), fill="white")
    pin = pin.resize((size[0] // scale, size[1] // scale), Image.LANCZOS)
    x, y = point
    picture.paste(pin, (x - pin.width // 2, y - (height + 2)), pin)


__all__ = [
    "WEATHER_CODES",
    "Forecast",
    "ForecastDay",
    "Geocoded",
    "SiteMap",
    "Status",
    "forecast",
    "geocode",
    "is_enabled",
    "site_map",
]
