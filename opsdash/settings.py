"""opsdash settings: every value that varies between machines comes from the environment.

Profiles (``OPSDASH_PROFILE``):
- ``embedded`` (default) needs no services: SQLite, Celery over a filesystem transport shared by
  the web, worker and beat processes, a local-memory cache and a local SMTP catcher.
- ``services``: PostgreSQL, RabbitMQ and Redis, from DATABASE_URL, CELERY_BROKER_URL and REDIS_URL
  (defaults point at localhost). Tests, benchmarks and compose.yaml use it.

``OPSDASH_ENV=production`` switches on the deployment hardening (and requires a secret key and
allowed hosts); ``manage.py check --deploy`` passes with it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static
from django.utils.translation import gettext_lazy as _

from opsdash.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_optional,
    env_pacing,
    env_prefixed,
    env_str,
    persistent_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("OPSDASH_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite, the embedded broker and uploads live here

PROFILE = env_choice("OPSDASH_PROFILE", "embedded", ("embedded", "services"))
ENVIRONMENT = env_choice("OPSDASH_ENV", "development", ("development", "production"))
PRODUCTION = ENVIRONMENT == "production"

# --- Core -----------------------------------------------------------------------------------
# Off unless asked for (`make demo` asks): debug pages show settings and source to anyone.
DEBUG = False if PRODUCTION else env_bool("DJANGO_DEBUG", False)
# Signs sessions and unsubscribe links. Production must be given one; elsewhere each
# installation generates its own on first run, so no key that works anywhere is ever committed.
SECRET_KEY = (
    env_str("DJANGO_SECRET_KEY")
    if PRODUCTION
    else env_optional("DJANGO_SECRET_KEY") or persistent_secret(VAR_DIR / "secret_key")
)
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # Unfold must come before django.contrib.admin so its templates win.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "import_export",
    "axes",
    "anymail",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "opsdash.urls"
WSGI_APPLICATION = "opsdash.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
_DEFAULT_DATABASE_URL = (
    "postgres://postgres@127.0.0.1:5432/opsdash"
    if PROFILE == "services"
    else f"sqlite:///{VAR_DIR / 'opsdash.sqlite3'}"
)
DATABASE_URL = env_str("DATABASE_URL", _DEFAULT_DATABASE_URL)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: WAL lets readers and one writer work at once, and
    # IMMEDIATE transactions queue writers instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
TEST_DATABASE_NAME = env_optional("OPSDASH_TEST_DATABASE")
if TEST_DATABASE_NAME:
    DATABASES["default"]["TEST"] = {"NAME": TEST_DATABASE_NAME}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (also the shared rate limiter and locks when Redis is configured) ----------------
REDIS_URL = env_optional("REDIS_URL") or (
    "redis://127.0.0.1:6379/0" if PROFILE == "services" else None
)
REDIS_KEY_PREFIX = env_str("OPSDASH_REDIS_PREFIX", "opsdash")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
# django-axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login brute-force protection. Failures are counted in the database (AxesDatabaseHandler) so
# every web process sees the same count and superusers see the lockouts in the admin
# (campaigns/admin/security.py); a success resets the count of that user from that address.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("OPSDASH_LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_LOCKOUT_MINUTES = env_int("OPSDASH_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
# Per user and address: a guesser is stopped without letting anyone lock a colleague out from
# elsewhere by typing their name.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ADMIN = False  # registered by campaigns.admin.security, for superusers only
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_DISABLE_ACCESS_LOG = True  # successful logins are not logged (an ever-growing table)
AXES_COOLOFF_MESSAGE = (
    f"Too many failed logins: this account is locked from your address for "
    f"{LOGIN_LOCKOUT_MINUTES} minutes. Try again later, or ask a superuser to lift the lock."
)
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("OPSDASH_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Every date and time the admin formats carries its zone (opsdash/formats).
FORMAT_MODULE_PATH = ["opsdash.formats"]
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("OPSDASH_MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Outside production the static files are served from the apps' folders whatever DEBUG says,
# so turning DEBUG off does not leave a local admin without its styles (nothing secret there).
WHITENOISE_USE_FINDERS = not PRODUCTION
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# --- Deployment hardening -------------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Email ----------------------------------------------------------------------------------
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "opsdash@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Sending channels (docs/operations.md, "Sending channels") ------------------------------
# Each channel is "name=backend" or "name=backend:stream": the backend is "smtp" (the relay
# above) or the name of a django-anymail ESP ("postmark", "mailgun", "amazon_ses", "sendgrid",
# "brevo", ...); the stream is the ESP's message stream, where it has them (Postmark). The
# first channel is the default unless OPSDASH_DEFAULT_CHANNEL names another.
OPSDASH_CHANNELS = env_list("OPSDASH_CHANNELS", ["smtp=smtp"])
OPSDASH_DEFAULT_CHANNEL = env_str(
    "OPSDASH_DEFAULT_CHANNEL",
    OPSDASH_CHANNELS[0].partition("=")[0].strip() if OPSDASH_CHANNELS else "",
)
# django-anymail's own settings, by their documented names: ANYMAIL_POSTMARK_SERVER_TOKEN,
# ANYMAIL_MAILGUN_API_KEY, ANYMAIL_WEBHOOK_SECRET ("user:password" for the webhooks' basic
# auth), ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY, ... each also as <NAME>_FILE.
ANYMAIL: dict[str, object] = dict(env_prefixed("ANYMAIL_"))
# Where an ESP-side bounce or complaint for a message leads: soft bounces suppress an address
# after this many within this many days (a hard bounce or a complaint suppresses at once).
OPSDASH_SOFT_BOUNCE_LIMIT = env_int("OPSDASH_SOFT_BOUNCE_LIMIT", 3, minimum=1)
OPSDASH_SOFT_BOUNCE_WINDOW_DAYS = env_int("OPSDASH_SOFT_BOUNCE_WINDOW_DAYS", 7, minimum=1)
# Guardrails (docs/operations.md, "Guardrails"): a running send pauses itself once it has sent
# at least OPSDASH_GUARDRAIL_MIN_MESSAGES and its hard-bounce or complaint rate (percent of the
# messages sent) is above its threshold, or when more than OPSDASH_GUARDRAIL_DEFERRAL_PERCENT of
# one mailbox provider's attempts in the last OPSDASH_GUARDRAIL_DEFERRAL_WINDOW_SECONDS were
# deferred, over at least OPSDASH_GUARDRAIL_DEFERRAL_MIN_ATTEMPTS attempts. Approvers are told
# by email; only an approver resumes such a send.
OPSDASH_GUARDRAIL_ENABLED = env_bool("OPSDASH_GUARDRAIL_ENABLED", True)
OPSDASH_GUARDRAIL_MIN_MESSAGES = env_int("OPSDASH_GUARDRAIL_MIN_MESSAGES", 200, minimum=1)
OPSDASH_GUARDRAIL_HARD_BOUNCE_PERCENT = env_float("OPSDASH_GUARDRAIL_HARD_BOUNCE_PERCENT", 5.0)
OPSDASH_GUARDRAIL_COMPLAINT_PERCENT = env_float("OPSDASH_GUARDRAIL_COMPLAINT_PERCENT", 0.1)
OPSDASH_GUARDRAIL_DEFERRAL_PERCENT = env_float("OPSDASH_GUARDRAIL_DEFERRAL_PERCENT", 30.0)
OPSDASH_GUARDRAIL_DEFERRAL_MIN_ATTEMPTS = env_int(
    "OPSDASH_GUARDRAIL_DEFERRAL_MIN_ATTEMPTS", 100, minimum=1
)
OPSDASH_GUARDRAIL_DEFERRAL_WINDOW_SECONDS = env_int(
    "OPSDASH_GUARDRAIL_DEFERRAL_WINDOW_SECONDS", 600, minimum=60
)
# Bounce mail on the SMTP channel: each message goes out with the envelope sender
# bounces+<signed token>@OPSDASH_BOUNCE_DOMAIN (VERP), and the MTA forwards that domain's mail
# to `manage.py bounces`, which listens on OPSDASH_BOUNCE_HOST:OPSDASH_BOUNCE_PORT speaking
# LMTP (OPSDASH_BOUNCE_PROTOCOL=lmtp) or SMTP. Empty domain: no VERP, the From address is the
# envelope sender as before.
OPSDASH_BOUNCE_DOMAIN = env_str("OPSDASH_BOUNCE_DOMAIN", "")
OPSDASH_BOUNCE_HOST = env_str("OPSDASH_BOUNCE_HOST", "127.0.0.1")
OPSDASH_BOUNCE_PORT = env_int("OPSDASH_BOUNCE_PORT", 2526, minimum=1)
OPSDASH_BOUNCE_PROTOCOL = env_choice("OPSDASH_BOUNCE_PROTOCOL", "smtp", ("smtp", "lmtp"))
# DKIM signing on the SMTP channel: on when a domain, a selector and a private key (PEM) are
# all given. The key is a secret: OPSDASH_DKIM_PRIVATE_KEY_FILE=/run/secrets/dkim.pem.
OPSDASH_DKIM_DOMAIN = env_str("OPSDASH_DKIM_DOMAIN", "")
OPSDASH_DKIM_SELECTOR = env_str("OPSDASH_DKIM_SELECTOR", "")
OPSDASH_DKIM_PRIVATE_KEY = env_str("OPSDASH_DKIM_PRIVATE_KEY", "")
# Pre-flight checks (docs/operations.md, "Pre-flight checks"): look up the From domain's SPF,
# DKIM and DMARC records before a campaign is scheduled or sent. On in production; off by
# default elsewhere, where From addresses are example domains and a local catcher takes the
# mail (the checks then say "not checked"). Answers are cached; a lookup that takes longer than
# the timeout is reported as "could not check", never as a failure.
OPSDASH_PREFLIGHT_DNS = env_bool("OPSDASH_PREFLIGHT_DNS", PRODUCTION)
OPSDASH_PREFLIGHT_DNS_TIMEOUT_SECONDS = env_float("OPSDASH_PREFLIGHT_DNS_TIMEOUT_SECONDS", 3.0)
OPSDASH_PREFLIGHT_DNS_CACHE_SECONDS = env_int("OPSDASH_PREFLIGHT_DNS_CACHE_SECONDS", 300, minimum=0)

# --- opsdash --------------------------------------------------------------------------------
OPSDASH_PUBLIC_URL = env_str("OPSDASH_PUBLIC_URL", "http://localhost:8000").rstrip("/")
OPSDASH_MESSAGE_ID_DOMAIN = env_str("OPSDASH_MESSAGE_ID_DOMAIN", "opsdash.localhost")
# The organisation recipients know the mail comes from: the heading of the unsubscribe page.
OPSDASH_SENDER_NAME = env_str("OPSDASH_SENDER_NAME", "opsdash").strip() or "opsdash"
# Each batch task and each outcome write costs the same few queries and a commit whatever its
# size, so both are large. The Redis journal, not the write, bounds what a crash re-sends; a
# failure or a deferral is written within 50 messages (the guardrails read what is written).
OPSDASH_DELIVERY_BATCH_SIZE = env_int("OPSDASH_DELIVERY_BATCH_SIZE", 2000, minimum=1)
OPSDASH_DELIVERY_MAX_BATCHES = env_int("OPSDASH_DELIVERY_MAX_BATCHES", 500, minimum=1)
OPSDASH_DELIVERY_FLUSH_EVERY = env_int("OPSDASH_DELIVERY_FLUSH_EVERY", 500, minimum=1)
# Messages per API call on an ESP with a batch endpoint (Postmark takes up to 500). A worker
# killed during a call may send that call's messages twice, so calls stay small.
OPSDASH_ESP_MESSAGES_PER_CALL = env_int("OPSDASH_ESP_MESSAGES_PER_CALL", 50, minimum=1)
# SMTP sessions each worker process keeps open at once, so the relay's latency does not set
# the speed: a process sends about CONNECTIONS / latency messages a second (16 sessions at
# 100 ms: up to 160/s). Several worker processes multiply it: keep the total under what the
# relay allows one client (Postfix: 50 by default). Sessions outlive a batch and close after
# IDLE_SECONDS without a message.
OPSDASH_DELIVERY_CONNECTIONS = env_int("OPSDASH_DELIVERY_CONNECTIONS", 16, minimum=1)
# Messages in flight at once to one named mailbox provider (Google, Microsoft, ...), per
# worker process: big providers defer senders that open too many sessions. "Other" is many
# small domains, so it is bounded only by OPSDASH_DELIVERY_CONNECTIONS.
OPSDASH_DELIVERY_CONNECTIONS_PER_PROVIDER = env_int(
    "OPSDASH_DELIVERY_CONNECTIONS_PER_PROVIDER", 8, minimum=1
)
OPSDASH_DELIVERY_IDLE_SECONDS = env_float("OPSDASH_DELIVERY_IDLE_SECONDS", 30.0)
# A relay that answers a message within this many ms (on the same host or next to it) is sent
# to from the batch's own thread, one message at a time: handing each message to a session
# thread would cost more than the wait. 0 always uses the session threads.
OPSDASH_DELIVERY_INLINE_BELOW_MS = env_float("OPSDASH_DELIVERY_INLINE_BELOW_MS", 2.0)
OPSDASH_DELIVERY_LEASE_SECONDS = env_int("OPSDASH_DELIVERY_LEASE_SECONDS", 300, minimum=10)
OPSDASH_DELIVERY_MAX_ATTEMPTS = env_int("OPSDASH_DELIVERY_MAX_ATTEMPTS", 5, minimum=1)
OPSDASH_STALL_MINUTES = env_int("OPSDASH_STALL_MINUTES", 10, minimum=1)
# Every worker and beat process writes a heartbeat row this often (opsdash/heartbeat.py); the
# dashboard calls one silent after OPSDASH_WORKER_SILENT_SECONDS and forgets it after
# OPSDASH_HEARTBEAT_RETENTION_HOURS.
OPSDASH_HEARTBEAT_SECONDS = env_int("OPSDASH_HEARTBEAT_SECONDS", 10, minimum=1)
OPSDASH_WORKER_SILENT_SECONDS = env_int("OPSDASH_WORKER_SILENT_SECONDS", 60, minimum=2)
OPSDASH_HEARTBEAT_RETENTION_HOURS = env_int("OPSDASH_HEARTBEAT_RETENTION_HOURS", 24, minimum=1)
OPSDASH_SMTP_RATE_PER_SECOND = env_float("OPSDASH_SMTP_RATE_PER_SECOND", 0.0)
OPSDASH_SMTP_RATE_PER_HOUR = env_int("OPSDASH_SMTP_RATE_PER_HOUR", 0, minimum=0)
OPSDASH_SMTP_RATE_PER_DAY = env_int("OPSDASH_SMTP_RATE_PER_DAY", 0, minimum=0)
# A batch that would wait longer than this for a rate-limit token hands its rows back and
# retries later instead of holding a worker.
OPSDASH_RATE_MAX_WAIT_SECONDS = env_float("OPSDASH_RATE_MAX_WAIT_SECONDS", 20.0)
# While Redis is down each worker process sends at the configured rates divided by this, from a
# bucket of its own: set it to the number of worker processes sending at once (all hosts) so
# that together they stay within the limit. The default guesses one host's prefork pool.
OPSDASH_RATE_FALLBACK_SHARE = env_int(
    "OPSDASH_RATE_FALLBACK_SHARE", max(4, os.cpu_count() or 1), minimum=1
)
# Pacing per mailbox provider (campaigns/services/pacing): each provider's rate adapts between a
# floor and a ceiling (messages per second, per channel, shared by every worker): a deferral
# ("slow down", SMTP 421/4.7.x, HTTP 429) multiplies it by OPSDASH_PACING_DECREASE, and every
# second of sending without one adds OPSDASH_PACING_INCREASE. "floor:start:ceiling[:hour:day]";
# empty means no provider limit (OTHER is many small domains, each with its own servers).
OPSDASH_PACING = {
    "google": env_pacing("OPSDASH_PACING_GOOGLE", "1:20:100"),
    "microsoft": env_pacing("OPSDASH_PACING_MICROSOFT", "1:10:50"),
    "yahoo": env_pacing("OPSDASH_PACING_YAHOO", "1:10:50"),
    "apple": env_pacing("OPSDASH_PACING_APPLE", "1:10:40"),
    "gmx": env_pacing("OPSDASH_PACING_GMX", "1:10:40"),
    "other": env_pacing("OPSDASH_PACING_OTHER", ""),
}
OPSDASH_PACING_DECREASE = env_float("OPSDASH_PACING_DECREASE", 0.7)
OPSDASH_PACING_INCREASE = env_float("OPSDASH_PACING_INCREASE", 1.0)
# Deferrals that arrive within this many seconds of a cut are the same congestion: one cut.
OPSDASH_PACING_CUT_SECONDS = env_float("OPSDASH_PACING_CUT_SECONDS", 1.0)
# Recognise Google Workspace and Microsoft 365 domains by their MX records (DNS, cached a day).
OPSDASH_PACING_MX_LOOKUP = env_bool("OPSDASH_PACING_MX_LOOKUP", False)
OPSDASH_PACING_MX_TIMEOUT = env_float("OPSDASH_PACING_MX_TIMEOUT", 2.0)
# A running batch renews a lease this long; a redelivered copy of it waits for the lease to
# lapse before taking over, and the reaper never touches rows under a live lease.
OPSDASH_DELIVERY_HEARTBEAT_SECONDS = env_int("OPSDASH_DELIVERY_HEARTBEAT_SECONDS", 60, minimum=2)
# Transient SMTP failures: first retry after this many seconds, doubling up to five minutes.
OPSDASH_DELIVERY_RETRY_BASE_SECONDS = env_float("OPSDASH_DELIVERY_RETRY_BASE_SECONDS", 5.0)
# This many temporary failures in a row pause the batch (the server is struggling, not the rows).
OPSDASH_DELIVERY_TRANSIENT_STREAK = env_int("OPSDASH_DELIVERY_TRANSIENT_STREAK", 3, minimum=1)
# A batch whose outcome write fails on a lost database connection reconnects and tries again for
# this long (sending nothing new meanwhile) before its task retries; what SMTP accepted is kept
# in the batch's Redis journal either way, so a database restart sends nothing twice.
OPSDASH_DELIVERY_DB_RETRY_SECONDS = env_float("OPSDASH_DELIVERY_DB_RETRY_SECONDS", 60.0)
# The watchdog (every 5 s) re-dispatches the queued rows of a running send that has had no
# progress for this long, no live batch and no retry due, while the delivery queue is empty.
OPSDASH_DELIVERY_ORPHAN_SECONDS = env_int("OPSDASH_DELIVERY_ORPHAN_SECONDS", 10, minimum=1)
OPSDASH_IMPORT_MAX_BYTES = env_int("OPSDASH_IMPORT_MAX_BYTES", 512 * 1024 * 1024, minimum=1)
# Uploads larger than this (or any upload, when the staff member asks) run as a background
# ImportJob on the imports queue instead of django-import-export's in-request preview.
OPSDASH_IMPORT_BACKGROUND_BYTES = env_int("OPSDASH_IMPORT_BACKGROUND_BYTES", 1024 * 1024, minimum=1)
# Rows per COPY chunk of a background import: progress and cancel are checked between chunks.
OPSDASH_IMPORT_CHUNK_ROWS = env_int("OPSDASH_IMPORT_CHUNK_ROWS", 50_000, minimum=1)
# A field longer than this refuses the whole file (it is nearly always a quote never closed).
OPSDASH_IMPORT_MAX_FIELD_CHARS = env_int("OPSDASH_IMPORT_MAX_FIELD_CHARS", 1024 * 1024, minimum=1)
# PostgreSQL session memory of the importing connection: its staging tables and its sorts.
OPSDASH_IMPORT_TEMP_BUFFERS = env_str("OPSDASH_IMPORT_TEMP_BUFFERS", "256MB")
OPSDASH_IMPORT_WORK_MEM = env_str("OPSDASH_IMPORT_WORK_MEM", "256MB")
# Addresses an import dedupes in worker memory (~110 bytes each); beyond, the database does it.
OPSDASH_IMPORT_DEDUPE_IN_MEMORY = env_int("OPSDASH_IMPORT_DEDUPE_IN_MEMORY", 2_000_000, minimum=0)
# An import of more rows than this never runs in the web request, whatever its size in bytes
# (a file of short lines): it goes to the background path.
OPSDASH_IMPORT_SYNC_MAX_ROWS = env_int("OPSDASH_IMPORT_SYNC_MAX_ROWS", 20_000, minimum=1)
# Retention (docs/operations.md, "Retention"): a finished import's uploaded file and rejected-row
# report are deleted after this many days; a job uploaded but never started is cancelled and
# its file deleted after OPSDASH_IMPORT_UNSTARTED_HOURS.
OPSDASH_IMPORT_RETENTION_DAYS = env_int("OPSDASH_IMPORT_RETENTION_DAYS", 30, minimum=1)
OPSDASH_IMPORT_UNSTARTED_HOURS = env_int("OPSDASH_IMPORT_UNSTARTED_HOURS", 24, minimum=1)
OPSDASH_TASK_RESULT_RETENTION_DAYS = env_int("OPSDASH_TASK_RESULT_RETENTION_DAYS", 30, minimum=1)
# Four-eyes rule: when on, the last editor of a campaign cannot schedule or send it.
OPSDASH_FOUR_EYES = env_bool("OPSDASH_FOUR_EYES", False)
# Where the local SMTP catcher of the demo keeps its mail; the admin shows it when set.
OPSDASH_MAILBOX_DIR = env_optional("OPSDASH_MAILBOX_DIR")
# The most one rendered part of a message may weigh: each body, and the subject. A campaign
# whose sample render is already larger is refused at save; a recipient whose data makes one
# larger fails alone, with the reason on its delivery.
OPSDASH_TEMPLATE_MAX_BYTES = env_int("OPSDASH_TEMPLATE_MAX_BYTES", 512 * 1024, minimum=1024)
OPSDASH_TEMPLATE_SUBJECT_MAX_BYTES = env_int("OPSDASH_TEMPLATE_SUBJECT_MAX_BYTES", 1024, minimum=78)
# The most a campaign body may weigh as written: refused at save, before Markdown, the
# sanitiser or the CSS inliner spend time on it.
OPSDASH_BODY_MAX_BYTES = env_int("OPSDASH_BODY_MAX_BYTES", 512 * 1024, minimum=1024)
# A save warns when a personalisation tag would be empty for more than this share (percent)
# of the campaign's audience.
OPSDASH_EMPTY_TAG_WARN_PERCENT = env_int("OPSDASH_EMPTY_TAG_WARN_PERCENT", 10, minimum=0)

# --- Celery ---------------------------------------------------------------------------------
# Queue names carry an optional prefix so that several test runs can share one broker.
QUEUE_PREFIX = env_str("OPSDASH_QUEUE_PREFIX", "")
QUEUE_DELIVERY = f"{QUEUE_PREFIX}delivery"
QUEUE_PRIORITY = f"{QUEUE_PREFIX}priority"
QUEUE_IMPORTS = f"{QUEUE_PREFIX}imports"
QUEUE_DEFAULT = f"{QUEUE_PREFIX}default"
# Every queue, in the order the status panel lists them; workers and the app declare these.
QUEUES = (QUEUE_DELIVERY, QUEUE_PRIORITY, QUEUE_IMPORTS, QUEUE_DEFAULT)
# Declares every queue above as a RabbitMQ quorum queue (replicated across a cluster's nodes)
# bound to a topic exchange, so that countdown retries go through Celery's native delayed
# delivery instead of waiting unacked in a worker. Needs RabbitMQ 3.10 or later; a queue that
# exists already as a classic queue cannot change type (docs/operations.md, "RabbitMQ and
# Celery settings that matter", has the migration).
OPSDASH_QUORUM_QUEUES = env_bool("OPSDASH_QUORUM_QUEUES", False)

_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_optional("CELERY_BROKER_URL") or (
    "amqp://guest:guest@127.0.0.1:5672//" if PROFILE == "services" else "filesystem://"
)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Publisher confirms: publish() returns only once RabbitMQ has taken the message.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
if OPSDASH_QUORUM_QUEUES and not CELERY_BROKER_URL.startswith(("amqp", "pyamqp")):
    raise ImproperlyConfigured(
        "OPSDASH_QUORUM_QUEUES=true needs RabbitMQ: set CELERY_BROKER_URL to an amqp:// URL."
    )
# The delayed-delivery queues Celery declares for countdown retries when quorum queues are on:
# quorum too, so a retry waiting in them survives the loss of a cluster node.
CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = "quorum"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django_celery_results' table, through a backend that reconnects and retries (about 30 s of
# backoff) when the database drops the connection, so a result is never left at STARTED by a
# database restart and a task delivered meanwhile is not lost before its body runs.
CELERY_RESULT_BACKEND = "opsdash.results_backend:ResilientDatabaseBackend"
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
CELERY_RESULT_BACKEND_BASE_SLEEP_BETWEEN_RETRIES_MS = 1000
CELERY_RESULT_BACKEND_MAX_SLEEP_BETWEEN_RETRIES_MS = 8000
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "django-cache"
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = QUEUE_DEFAULT
CELERY_TASK_ROUTES = {
    "campaigns.tasks.deliver_batch": {"queue": QUEUE_DELIVERY},
    "campaigns.tasks.send_test_message": {"queue": QUEUE_PRIORITY},
    "campaigns.tasks.run_import": {"queue": QUEUE_IMPORTS},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Installed into the database by the DatabaseScheduler; campaigns add their own PeriodicTasks.
CELERY_BEAT_SCHEDULE = {
    "reap-deliveries": {"task": "campaigns.tasks.reap_deliveries", "schedule": 60.0},
    # Sends whose queued rows lost their batch messages (an outage, a killed worker) go on
    # within seconds; a run older than its period is dropped rather than piled up.
    "redispatch-orphans": {
        "task": "campaigns.tasks.redispatch_orphans",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    # Stored delivery events (webhooks, bounce mail) applied in bulk. Each store asks for a
    # run itself; this is the safety net for an ask that was lost (a broker blip).
    "apply-events": {
        "task": "campaigns.tasks.apply_events",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    # Batched purge of old TaskResult rows (OPSDASH_TASK_RESULT_RETENTION_DAYS), hourly so
    # each run has little to do.
    "purge-task-results": {"task": "campaigns.tasks.purge_task_results", "schedule": 3600.0},
    # Uploaded import files and rejected-row reports past their retention, daily.
    "purge-import-files": {"task": "campaigns.tasks.purge_import_files", "schedule": 86400.0},
}
# Celery's built-in backend_cleanup deletes every expired result in one statement; switched
# off (no expiry) in favour of purge_task_results above.
CELERY_RESULT_EXPIRES = None
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# RabbitMQ redelivers an unacked message after consumer_timeout (30 min by default); a batch is
# far shorter than that, and long ETAs are never used.
CELERY_TASK_TIME_LIMIT = env_int("OPSDASH_TASK_TIME_LIMIT", 1800, minimum=60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
# A batch cut off from the broker keeps going: its rows are in PostgreSQL, not RabbitMQ, and
# the redelivered copy of its message waits on the batch lease and then finds nothing left to
# claim. Cancelling it instead would re-send every message it had sent since its last write.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_ALWAYS_EAGER = env_bool("OPSDASH_CELERY_EAGER", False)

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("OPSDASH_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "mail.log": {"level": "WARNING"},  # aiosmtpd logs every connection at INFO
        "flufl.bounce": {"level": "WARNING"},  # logs each of its detectors at INFO
    },
}

# --- Admin (Unfold) -------------------------------------------------------------------------
UNFOLD = {
    "SITE_TITLE": "opsdash",
    "SITE_HEADER": "opsdash",
    "SITE_SUBHEADER": _("Email operations console"),
    "SITE_SYMBOL": "campaign",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "ENVIRONMENT": "opsdash.admin_site.environment_callback",
    "DASHBOARD_CALLBACK": "campaigns.dashboard.dashboard_callback",
    "STYLES": [lambda request: static("campaigns/admin.css")],
    "SITE_FAVICONS": [
        {
            "rel": "icon",
            "type": "image/svg+xml",
            "href": lambda request: static("campaigns/favicon.svg"),
        }
    ],
    # Posts the state-changing action links (send, schedule, pause…) with the CSRF token.
    "SCRIPTS": [lambda request: static("campaigns/post_actions.js")],
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": "opsdash.admin_site.navigation",
    },
}
