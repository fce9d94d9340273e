"""The world an inverter lives in: sun, weather, outdoor temperature and a household's load.

Everything here is a pure function of the site and the time plus small seeded random processes,
so the same model serves live runs and accelerated backfills. Formulas:

- solar position: the NOAA/Astronomical Almanac low-precision algorithm (±0.01° elevation);
- clear-sky irradiance: Haurwitz's model for GHI, a fixed diffuse share and plane-of-array
  transposition for a south-facing (north-facing south of the equator) 30° array;
- clouds: a daily weather regime (clear / mixed / overcast) times a smooth Ornstein–Uhlenbeck
  process (minutes to an hour of correlation), so power ramps like a real sky;
- load: base load plus morning and evening peaks (later mornings at weekends), a midday
  plateau, more consumption in winter, multiplicative OU noise and short appliance spikes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

DEG = math.pi / 180


@dataclass(frozen=True)
class Site:
    """Where an inverter is installed."""

    latitude: float = 48.137
    longitude: float = 11.575
    time_zone: str = "Europe/Berlin"
    name: str = ""

    @property
    def tz(self) -> ZoneInfo:
        return _zone(self.time_zone)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_datetime(site: Site, ts: float) -> datetime:
    return datetime.fromtimestamp(ts, site.tz)


# --- Sun ----------------------------------------------------------------------------------------


def solar_position(latitude: float, longitude: float, ts: float) -> tuple[float, float]:
    """(elevation, azimuth) in degrees at epoch second `ts`; azimuth from north, clockwise."""
    n = ts / 86400.0 + 2440587.5 - 2451545.0  # days since J2000.0
    mean_long = (280.460 + 0.9856474 * n) % 360.0
    g = ((357.528 + 0.9856003 * n) % 360.0) * DEG
    ecl_long = (mean_long + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g)) * DEG
    obliquity = (23.439 - 0.0000004 * n) * DEG
    ra = math.atan2(math.cos(obliquity) * math.sin(ecl_long), math.cos(ecl_long))
    dec = math.asin(math.sin(obliquity) * math.sin(ecl_long))
    gmst_h = (18.697374558 + 24.06570982441908 * n) % 24.0
    hour_angle = (gmst_h * 15.0 + longitude) * DEG - ra
    lat = latitude * DEG
    sin_el = math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * math.cos(hour_angle)
    elevation = math.asin(max(-1.0, min(1.0, sin_el)))
    azimuth = math.atan2(
        -math.sin(hour_angle),
        math.tan(dec) * math.cos(lat) - math.sin(lat) * math.cos(hour_angle),
    )
    return elevation / DEG, (azimuth / DEG) % 360.0


def clear_sky_ghi(elevation_deg: float) -> float:
    """Global horizontal irradiance under a clear sky, W/m² (Haurwitz 1945)."""
    if elevation_deg <= 0:
        return 0.0
    s = math.sin(elevation_deg * DEG)
    return 1098.0 * s * math.exp(-0.057 / s)


def plane_of_array(
    elevation_deg: float,
    azimuth_deg: float,
    ghi: float,
    *,
    tilt_deg: float = 30.0,
    panel_azimuth_deg: float = 180.0,
    diffuse_share: float = 0.12,
) -> float:
    """Irradiance on a tilted array, W/m² (isotropic sky, 20 % ground albedo)."""
    if ghi <= 0 or elevation_deg <= 0:
        return 0.0
    sin_el = math.sin(elevation_deg * DEG)
    dhi = ghi * diffuse_share
    dni = (ghi - dhi) / max(sin_el, 0.05)
    tilt = tilt_deg * DEG
    cos_inc = sin_el * math.cos(tilt) + math.cos(elevation_deg * DEG) * math.sin(tilt) * math.cos(
        (azimuth_deg - panel_azimuth_deg) * DEG
    )
    beam = dni * max(cos_inc, 0.0)
    sky = dhi * (1 + math.cos(tilt)) / 2
    ground = ghi * 0.2 * (1 - math.cos(tilt)) / 2
    return beam + sky + ground


# --- Random processes ---------------------------------------------------------------------------


class SmoothNoise:
    """An Ornstein–Uhlenbeck process: mean 0, standard deviation `sigma`, correlation `tau` s."""

    __slots__ = ("sigma", "tau", "value", "_rng")

    def __init__(self, rng: random.Random, sigma: float, tau: float) -> None:
        self._rng = rng
        self.sigma = sigma
        self.tau = tau
        self.value = rng.gauss(0.0, sigma)

    def step(self, dt: float) -> float:
        if dt > 0:
            decay = math.exp(-dt / self.tau)
            self.value = self.value * decay + self.sigma * math.sqrt(
                1 - decay * decay
            ) * self._rng.gauss(0.0, 1.0)
        return self.value


@dataclass
class Weather:
    """Cloud cover for one site: 0 = clear sky, 1 = heavy overcast.

    `variability` 0 switches weather off (a clear sky every day), which physics tests use.
    """

    seed: int
    variability: float = 1.0
    _rng: random.Random = field(init=False, repr=False)
    _fast: SmoothNoise = field(init=False, repr=False)
    _slow: SmoothNoise = field(init=False, repr=False)
    _day_cache: dict[int, float] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._fast = SmoothNoise(self._rng, 0.35, 600.0)
        self._slow = SmoothNoise(self._rng, 0.25, 3 * 3600.0)

    def regime(self, day_number: int) -> float:
        """Mean cloudiness of a day, drawn once per day from the site's seed."""
        cloud = self._day_cache.get(day_number)
        if cloud is None:
            r = random.Random(self.seed * 100003 + day_number).random()
            cloud = 0.05 if r < 0.45 else (0.45 if r < 0.80 else 0.85)
            if len(self._day_cache) > 64:
                self._day_cache.clear()
            self._day_cache[day_number] = cloud
        return cloud

    def clear_sky_index(self, ts: float, dt: float) -> float:
        """Share of the clear-sky irradiance that reaches the array now (0.08 .. 1)."""
        if self.variability <= 0:
            return 1.0
        fast = self._fast.step(dt)
        slow = self._slow.step(dt)
        cloud = self.regime(int(ts // 86400)) + self.variability * (0.6 * fast + 0.4 * slow)
        cloud = min(1.0, max(0.0, cloud))
        return max(0.08, 1.0 - 0.85 * cloud**1.5)


def ambient_temperature(site: Site, ts: float) -> float:
    """Outdoor air temperature, °C: climate by latitude, season and time of day."""
    local = local_datetime(site, ts)
    doy = local.timetuple().tm_yday
    lat = abs(site.latitude)
    annual_mean = 27.0 - 0.38 * lat
    season_amp = 2.0 + 0.2 * lat
    season = -math.cos(2 * math.pi * (doy - 15) / 365.25)
    if site.latitude < 0:
        season = -season
    solar_hour = (ts / 3600.0 + site.longitude / 15.0) % 24.0
    daily = math.sin(2 * math.pi * (solar_hour - 9.0) / 24.0)
    return annual_mean + season_amp * season + 5.0 * daily


# --- Household load ----------------------------------------------------------------------------


def _bump(hour: float, centre: float, width: float) -> float:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


@dataclass
class LoadModel:
    """A household (or small business) consuming about `daily_kwh` per day."""

    seed: int
    daily_kwh: float = 10.0
    variability: float = 1.0
    _rng: random.Random = field(init=False, repr=False)
    _noise: SmoothNoise = field(init=False, repr=False)
    _spike_left_s: float = field(init=False, default=0.0)
    _spike_w: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed ^ 0x5A5A5A)
        self._noise = SmoothNoise(self._rng, 0.18, 900.0)

    def profile_w(self, local: datetime) -> float:
        """Expected power at a local time, W (integrates to about `daily_kwh` per day)."""
        hour = local.hour + local.minute / 60.0 + local.second / 3600.0
        weekend = local.weekday() >= 5
        morning = 1.3 * _bump(hour, 8.8 if weekend else 7.2, 1.0)
        midday = (0.9 if weekend else 0.45) * _bump(hour, 13.0, 2.2)
        evening = 1.9 * _bump(hour, 19.3, 1.7)
        base = 0.32
        shape = base + morning + midday + evening  # ≈ 21.5 units·h on a weekday
        month = local.month
        winter = 1.0 + 0.18 * math.cos(2 * math.pi * (month - 1) / 12.0)
        return shape / 21.5 * self.daily_kwh * 1000.0 * winter

    def power_w(self, local: datetime, dt: float) -> float:
        expected = self.profile_w(local)
        if self.variability <= 0:
            return expected
        factor = math.exp(self.variability * self._noise.step(dt))
        # Appliance spikes (kettle, oven, washing machine), likelier when people are active.
        if self._spike_left_s > 0:
            self._spike_left_s -= dt
        elif self._rng.random() < min(1.0, dt / 3600.0 * 2.5 * expected / 600.0):
            self._spike_w = self._rng.uniform(800.0, 2500.0) * self.daily_kwh / 10.0
            self._spike_left_s = self._rng.uniform(120.0, 900.0)
        spike = self._spike_w if self._spike_left_s > 0 else 0.0
        return max(80.0, expected * factor + self.variability * spike)
