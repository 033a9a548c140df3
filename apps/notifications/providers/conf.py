"""Provider settings resolved by naming convention, as django-anymail's `get_anymail_setting`
does: a provider's folder declares its settings (settings.py, `values`), and nothing else
lists them.

`provider_setting("SENDGRID_API_KEY")`: the first of
1. a Django settings module that sets it (`notifyhub/settings/*.py`, or a test's `settings`
   fixture),
2. the environment variable of that name, typed like the declared default (bool, int, float,
   str),
3. the declared default: the sandbox locally, `production=` under production settings
   (`PROVIDER_SETTINGS_PROFILE = "production"`), a value computed from other settings.
`TEST_MODE_<NAME>` resolves the same way from the Value's `test_mode`. A name no provider
declares is read from Django's settings (DEFAULT_FROM_EMAIL, PUBLIC_BASE_URL).

Neither Django nor an SDK is imported at module level: `notifyhub/settings/production.py`
calls `required_missing()` to refuse to start without a REQUIRED value.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from .declaration import REQUIRED, SAME, Value, declarations

TEST_MODE_PREFIX = "TEST_MODE_"
_UNSET: Any = object()


@cache
def declared() -> dict[str, Value]:
    """Every declared setting by its name, test-mode copies included."""
    out: dict[str, Value] = {}
    for folder, declaration in declarations().items():
        for suffix, value in declaration.values.items():
            name = f"{folder.upper()}_{suffix}"
            out[name] = value
            if value.test_mode is not None:
                test = value.test_mode if isinstance(value.test_mode, Value) else Value(value.test_mode)
                out[TEST_MODE_PREFIX + name] = test
    return out


def _profile() -> str:
    from django.conf import settings

    return str(getattr(settings, "PROVIDER_SETTINGS_PROFILE", "local"))


def _typed(raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    return raw


def _default(value: Value, profile: str) -> Any:
    default = value.default
    if profile == "production" and value.production is not SAME:
        default = "" if value.production is REQUIRED else value.production
    return default(provider_setting) if callable(default) else default


def provider_setting(name: str, default: Any = _UNSET) -> Any:
    """The value of setting `name` (see the module docstring). `default`: for a name that is
    neither declared nor set (else AttributeError)."""
    from django.conf import settings

    if hasattr(settings, name):
        return getattr(settings, name)
    value = declared().get(name)
    if value is None:
        if default is _UNSET:
            raise AttributeError(f"No provider declares the setting {name}.")
        return default
    fallback = _default(value, _profile())
    raw = os.environ.get(name)
    if raw is None:
        return fallback
    return _typed(raw, value.default if not callable(value.default) else fallback)


def required_missing(environ: dict[str, str] | None = None) -> list[str]:
    """The REQUIRED-in-production settings the environment does not give."""
    environ = dict(os.environ) if environ is None else environ
    return [name for name, value in declared().items()
            if value.production is REQUIRED and not environ.get(name)]
