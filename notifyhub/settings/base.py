"""Settings shared by every environment.

Everything comes from environment variables with safe local defaults; secrets have no
production default (see production.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


SECRET_KEY = env("SECRET_KEY", "insecure-local-development-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]

INSTALLED_APPS = [
    # django.contrib.admin with the two-factor admin site (apps/accounts/site.py).
    "apps.accounts.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI and ReDoc from our own static files, not a CDN (SPECTACULAR_SETTINGS).
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "apps.core",
    "apps.clients",
    "apps.recipients",
    "apps.templates",
    "apps.notifications",
    "apps.webhooks",
    "apps.preferences",
    "apps.segments",
    "apps.scheduling",
    "apps.audit",
    "apps.accounts",
    "apps.privacy",
    "apps.inbox",
]

MIDDLEWARE = [
    # The HTTP metrics the alerts and the dashboard read, around everything below
    # (apps/core/http_metrics.py).
    "apps.core.http_metrics.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.RejectNulCharactersMiddleware",
    "apps.core.middleware.RequestBodyGuardMiddleware",
    # CORS for /api/v1/inbox/… only, per client's allowed origins (apps/inbox/cors.py).
    "apps.inbox.cors.InboxCorsMiddleware",
    "apps.audit.middleware.AuditContextMiddleware",
    # Sessions, the logged-in user, its second factor and flash messages are for the admin and
    # other pages; the JSON API (/api/v1/, API keys) skips them (apps/core/middleware.py).
    "apps.core.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "apps.core.middleware.BrowserAuthenticationMiddleware",
    "apps.accounts.middleware.BrowserOTPMiddleware",
    "apps.core.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "notifyhub.urls"
WSGI_APPLICATION = "notifyhub.wsgi.application"
ASGI_APPLICATION = "notifyhub.asgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", "postgres://postgres@127.0.0.1:54329/notifyhub"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# A request never waits long for a database that is down or unreachable: connecting gives up
# after DB_CONNECT_TIMEOUT seconds (libpq's connect_timeout; 2 s is its minimum) and the API
# answers 503 with Retry-After (apps/core/exceptions.py). A DATABASE_URL's own
# `?connect_timeout=` wins.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3))
# Parameters travel apart from the statement's text (server-side binding: psycopg neither
# quotes values into the text nor re-parses it), and a statement run DB_PREPARE_THRESHOLD
# times on a connection is prepared: PostgreSQL parses and plans it once per connection
# (about a quarter of its CPU per single send; docs/operations.md "Fourth round"). An empty
# DB_PREPARE_THRESHOLD turns preparing off (for a pooler that cannot keep prepared
# statements, e.g. PgBouncer in transaction mode before 1.21); DB_SERVER_SIDE_BINDING=0 goes
# back to client-side binding.
DATABASES["default"]["OPTIONS"]["server_side_binding"] = env_bool("DB_SERVER_SIDE_BINDING", True)
if env("DB_PREPARE_THRESHOLD", "5").strip():
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env_int("DB_PREPARE_THRESHOLD", 5)
# apps/core/db: Django's PostgreSQL backend with django-prometheus' query metrics, and a health
# check that costs no round trip while the connection's socket is quiet.
DATABASES["default"]["ENGINE"] = "apps.core.db"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:63799/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "notifyhub",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Staff: roles (apps/accounts/roles.py) and the TOTP second factor ----------------------
# True: staff must confirm a TOTP device before using the admin (production.py turns it on).
ADMIN_REQUIRE_OTP = env_bool("ADMIN_REQUIRE_OTP", False)
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", "NotifyHub")
# The device admin never shows another user's key or QR code.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# The project's own translations (the preference center: English and French), compiled .mo
# files committed next to their .po (scripts/compile_messages.py rebuilds them without gettext).
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.clients.authentication.ApiKeyAuthentication"],
    # A valid key (401 otherwise), then the scope the view declares for the method (403).
    "DEFAULT_PERMISSION_CLASSES": ["apps.clients.authentication.IsClient",
                                   "apps.clients.scopes.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSONParser + UTF-8, depth, NUL and lone-surrogate checks (apps/core/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.GuardedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.ScopedAutoSchema",  # + each operation's scope
    "UNAUTHENTICATED_USER": None,
    # Per client (API key's tenant), shared by every web process through Redis
    # (apps/clients/throttling.py); per-client overrides in API_THROTTLE_RATES_BY_CLIENT.
    "DEFAULT_THROTTLE_CLASSES": ["apps.clients.throttling.ClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"client": env("API_THROTTLE_RATE", "1000/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NotifyHub API",
    "DESCRIPTION": "Multi-channel notifications: email, SMS, WhatsApp and push.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ (Swagger UI) and /api/redoc/ load their JS and CSS from STATIC_URL
    # (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error statuses, with the error format (apps/core/openapi.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "apps.core.openapi.error_responses_hook"],
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "apps.notifications.models.Channel",
        "PriorityEnum": "apps.core.queues.Priority.choices",
        "DeliveryStatusEnum": "apps.notifications.models.DeliveryStatus",
        "NotificationStatusEnum": "apps.notifications.models.NotificationStatus",
    },
}

# --- Celery (celery_app.py reads these through namespace CELERY_) ----------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
# kombu's Redis transport, keeping one Redis client object per channel (apps/core/broker.py).
CELERY_BROKER_TRANSPORT = ("apps.core.broker:Transport"
                           if urlsplit(CELERY_BROKER_URL).scheme in ("redis", "rediss") else None)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A message not acknowledged within this many seconds is redelivered by Redis. Every countdown
# we use (retry backoff max 300 s) and every task's run time stays well below it.
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 3600)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Delivery pipeline -----------------------------------------------------------------------
# Deliveries per dispatch task for the non-critical queues (critical goes one per task).
DISPATCH_CHUNK_SIZE = env_int("DISPATCH_CHUNK_SIZE", 100)
# Concurrent provider calls inside one dispatch task (I/O bound HTTP calls).
DISPATCH_CONCURRENCY = env_int("DISPATCH_CONCURRENCY", 16)
# A dispatch task with room in its batch (a single send) also claims the deliveries of its
# priority whose message has waited this long in the queue, and sends them in its thread pool
# (dispatch.deliveries_claim_waiting): a stream of single sends faster than one provider call
# per worker process, or the backlog after an outage, does not wait its turn message by
# message. 0 turns it off.
DISPATCH_COALESCE_AFTER_SECONDS = env_float("DISPATCH_COALESCE_AFTER_SECONDS", 2.0)
# Single sends (small non-critical accepts) accepted within this many milliseconds of the first
# share one dispatch task, which waits until the window closes (enqueue.py, "Gathering"): a
# stream of single sends costs the workers and PostgreSQL per chunk, not per send, for at most
# this much added latency. 100 ms: at 50 sends/s, 25 → 100 ms cut the server's CPU per
# notification by ~30 % (docs/operations.md, tenth round), well inside the seeds' processing
# times (high < 30 s, normal < 5 min). 0 = one task per send.
DISPATCH_GATHER_WINDOW_MS = env_float("DISPATCH_GATHER_WINDOW_MS", 100.0)
# A delivery claimed by a worker ('sending') whose outcome is not recorded within this lease is
# assumed lost (worker crash) and handed out again by the relay sweeper. It bounds one provider
# call (every *_TIMEOUT_SECONDS below is 10 s) plus a margin; a worker still holding rows renews
# their lease every DELIVERY_LEASE_RENEW_SECONDS (at most half the lease) while its batch runs,
# so a long batch never outlives its lease while the worker is alive. `critical` work (one
# delivery per task) gets the shorter lease: a crash delays an OTP by seconds.
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 30)
DELIVERY_LEASE_SECONDS_CRITICAL = env_int("DELIVERY_LEASE_SECONDS_CRITICAL", 15)
DELIVERY_LEASE_RENEW_SECONDS = env_float("DELIVERY_LEASE_RENEW_SECONDS", 10.0)
# A delivery enqueued but not claimed within this time is re-enqueued by the relay sweeper
# (sooner when its publish failed or the broker lost its data: apps/notifications/relay.py).
RELAY_REQUEUE_AFTER_SECONDS = env_int("RELAY_REQUEUE_AFTER_SECONDS", 120)
# The sweep is one indexed statement (~1 ms with nothing due, docs/operations.md "Leases and
# re-publish"): every 5 s, a dead worker's rows are re-queued within 5 s of their lease's end.
RELAY_SWEEP_INTERVAL_SECONDS = env_float("RELAY_SWEEP_INTERVAL_SECONDS", 5.0)
RELAY_SWEEP_BATCH = env_int("RELAY_SWEEP_BATCH", 5000)
# Basic bounded retry (the full policy lives with the channels work).
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 5)
RETRY_INITIAL_SECONDS = env_float("RETRY_INITIAL_SECONDS", 1.0)
RETRY_MAX_SECONDS = env_float("RETRY_MAX_SECONDS", 300.0)
RETRY_JITTER = env_float("RETRY_JITTER", 0.25)
# Per-channel overrides of the four numbers above (a client's delivery_policy overrides these).
RETRY_POLICY_BY_CHANNEL: dict[str, dict[str, float]] = {}
MAX_RECIPIENTS_PER_REQUEST = env_int("MAX_RECIPIENTS_PER_REQUEST", 50_000)
# A send (or bulk request) of at least this many deliveries is accepted as a job: the request
# validates and writes the notifications and the job, workers expand it into deliveries
# (apps/notifications/fanout.py). The first slice is small so sending starts at once.
ACCEPT_FANOUT_MIN_DELIVERIES = env_int("ACCEPT_FANOUT_MIN_DELIVERIES", 2000)
ACCEPT_FANOUT_FIRST_SLICE = env_int("ACCEPT_FANOUT_FIRST_SLICE", 200)
ACCEPT_FANOUT_SLICE = env_int("ACCEPT_FANOUT_SLICE", 2500)
# A job whose expand task has not advanced it within this time is re-published by the sweeper.
ACCEPT_JOB_LEASE_SECONDS = env_int("ACCEPT_JOB_LEASE_SECONDS", 30)
# API keys are cached in each web process for this long (revocation reaches every process
# within it; the process that revokes forgets at once). 0 = look the key up on every request.
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 5.0)

# --- Providers -------------------------------------------------------------------------------
# channel -> ordered provider names (first is primary); see apps/notifications/providers/.
CHANNEL_PROVIDERS = {
    "email": ["sendgrid", "smtp"],
    "sms": ["twilio_sms", "vonage_sms"],
    "whatsapp": ["twilio_whatsapp", "vonage_whatsapp"],
    "push": ["fcm"],
    # The in-app inbox (apps/notifications/providers/in_app): stored, no provider is called.
    "in_app": ["in_app"],
}
# Recipient preferences (apps/preferences): categories that bypass opt-outs, quiet hours and caps.
PREFERENCES_CRITICAL_CATEGORIES = {
    c for c in env("PREFERENCES_CRITICAL_CATEGORIES", "security,otp").split(",") if c
}
PREFERENCES_HELP_TEXT = env(
    "PREFERENCES_HELP_TEXT",
    "NotifyHub notifications. Reply STOP to unsubscribe, START to resubscribe. "
    "Msg & data rates may apply.",
)
PREFERENCES_CACHE_SECONDS = env_int("PREFERENCES_CACHE_SECONDS", 3600)

# Shared per provider account through Redis (apps/notifications/resilience/).
PROVIDER_GATES_ENABLED = env_bool("PROVIDER_GATES_ENABLED", True)
# Rate limits (messages per second) are declared by each provider's folder
# (apps/notifications/providers/<name>/settings.py; `<NAME>_RATE_PER_SECOND` in the environment
# overrides one). Entries here override both, per provider or provider account ("twilio_sms",
# "twilio_sms:default"); a dict allows "burst" too.
PROVIDER_RATE_LIMITS: dict[str, float | dict[str, float]] = {}
# The share of each provider account's rate kept for critical and high sends (apps/notifications/
# gate.py): normal and low get the rest, critical and high their share plus whatever normal and
# low leave spare, so an urgent send never waits behind a backlog's booked tokens. 0 = one
# bucket for every priority.
PROVIDER_URGENT_SHARE = env_float("PROVIDER_URGENT_SHARE", 0.1)
CIRCUIT_BREAKER = {
    "window_seconds": env_float("BREAKER_WINDOW_SECONDS", 30),
    "min_requests": env_int("BREAKER_MIN_REQUESTS", 20),
    "failure_ratio": env_float("BREAKER_FAILURE_RATIO", 0.5),
    "open_seconds": env_float("BREAKER_OPEN_SECONDS", 10),
    "max_open_seconds": env_float("BREAKER_MAX_OPEN_SECONDS", 30),
    # Half-open: this many probe calls at a time, this many successes close the breaker; a
    # probe slot not reported within probe_timeout_seconds (one provider call) is reclaimed.
    "half_open_probes": env_int("BREAKER_HALF_OPEN_PROBES", 3),
    "half_open_successes": env_int("BREAKER_HALF_OPEN_SUCCESSES", 3),
    "probe_timeout_seconds": env_float("BREAKER_PROBE_TIMEOUT_SECONDS", 15),
    # A provider that cannot be reached (refused, reset, timeout) this many calls in a row is
    # down whatever the volume: its breaker opens (keep it below DELIVERY_MAX_ATTEMPTS).
    "unreachable_after": env_int("BREAKER_UNREACHABLE_AFTER", 3),
}
# Where providers call NotifyHub back (status callbacks are signed over this exact URL).
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Signed batches older than this (or this far in the future) are refused as replays.
PROVIDER_WEBHOOK_MAX_AGE_SECONDS = env_int("PROVIDER_WEBHOOK_MAX_AGE_SECONDS", 600)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "NotifyHub <notifications@notifyhub.local>")

# Providers: each one's settings (credentials, hosts, senders, timeouts, and their TEST_MODE_
# copies) are declared in its folder, apps/notifications/providers/<name>/settings.py, and
# resolved by name (SENDGRID_API_KEY: a settings module, else the environment, else the
# declared default; providers/conf.py). "production" switches to the production defaults
# (real hosts; required secrets).
PROVIDER_SETTINGS_PROFILE = "local"

# NotifyHub's own emails to its clients (a webhook endpoint disabled, apps/webhooks/outbound/
# notify.py): Django's mail, by default through the SMTP provider's server (the sandbox's
# inbox on 2525 locally), from DEFAULT_FROM_EMAIL.
EMAIL_HOST = env("EMAIL_HOST", env("SMTP_HOST", "127.0.0.1"))
EMAIL_PORT = env_int("EMAIL_PORT", env_int("SMTP_PORT", 2525))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", env("SMTP_USERNAME"))
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", env("SMTP_PASSWORD"))
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", env_bool("SMTP_USE_TLS"))
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)


# --- Test mode (API keys created as "test", `nh_test_…`) ------------------------------------
# Notifications accepted with a test key are sent through the same provider classes, built from
# these settings instead of the live ones above (apps/notifications/providers/base.py): all of
# them point at a provider sandbox (`python -m sandbox`), whose reserved addresses simulate
# delivered / bounced / failed. A missing test-mode setting leaves its provider unconfigured; it
# never falls back to the live value. `manage.py check` refuses real provider hosts here
# (notifications.E001). Receipts come back to /api/v1/webhooks/test/{sendgrid,twilio,whatsapp}.
# Each provider's TEST_MODE_* settings are declared in its folder (see "Providers" above).
TEST_MODE_SANDBOX_URL = env("TEST_MODE_SANDBOX_URL", "http://127.0.0.1:8025").rstrip("/")
# Test sends never count against DAILY_DELIVERY_QUOTA; they have their own daily cap per client.
TEST_MODE_DAILY_DELIVERY_QUOTA = env_int("TEST_MODE_DAILY_DELIVERY_QUOTA", 100_000)

# --- PII at rest (apps/core/crypto.py; docs/operations.md "PII encryption keys") -----------
# Fernet keys, comma-separated, newest first: the first encrypts new values, every one
# decrypts. Rotate by putting a new key first and running `manage.py rotate_pii_keys`.
# These defaults are for local development and tests only; production.py requires both.
DEV_PII_ENCRYPTION_KEY = "bm90aWZ5aHViLWxvY2FsLWRldi1waWkta2V5LTAwMDE="
DEV_PII_HASH_KEY = "notifyhub-local-development-pii-hash-key"
PII_ENCRYPTION_KEYS = [k.strip() for k in env("PII_ENCRYPTION_KEYS", DEV_PII_ENCRYPTION_KEY).split(",")
                       if k.strip()]
# HMAC-SHA256 key of the `*_hash` lookup columns; changing it needs `rotate_pii_keys --rehash`.
PII_HASH_KEY = env("PII_HASH_KEY", DEV_PII_HASH_KEY)

# --- Demo ------------------------------------------------------------------------------------
DEMO_API_KEY = env("DEMO_API_KEY", "nh_demo_localdevelopmentonly0000000000000000")
# A test key for the demo client (sends only to the sandbox); empty: none.
DEMO_TEST_API_KEY = env("DEMO_TEST_API_KEY", "nh_test_demolocaldevelopmentonly000000000000")
DEMO_ADMIN_USERNAME = env("DEMO_ADMIN_USERNAME", "admin")
DEMO_ADMIN_PASSWORD = env("DEMO_ADMIN_PASSWORD", "admin")
# /demo/inbox/: the inbox widget for the demo recipient, minting tokens without an API key
# (apps/core/demo_page.py). Local development only (settings/local.py turns it on).
DEMO_PAGES = env_bool("DEMO_PAGES", False)

# "text" (`make run`, the default here) or "json": one JSON object per line with time, level,
# logger, message, request_id, client, notification_id, delivery_id, task and queue (the
# default of production settings; docs/operations.md "Logs").
LOG_FORMAT = env("LOG_FORMAT", "text")


def log_formatter(log_format: str) -> str:
    if log_format not in ("text", "json"):
        raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {log_format!r}.")
    return "json" if log_format == "json" else "plain"


LOGGING_CONFIG = "apps.core.logging.configure_logging"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "apps.core.logging.RequestIdFilter"},
        # client, notification_id, delivery_id; the Celery task's name and queue.
        "log_context": {"()": "apps.core.logging.ContextFilter"},
        # Safety net: emails and E.164 numbers are masked in every line (apps/core/logging.py).
        "redact_pii": {"()": "apps.core.logging.RedactPIIFilter"},
        # "Not Found: /api/v1/recipients/<external id>": paths masked as in the access log.
        "mask_paths": {"()": "apps.core.logging.MaskRequestPathFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "apps.core.logging.JsonLineFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": log_formatter(LOG_FORMAT),
            "filters": ["request_id", "log_context", "redact_pii"],
        },
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["mask_paths"]},
        # The Twilio SDK logs every request at INFO (URLs carry the account SID).
        "twilio.http_client": {"level": "WARNING"},
        # The SendGrid SDK logs every request at DEBUG with its payload (the recipient's
        # address, the message) and headers (the API key): never below WARNING.
        "python_http_client": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}

# --- Metrics -----------------------------------------------------------------------------------
# django-prometheus' request latency histogram: a bucket at 200 ms, the API's p95 objective
# (deploy/prometheus/alerts.yml, NotifyHubApiLatencyP95High).
PROMETHEUS_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5,
                              0.75, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))

# --- API limits ------------------------------------------------------------------------------
# Idempotency-Key records (apps/core/idempotency.py): kept this long; each new record purges up
# to IDEMPOTENCY_PURGE_BATCH expired ones.
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 86_400)
IDEMPOTENCY_PURGE_BATCH = env_int("IDEMPOTENCY_PURGE_BATCH", 100)
# POST /api/v1/notifications/bulk: items per request, and recipients over all items.
BULK_MAX_NOTIFICATIONS = env_int("BULK_MAX_NOTIFICATIONS", 50_000)
BULK_MAX_RECIPIENTS = env_int("BULK_MAX_RECIPIENTS", 100_000)
# Request bodies Django reads into memory (default 2.5 MB): 50,000 bulk items are ~7-15 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 32 * 1024 * 1024)
# A larger Content-Length is answered 413 `request_too_large` on every path, before anything
# reads the body (apps.core.middleware.RequestBodyGuardMiddleware).
# JSON bodies nested deeper than this are refused (400); see apps/core/parsers.py.
API_JSON_MAX_DEPTH = env_int("API_JSON_MAX_DEPTH", 64)
# Request throttle and daily delivery quota counters (apps/clients/throttling.py, quotas.py).
API_LIMITS_REDIS_URL = env("API_LIMITS_REDIS_URL", REDIS_URL)
# Client slug → rate, overriding REST_FRAMEWORK's DEFAULT_THROTTLE_RATES["client"];
# from the environment as "slug=rate,slug=rate" (API_THROTTLE_RATES_BY_CLIENT="acme=5000/min").
API_THROTTLE_RATES_BY_CLIENT: dict[str, str] = dict(
    item.strip().split("=", 1) for item in env("API_THROTTLE_RATES_BY_CLIENT").split(",") if "=" in item
)
# A send's scheduled_at may be at most this many days ahead (422 schedule_too_far_ahead).
SCHEDULED_AT_MAX_AHEAD_DAYS = env_int("SCHEDULED_AT_MAX_AHEAD_DAYS", 366)
# Deliveries a client may have accepted per UTC day (scheduled ones count on the day they are
# accepted); per client slug as "slug=n,slug=n" (DAILY_DELIVERY_QUOTA_BY_CLIENT="acme=500000").
DAILY_DELIVERY_QUOTA = env_int("DAILY_DELIVERY_QUOTA", 10_000_000)
DAILY_DELIVERY_QUOTA_BY_CLIENT: dict[str, int] = {
    slug.strip(): int(n)
    for slug, _, n in (item.partition("=") for item in env("DAILY_DELIVERY_QUOTA_BY_CLIENT").split(","))
    if n.strip()
}

# --- Audit -----------------------------------------------------------------------------------
# Retention (apps/audit/retention.py), run by beat on the maintenance queue and by
# `manage.py retention`. 0 keeps everything. Deliveries and their events go with their
# notification.
NOTIFICATION_RETENTION_DAYS = env_int("NOTIFICATION_RETENTION_DAYS", 90)
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 2555)  # about 7 years
RETENTION_INTERVAL_SECONDS = env_float("RETENTION_INTERVAL_SECONDS", 900.0)
# Notifications per batch (their deliveries go RETENTION_DELIVERY_BATCH_SIZE at a time).
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 500)
RETENTION_DELIVERY_BATCH_SIZE = env_int("RETENTION_DELIVERY_BATCH_SIZE", 5000)
AUDIT_RETENTION_BATCH_SIZE = env_int("AUDIT_RETENTION_BATCH_SIZE", 10000)
# A beat run stops after this long (it shares the maintenance workers with the relay
# sweeper); the next run goes on where it stopped.
RETENTION_TIME_BUDGET_SECONDS = env_float("RETENTION_TIME_BUDGET_SECONDS", 120.0)

# --- In-app inbox (apps/inbox, docs/inbox.md) --------------------------------------------------
# Recipient tokens: how long NotifyHub's last (1 h), and the longest any token may live,
# offline-minted ones included.
INBOX_TOKEN_TTL_SECONDS = env_int("INBOX_TOKEN_TTL_SECONDS", 3600)
INBOX_TOKEN_MAX_TTL_SECONDS = env_int("INBOX_TOKEN_MAX_TTL_SECONDS", 86400)
# Where browsers open the SSE stream (the async stream process; `make run` serves it on :8001).
INBOX_STREAM_URL = env("INBOX_STREAM_URL", "http://127.0.0.1:8001/api/v1/inbox/stream")
# Redis for the live fan-out (pub/sub channels notifyhub:inbox:<client>:<recipient>).
INBOX_REDIS_URL = env("INBOX_REDIS_URL", REDIS_URL)
# Messages expire (and are deleted by the retention task) this long after they were stored.
INBOX_RETENTION_DAYS = env_int("INBOX_RETENTION_DAYS", 90)
INBOX_RETENTION_INTERVAL_SECONDS = env_float("INBOX_RETENTION_INTERVAL_SECONDS", 3600.0)
INBOX_RETENTION_BATCH_SIZE = env_int("INBOX_RETENTION_BATCH_SIZE", 5000)
# Messages per page of GET /api/v1/inbox/messages (at most INBOX_MAX_PAGE_SIZE with ?limit=).
INBOX_PAGE_SIZE = env_int("INBOX_PAGE_SIZE", 25)
INBOX_MAX_PAGE_SIZE = env_int("INBOX_MAX_PAGE_SIZE", 100)
# How long a process keeps the clients' allowed origins before reading them again.
INBOX_CORS_CACHE_SECONDS = env_float("INBOX_CORS_CACHE_SECONDS", 30.0)
# Inbox API requests per recipient (a browser's, with its token); empty: no limit.
INBOX_THROTTLE_RATE = env("INBOX_THROTTLE_RATE", "300/min")

# --- Client webhooks -------------------------------------------------------------------------
# The network guard: webhooks never reach loopback, private, link-local, CGNAT … addresses
# unless allowed here. On by default for local development (receivers on 127.0.0.1);
# production.py turns it off. Cloud metadata addresses are refused always.
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", True)
# CIDRs allowed even with the guard on (an internal receiver), comma-separated.
WEBHOOKS_ALLOWED_NETWORKS = [c.strip() for c in env("WEBHOOKS_ALLOWED_NETWORKS", "").split(",")
                             if c.strip()]
WEBHOOKS_TIMEOUT_SECONDS = env_float("WEBHOOKS_TIMEOUT_SECONDS", 15.0)
# Seconds before each attempt (the first immediately); after the last, the message failed.
WEBHOOKS_RETRY_SCHEDULE_SECONDS = [0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
# Longer waits are not task countdowns (they must stay under CELERY_BROKER_VISIBILITY_TIMEOUT):
# the relay sweeper publishes those messages when they are due.
WEBHOOKS_MAX_COUNTDOWN_SECONDS = env_int("WEBHOOKS_MAX_COUNTDOWN_SECONDS", 300)
# An endpoint whose every attempt failed for this long is disabled.
WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS = env_int("WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS", 5 * 86400)
# After a rotation the old secret signs too (a second signature) for this long.
WEBHOOKS_SECRET_ROTATION_OVERLAP_SECONDS = env_int("WEBHOOKS_SECRET_ROTATION_OVERLAP_SECONDS", 86400)
# A published message not claimed within this time is published again by the sweeper.
WEBHOOKS_REQUEUE_AFTER_SECONDS = env_int("WEBHOOKS_REQUEUE_AFTER_SECONDS", 300)
WEBHOOKS_SWEEP_INTERVAL_SECONDS = env_float("WEBHOOKS_SWEEP_INTERVAL_SECONDS", 15.0)
WEBHOOKS_SWEEP_BATCH = env_int("WEBHOOKS_SWEEP_BATCH", 5000)
# Messages of one endpoint per task (sent one after the other).
WEBHOOKS_CHUNK_SIZE = env_int("WEBHOOKS_CHUNK_SIZE", 10)
WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS = env_int("WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS", 300)
WEBHOOKS_MAX_ENDPOINTS_PER_CLIENT = env_int("WEBHOOKS_MAX_ENDPOINTS_PER_CLIENT", 20)
WEBHOOKS_REPLAY_LIMIT = env_int("WEBHOOKS_REPLAY_LIMIT", 10000)

# --- Inbox live stream (apps/stream; docs/inbox.md "Live stream") ------------------------------
# A comment line to every connection this often, so proxies and browsers keep it open.
INBOX_STREAM_HEARTBEAT_SECONDS = env_float("INBOX_STREAM_HEARTBEAT_SECONDS", 30.0)
# The `retry:` hint: how long a browser waits before it reconnects.
INBOX_STREAM_RETRY_MS = env_int("INBOX_STREAM_RETRY_MS", 3000)
# Slow consumers: a connection with more events waiting while it catches up from the database,
# or more bytes unsent, is closed (the browser reconnects with Last-Event-ID and replays).
INBOX_STREAM_QUEUE_SIZE = env_int("INBOX_STREAM_QUEUE_SIZE", 100)
INBOX_STREAM_MAX_BUFFER_BYTES = env_int("INBOX_STREAM_MAX_BUFFER_BYTES", 256 * 1024)
# Messages per replay query (a replay reads pages until it is caught up).
INBOX_STREAM_REPLAY_PAGE = env_int("INBOX_STREAM_REPLAY_PAGE", 200)
# Threads (each with one database connection) that run the stream's short reads.
INBOX_STREAM_DB_THREADS = env_int("INBOX_STREAM_DB_THREADS", 4)
# Streams per process; past it a new one gets 503 with Retry-After.
INBOX_STREAM_MAX_CONNECTIONS = env_int("INBOX_STREAM_MAX_CONNECTIONS", 20000)
