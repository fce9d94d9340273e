"""Settings for every environment, read from environment variables.

`DATABASE_URL`, `REDIS_URL`, `MQTT_URL` and `EMAIL_URL` point at external services; the
`make run` / `make test` launcher (matricloud.stack) sets them to embedded services when unset.
A process started beside a running `make run` takes the unset ones from that run
(matricloud.runfile). Debug is off unless `DJANGO_DEBUG` turns it on, as the launcher does for
its web server and the test run. Production hardening lives in matricloud.settings_production.
"""

from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _

from matricloud import runfile

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(environ.Env().str("MATRICLOUD_DATA_DIR", default=str(BASE_DIR / ".matricloud")))

env = environ.Env()
# Beside a running `make run`: its services, for every URL variable that is not set.
runfile.use_live_services(DATA_DIR)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY", default="insecure-development-key-change-me-in-production"
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "django_htmx",
    "template_partials",
    "guardian",
    "axes",
    "django_filters",
    "django_tables2",
    "django_countries",
    "ui",
    "matricloud",
    "accounts",
    "sites.apps.SitesConfig",
    "gateways",
    "inverters",
    "alarms",
    "ingest",
    "maintenance",
    "upgrades",
    "fleet",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Early (after the headers every answer needs): refuses an oversized request body from its
    # Content-Length, before anything reads it.
    "matricloud.uploads.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.UserPreferencesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.SessionTimeoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "matricloud.urls"
WSGI_APPLICATION = "matricloud.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "matricloud.context_processors.navigation",
            ],
        },
    },
]

# --- Services -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgresql://postgres@127.0.0.1:5432/matricloud")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# No JIT compilation and no parallel workers per query: the pages' queries are many short ones
# whose cost estimates (site status CASE/EXISTS over a fleet) cross the JIT threshold, and
# compiling costs ~100-500 ms each time; parallel workers only add start-up cost to queries
# this short while other requests want the same cores.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
    "-c jit=off -c max_parallel_workers_per_gather=0"
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
MQTT_URL = env.str("MQTT_URL", default="mqtt://127.0.0.1:1883")
# Device layer: telemetry storage, ingest and the broker's credential files.
TELEMETRY_RETENTION_DAYS = env.int("TELEMETRY_RETENTION_DAYS", default=90)
TELEMETRY_PARTITIONS_AHEAD = env.int("TELEMETRY_PARTITIONS_AHEAD", default=3)
GATEWAY_OFFLINE_AFTER_INTERVALS = env.int("GATEWAY_OFFLINE_AFTER_INTERVALS", default=3)
INGEST_CLIENT_ID = env.str("INGEST_CLIENT_ID", default="matricloud-ingest")
INGEST_SHARED_GROUP = env.str("INGEST_SHARED_GROUP", default="")
MQTT_PASSWORD_FILE = env.str("MQTT_PASSWORD_FILE", default=str(DATA_DIR / "mosquitto" / "passwd"))
MQTT_ACL_FILE = env.str("MQTT_ACL_FILE", default=str(DATA_DIR / "mosquitto" / "acl"))
# Remote operations: how long a command may wait for an offline gateway before it expires, and
# how long a worker waits for the answer itself (later answers are picked up by the sweep).
REMOTE_OPERATION_DEADLINE_S = env.int("REMOTE_OPERATION_DEADLINE_S", default=600)
REMOTE_OPERATION_REPLY_WAIT_S = env.float("REMOTE_OPERATION_REPLY_WAIT_S", default=15.0)
REMOTE_OPERATION_SWEEP_S = env.float("REMOTE_OPERATION_SWEEP_S", default=5.0)

# --- Firmware (upgrades/, docs/upgrades.md) ---------------------------------------------------
FIRMWARE_MAX_BYTES = env.int("FIRMWARE_MAX_BYTES", default=64 * 1024 * 1024)
FIRMWARE_CHUNK_BYTES = env.int("FIRMWARE_CHUNK_BYTES", default=64 * 1024)
# How often the rollout engine looks at running tasks (beat), and how long a device may stay
# in a transfer or install step without reporting before it is failed ("no progress").
UPGRADE_TICK_S = env.float("UPGRADE_TICK_S", default=5.0)
UPGRADE_STALL_S = env.int("UPGRADE_STALL_S", default=600)
UPGRADE_OFFER_DEADLINE_S = env.int("UPGRADE_OFFER_DEADLINE_S", default=900)
OTA_CLIENT_ID = env.str("OTA_CLIENT_ID", default="matricloud-ota")
OTA_SHARED_GROUP = env.str("OTA_SHARED_GROUP", default="") or None
# The public address of the portal, for links in emails (e.g. https://portal.example.com).
PORTAL_URL = env.str("PORTAL_URL", default="")

