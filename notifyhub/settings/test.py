"""`make test`: real PostgreSQL and Redis, the provider sandbox, short leases."""

from .base import *  # noqa: F403
from .base import REDIS_URL, env

# Tests use their own Redis database so a running `make run` is not disturbed.
TEST_REDIS_URL = env("TEST_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/15")
CELERY_BROKER_URL = TEST_REDIS_URL
RESILIENCE_REDIS_URL = TEST_REDIS_URL
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": TEST_REDIS_URL,
        "KEY_PREFIX": "notifyhub-test",
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# No collected static files in tests: serve nothing through WhiteNoise.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405
# Throttle and quota counters in the tests' Redis database.
API_LIMITS_REDIS_URL = TEST_REDIS_URL

# --- Client webhooks -------------------------------------------------------------------------
# Receivers in tests listen on 127.0.0.1 (the tests of the guard turn it on).
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
# No subscriptions cache: Redis is shared by concurrent test sessions whose rows are never
# committed (the cache's own tests turn it on).
WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS = 0

# --- In-app inbox ----------------------------------------------------------------------------
# Live events on the tests' Redis database; the allowed origins read on every check (rows of
# one test are not another's).
INBOX_REDIS_URL = TEST_REDIS_URL
INBOX_CORS_CACHE_SECONDS = 0
