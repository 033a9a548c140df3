"""Production: secrets must come from the environment; `manage.py check --deploy` is clean."""

import os

from django.core.exceptions import ImproperlyConfigured

from apps.core.crypto import parse_fernet_keys
from apps.notifications.providers.conf import required_missing

from .base import *  # noqa: F403
from .base import DEV_PII_ENCRYPTION_KEY, DEV_PII_HASH_KEY, LOGGING, env, env_bool, env_int, log_formatter

SECRET_KEY = os.environ["SECRET_KEY"]
# PII at rest: no default, never the development keys (docs/operations.md).
PII_ENCRYPTION_KEYS = parse_fernet_keys(os.environ["PII_ENCRYPTION_KEYS"])
if DEV_PII_ENCRYPTION_KEY in PII_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("PII_ENCRYPTION_KEYS holds the local development key.")
PII_HASH_KEY = os.environ["PII_HASH_KEY"]
if len(PII_HASH_KEY) < 32 or PII_HASH_KEY == DEV_PII_HASH_KEY:
    raise ImproperlyConfigured("PII_HASH_KEY must be a secret of at least 32 characters "
                               "(not the local development one).")
DEBUG = False
# Logs: one JSON object per line (LOG_FORMAT=text for the plain lines of `make run`).
LOG_FORMAT = env("LOG_FORMAT", "json")
LOGGING["handlers"]["console"]["formatter"] = log_formatter(LOG_FORMAT)
# Providers: their production defaults (real hosts) from their folders' declarations; the
# secrets they require come from the environment (apps/notifications/providers/conf.py).
PROVIDER_SETTINGS_PROFILE = "production"
if _missing := required_missing():
    raise ImproperlyConfigured(f"Missing provider settings: {', '.join(_missing)}.")
PUBLIC_BASE_URL = os.environ["PUBLIC_BASE_URL"].rstrip("/")
# The inbox's SSE stream (the async stream process, docs/inbox.md): behind the same public
# host unless INBOX_STREAM_URL says otherwise (never the dev default 127.0.0.1:8001).
INBOX_STREAM_URL = os.environ.get("INBOX_STREAM_URL", f"{PUBLIC_BASE_URL}/api/v1/inbox/stream")
# Test keys: their sends go to a provider sandbox process run next to the service
# (`python -m sandbox serve`, docs/providers.md "Test mode"), never to the providers
# above. Only the endpoints and the sandbox's own credentials come from the environment
# (TEST_MODE_SANDBOX_URL …, declared with each provider); nothing is derived from the live
# settings, and `check` refuses real provider hosts there.
DEMO_API_KEY = ""
# The demo page mints recipient tokens without an API key: never in production.
DEMO_PAGES = False
# Client webhooks never reach private networks in production (allow CIDRs explicitly with
# WEBHOOKS_ALLOWED_NETWORKS).
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# Staff must use a TOTP second factor in the admin (set to false only with another factor in
# front of the admin, e.g. an SSO proxy).
ADMIN_REQUIRE_OTP = env_bool("ADMIN_REQUIRE_OTP", True)