# Outside services of a site's page (fleet/geo.py, docs/geo-providers.md): geocoding of an
# address (Nominatim-compatible), the 7-day forecast (Open-Meteo-compatible) and the satellite
# map (an XYZ tile URL with {z}, {x}, {y}). The portal calls them itself; an empty URL turns the
# service off. Every call has GEO_TIMEOUT_S for its whole answer; answers are cached for
# GEO_CACHE_SECONDS, failures for GEO_FAILURE_CACHE_SECONDS.
GEOCODING_URL = env.str("GEOCODING_URL", default="https://nominatim.openstreetmap.org/search")
WEATHER_URL = env.str("WEATHER_URL", default="https://api.open-meteo.com/v1/forecast")
WEATHER_ATTRIBUTION = env.str("WEATHER_ATTRIBUTION", default="Open-Meteo.com (CC BY 4.0)")
MAP_TILE_URL = env.str(
    "MAP_TILE_URL",
    default="https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
)
MAP_ATTRIBUTION = env.str(
    "MAP_ATTRIBUTION", default="Esri, Maxar, Earthstar Geographics, and the GIS User Community"
)
MAP_ZOOM = env.int("MAP_ZOOM", default=17)
GEO_TIMEOUT_S = env.float("GEO_TIMEOUT_S", default=3.0)
GEO_CACHE_SECONDS = env.int("GEO_CACHE_SECONDS", default=6 * 3600)
GEO_FAILURE_CACHE_SECONDS = env.int("GEO_FAILURE_CACHE_SECONDS", default=300)
GEO_USER_AGENT = env.str(
    "GEO_USER_AGENT",
    default=f"MatriCloud/0.1 (solar monitoring portal; {PORTAL_URL or 'self-hosted'})",
)
# Site pictures (guide §6.2.1), checked like avatars and logos (accounts/stored_files.py).
SITE_PICTURE_MAX_BYTES = env.int("SITE_PICTURE_MAX_BYTES", default=4 * 1024 * 1024)


def _float_entries(name: str) -> dict[str, float]:
    """`NAME=key=1.5,other=2` from the environment as {"key": 1.5, "other": 2.0}."""
    return {key.strip(): float(value) for key, value in env.dict(name, default={}).items()}


# Home (docs/home.md): units of each currency per 1 EUR for converting revenue to the user's
# currency, and the green-efficiency factors; the environment overrides single entries, e.g.
# CURRENCY_RATES=USD=1.09,GBP=0.84 and GREEN_FACTORS=co2_kg_per_kwh=0.25.
CURRENCY_RATES = {
    "EUR": 1.0,
    "USD": 1.08,
    "GBP": 0.85,
    "CHF": 0.94,
    "CAD": 1.50,
    "PLN": 4.25,
    "SEK": 11.20,
    **{key.upper(): rate for key, rate in _float_entries("CURRENCY_RATES").items()},
}
GREEN_FACTORS = {
    "coal_kg_per_kwh": 0.4,
    "co2_kg_per_kwh": 0.997,
    "co2_kg_per_tree_year": 21.77,
    **_float_entries("GREEN_FACTORS"),
}


def _celery_redis_url(url: str) -> str:
    """Celery spells a unix-socket Redis as redis+socket://, Django's cache as unix://."""
    if url.startswith("unix://"):
        return "redis+socket://" + url.removeprefix("unix://")
    return url


CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="mc"),
    }
}

CELERY_BROKER_URL = _celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_redis_url(REDIS_URL)
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Celery closes the database connection around every task unless told to reuse it; a remote
# operation would pay a new PostgreSQL connection (~20 ms) twice. Stale connections are
# checked before each task instead (matricloud/celery.py).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
#: Home's figures for staff come from a snapshot of every company refreshed this often, and are
#: used while younger than HOME_SNAPSHOT_MAX_AGE_S (fleet/snapshot.py, docs/home.md).
HOME_SNAPSHOT_INTERVAL_S = env.int("HOME_SNAPSHOT_INTERVAL_S", default=30)
HOME_SNAPSHOT_MAX_AGE_S = env.int("HOME_SNAPSHOT_MAX_AGE_S", default=90)

