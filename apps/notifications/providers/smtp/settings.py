"""Any SMTP server (email failover; the sandbox runs one on 2525). No receipts. Its settings are
declared here, nowhere else: SMTP_<SUFFIX> from a settings module or the environment, else these
defaults (providers/conf.py)."""

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..declaration import ProviderDeclaration, Value


def _sandbox_host(get: Callable[[str], Any]) -> Any:
    return urlsplit(get("TEST_MODE_SANDBOX_URL")).hostname or ""


DECLARATION = ProviderDeclaration(
    senders={"smtp": ("email", "SmtpProvider")},
    endpoint="SMTP_HOST",
    test_mode_endpoints=("TEST_MODE_SMTP_HOST",),
    rate_limits={"smtp": 50},
    values={
        "HOST": Value("127.0.0.1", test_mode=_sandbox_host),
        "PORT": Value(2525, test_mode=2525),
        "USERNAME": Value(""),
        "PASSWORD": Value(""),
        "USE_TLS": Value(False),
        "TIMEOUT_SECONDS": Value(10.0),
    },
)
