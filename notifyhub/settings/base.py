"""Settings shared by every environment.

Everything comes from environment variables with safe local defaults; secrets have no
production default (see production.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "apps.core",
    "apps.clients",
    "apps.recipients",
    "apps.templates",
    "apps.notifications",
    "apps.webhooks",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
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
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
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
    "DEFAULT_PERMISSION_CLASSES": ["apps.clients.authentication.IsClient"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NotifyHub API",
    "DESCRIPTION": "Multi-channel notifications: email, SMS, WhatsApp and push.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "apps.notifications.models.Channel",
        "PriorityEnum": "apps.core.queues.Priority.choices",
        "DeliveryStatusEnum": "apps.notifications.models.DeliveryStatus",
        "NotificationStatusEnum": "apps.notifications.models.NotificationStatus",
    },
}

# --- Celery (celery_app.py reads these through namespace CELERY_) ----------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
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
# A delivery claimed by a worker ('sending') whose outcome is not recorded within this lease is
# assumed lost (worker crash) and handed out again by the relay sweeper.
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 120)
# A delivery enqueued but not claimed within this time is re-enqueued by the relay sweeper.
RELAY_REQUEUE_AFTER_SECONDS = env_int("RELAY_REQUEUE_AFTER_SECONDS", 120)
RELAY_SWEEP_INTERVAL_SECONDS = env_float("RELAY_SWEEP_INTERVAL_SECONDS", 15.0)
RELAY_SWEEP_BATCH = env_int("RELAY_SWEEP_BATCH", 5000)
# Basic bounded retry (the full policy lives with the channels work).
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 5)
RETRY_INITIAL_SECONDS = env_float("RETRY_INITIAL_SECONDS", 1.0)
RETRY_MAX_SECONDS = env_float("RETRY_MAX_SECONDS", 300.0)
RETRY_JITTER = env_float("RETRY_JITTER", 0.25)
MAX_RECIPIENTS_PER_REQUEST = env_int("MAX_RECIPIENTS_PER_REQUEST", 10000)

# --- Providers -------------------------------------------------------------------------------
# channel -> ordered provider names (first is primary); see apps/notifications/channels/.
CHANNEL_PROVIDERS = {
    "email": ["sendgrid"],
}
SENDGRID_API_KEY = env("SENDGRID_API_KEY", "sandbox-sendgrid-key")
SENDGRID_API_HOST = env("SENDGRID_API_HOST", "http://127.0.0.1:8025")
SENDGRID_TIMEOUT_SECONDS = env_float("SENDGRID_TIMEOUT_SECONDS", 10.0)
# Base64 DER public key from SendGrid's "Signed Event Webhook" settings.
SENDGRID_WEBHOOK_PUBLIC_KEY = env("SENDGRID_WEBHOOK_PUBLIC_KEY", "")
# Signed batches older than this (or this far in the future) are refused as replays.
PROVIDER_WEBHOOK_MAX_AGE_SECONDS = env_int("PROVIDER_WEBHOOK_MAX_AGE_SECONDS", 600)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "NotifyHub <notifications@notifyhub.local>")

# --- Demo ------------------------------------------------------------------------------------
DEMO_API_KEY = env("DEMO_API_KEY", "nh_demo_localdevelopmentonly0000000000000000")
DEMO_ADMIN_USERNAME = env("DEMO_ADMIN_USERNAME", "admin")
DEMO_ADMIN_PASSWORD = env("DEMO_ADMIN_PASSWORD", "admin")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}