CELERY_BEAT_SCHEDULE = {
    # Gateways that stay connected but stop uploading turn offline (3 missed uploads).
    "sweep-offline-devices": {"task": "ingest.tasks.sweep_offline_devices", "schedule": 60.0},
    # Remote operations: answered ones finished, overdue ones expired, queued ones dispatched
    # as soon as their gateway is back.
    "sweep-operations": {
        "task": "maintenance.tasks.sweep_operations",
        "schedule": REMOTE_OPERATION_SWEEP_S,
    },
    # Upgrade tasks: reservations start, waves advance, stalled devices fail (upgrades/rollout.py).
    # Ticks that piled up while no worker ran expire: the next one does all their work.
    "advance-upgrades": {
        "task": "upgrades.tasks.advance_upgrades",
        "schedule": UPGRADE_TICK_S,
        "options": {"expires": UPGRADE_TICK_S},
    },
    # Home's live figures of every company (fleet/snapshot.py).
    "refresh-home-snapshot": {
        "task": "fleet.tasks.refresh_home_snapshot",
        "schedule": float(HOME_SNAPSHOT_INTERVAL_S),
    },
    # Sample partitions are created ahead and dropped after the retention period.
    "maintain-sample-partitions": {
        "task": "inverters.tasks.maintain_sample_partitions",
        "schedule": 3600.0,
    },
}

# --- Email ----------------------------------------------------------------------------------
MAIL_DIR = DATA_DIR / "mail"
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "matricloud.mail.ConsoleAndFolderBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="MatriCloud <no-reply@matricloud.local>")
EMAIL_TIMEOUT = 10

# --- Authentication -------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.EmailBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "accounts.passwords.PortalPasswordPolicy"},
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
PASSWORD_HASHERS = env.list(
    "PASSWORD_HASHERS",
    default=[
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ],
)
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row

# Sign-in protection (accounts/lockout.py): AXES_FAILURE_LIMIT failures of one account from one
# client address lock that account there only; AXES_IP_FAILURE_LIMIT failures from one address
# over any accounts lock that address. Wrong current passwords count too (accounts/reauth.py).
# Attempts refused during a lockout are not counted, so they do not extend it.
AXES_HANDLER = "accounts.lockout.PortalAxesHandler"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_IP_FAILURE_LIMIT = env.int("AXES_IP_FAILURE_LIMIT", default=20)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_USERNAME_FORM_FIELD = "username"
# The password fields of re-authentication forms stay out of the attempt records.
AXES_SENSITIVE_PARAMETERS = [
    "username",
    "ip_address",
    "old_password",
    "new_password1",
    "new_password2",
]
# The client address, by django-ipware. Behind AXES_PROXY_COUNT reverse proxies that each append
# the address they were contacted from to X-Forwarded-For, the client is the AXES_PROXY_COUNT-th
# entry from the right; entries further left are whatever the client sent, and are ignored.
# (django-ipware counts only the proxies listed in the header: the last one is REMOTE_ADDR.)
_proxies = env.int("AXES_PROXY_COUNT", default=0)
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if _proxies else ("REMOTE_ADDR",)
)
AXES_IPWARE_PROXY_COUNT = max(_proxies - 1, 0)
IPWARE_STRICT = False  # a longer header than the proxies account for is normal, not suspect

# Verification codes ("Send" on registration, forgot password, change email).
VERIFICATION_CODE_TTL_SECONDS = env.int("VERIFICATION_CODE_TTL_SECONDS", default=600)
VERIFICATION_CODE_MAX_ATTEMPTS = 5
VERIFICATION_CODE_RESEND_SECONDS = env.int("VERIFICATION_CODE_RESEND_SECONDS", default=60)

