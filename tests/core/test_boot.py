"""A web process loads its routes, provider SDKs and Celery's publishing while it boots
(apps/core/boot.py), so the first request a gunicorn worker serves does not pay for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# What the first request of a worker used to import: the URLconf and the callback routes (with
# the vonage SDK), the push provider's SDK, kombu's Redis transport.
FIRST_REQUEST_MODULES = ["notifyhub.urls", "apps.notifications.providers.urls", "vonage",
                         "pyfcm", "kombu.transport.redis"]


def _last_line(code: str) -> str:
    """The last line `code` prints in a fresh interpreter with the test settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["DJANGO_SETTINGS_MODULE"] = "notifyhub.settings.test"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return out.strip().splitlines()[-1]


def _loaded_after(statement: str) -> list[str]:
    return list(json.loads(_last_line(
        f"import json, sys; {statement}; "
        f"print(json.dumps([m for m in {FIRST_REQUEST_MODULES!r} if m in sys.modules]))")))


@pytest.mark.parametrize("module", ["notifyhub.wsgi", "notifyhub.asgi"])
def test_the_application_module_loads_what_the_first_request_would(module: str) -> None:
    assert _loaded_after(f"import {module}") == FIRST_REQUEST_MODULES


def test_django_setup_alone_does_not_so_the_warm_up_is_what_loads_them() -> None:
    assert _loaded_after("import django; django.setup()") == []


def test_what_the_process_holds_after_booting_is_out_of_the_collectors_reach() -> None:
    frozen = _last_line("import gc, notifyhub.wsgi; print(gc.get_freeze_count())")
    assert int(frozen) > 10_000
