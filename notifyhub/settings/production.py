"""Production: secrets must come from the environment; `manage.py check --deploy` is clean."""

import os

from .base import *  # noqa: F403
from .base import env_bool, env_int

SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
SENDGRID_API_KEY = os.environ["SENDGRID_API_KEY"]
SENDGRID_API_HOST = os.environ.get("SENDGRID_API_HOST", "https://api.sendgrid.com")
SENDGRID_WEBHOOK_PUBLIC_KEY = os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"]
DEMO_API_KEY = ""
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