# Emails a request can trigger, counted in the cache per window (accounts/throttle.py,
# docs/operations.md). "CODE": verification codes and notices, anyone may ask for them;
# "STAFF": temporary passwords sent by administrators. 0 switches a limit off.
MAIL_LIMIT_WINDOW_SECONDS = env.int("MAIL_LIMIT_WINDOW_SECONDS", default=3600)
CODE_MAIL_LIMIT_PER_ADDRESS = env.int("CODE_MAIL_LIMIT_PER_ADDRESS", default=20)
CODE_MAIL_LIMIT_PER_SESSION = env.int("CODE_MAIL_LIMIT_PER_SESSION", default=10)
CODE_MAIL_LIMIT_PER_ADDRESS_AND_RECIPIENT = env.int(
    "CODE_MAIL_LIMIT_PER_ADDRESS_AND_RECIPIENT", default=3
)
CODE_MAIL_LIMIT_PER_RECIPIENT = env.int("CODE_MAIL_LIMIT_PER_RECIPIENT", default=10)
STAFF_MAIL_LIMIT_PER_ADDRESS = env.int("STAFF_MAIL_LIMIT_PER_ADDRESS", default=100)
STAFF_MAIL_LIMIT_PER_SESSION = env.int("STAFF_MAIL_LIMIT_PER_SESSION", default=50)
STAFF_MAIL_LIMIT_PER_ADDRESS_AND_RECIPIENT = 0  # the recipient limit below covers it
STAFF_MAIL_LIMIT_PER_RECIPIENT = env.int("STAFF_MAIL_LIMIT_PER_RECIPIENT", default=5)
STAFF_MAIL_RESEND_SECONDS = env.int("STAFF_MAIL_RESEND_SECONDS", default=60)

AVATAR_MAX_BYTES = 2 * 1024 * 1024
LOGO_MAX_BYTES = 2 * 1024 * 1024

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("de", _("German")), ("it", _("Italian"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Content-Security-Policy (django-csp) -----------------------------------------------------
# Scripts, styles, fonts and images come from this site only; no inline script or style (the
# one exception is the standalone 500 page's style element, allowed by its hash). Browsers
# report violations in their console; the browser tests fail on any.
CSP_500_PAGE_STYLE_HASH = "'sha256-qPZCm3ZVZTgtjSPcVdXo+rCqczmHta7+QbMfUSTOtW8='"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", CSP_500_PAGE_STYLE_HASH],
        # Bootstrap's CSS draws form controls with data: SVG images.
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Static and media -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
    ("vendor/bootstrap", NODE_MODULES / "bootstrap" / "dist"),
    ("vendor/bootstrap-icons", NODE_MODULES / "bootstrap-icons" / "font"),
    ("vendor/uplot", NODE_MODULES / "uplot" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_URL = "media/"  # not served: stored files have their own views (matricloud/files.py)
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(DATA_DIR / "media"))
# Behind nginx: the `internal` location that maps to MEDIA_ROOT (e.g. /protected-media/); the
# file views then check who may see a file and let nginx send it (X-Accel-Redirect).
MEDIA_X_ACCEL_REDIRECT_PREFIX = env.str("MEDIA_X_ACCEL_REDIRECT_PREFIX", default="")
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Uploads (matricloud/uploads.py): a request declaring a larger body gets 413 unread; no file
# keeps more than UPLOAD_MAX_FILE_BYTES (form fields have their own, lower limits, e.g.
# AVATAR_MAX_BYTES). Keep nginx's client_max_body_size at UPLOAD_MAX_REQUEST_BYTES.
UPLOAD_MAX_REQUEST_BYTES = env.int("UPLOAD_MAX_REQUEST_BYTES", default=10 * 1024 * 1024)
UPLOAD_MAX_FILE_BYTES = env.int("UPLOAD_MAX_FILE_BYTES", default=5 * 1024 * 1024)
# URLs that take larger files, and the setting that holds their limit per file (their request
# may be that much larger than UPLOAD_MAX_REQUEST_BYTES); nginx must let these through too.
UPLOAD_LARGE_FILE_URLS = {"upgrades:release_upload": "FIRMWARE_MAX_BYTES"}
FILE_UPLOAD_HANDLERS = [
    "matricloud.uploads.FileSizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5-responsive.html"
DJANGO_TABLES2_PAGE_RANGE = 8

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# A session ends after this long without a request (accounts.middleware.SessionTimeoutMiddleware),
# and SESSION_MAX_AGE_HOURS after sign-in however busy it is.
SESSION_IDLE_TIMEOUT_MINUTES = env.int("SESSION_IDLE_TIMEOUT_MINUTES", default=60)
SESSION_IDLE_TIMEOUT_STAFF_MINUTES = env.int("SESSION_IDLE_TIMEOUT_STAFF_MINUTES", default=30)
SESSION_MAX_AGE_HOURS = env.int("SESSION_MAX_AGE_HOURS", default=12)
SESSION_COOKIE_AGE = SESSION_MAX_AGE_HOURS * 3600

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}

FORM_RENDERER = "ui.forms.PortalFormRenderer"
