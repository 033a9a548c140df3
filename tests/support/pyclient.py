"""The Python client (clients/python/src/notifyhub) for the tests, from this checkout.

Its import name, `notifyhub`, is also the Django project's package here, so the tests load it
under the name `nhclient` (its modules import each other relatively). Users install it with
`pip install ./clients/python` and import `notifyhub`: tests/pyclient/test_live.py does
exactly that in a separate process."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CLIENT_ROOT = Path(__file__).resolve().parents[2] / "clients" / "python"
PACKAGE_DIR = CLIENT_ROOT / "src" / "notifyhub"
NAME = "nhclient"


def load_client() -> ModuleType:
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(
        NAME, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module


def client_module(name: str) -> ModuleType:
    """A submodule of the client (`webhooks`, `_resources`)."""
    load_client()
    return importlib.import_module(f"{NAME}.{name}")
