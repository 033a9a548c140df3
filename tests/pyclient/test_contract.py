"""Every operation of the OpenAPI schema has exactly one client method, and every client
method is an operation of the schema: a new endpoint fails here until the client covers it.

Except the inbox's browser endpoints (/api/v1/inbox/…): they take a recipient token, not an
API key, and are called by the recipient's browser or app (the widget, static/notifyhub/), never
by a service with this client. The client covers their server side: `recipients.inbox_token`
and the offline `mint_inbox_token`. `test_only_the_recipient_token_operations_are_left_out`
keeps that exception from growing."""

from __future__ import annotations

import inspect
from typing import Any

from drf_spectacular.generators import SchemaGenerator

from tests.support.pyclient import client_module

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _all_operations() -> dict[tuple[str, str], dict[str, Any]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path): operation
            for path, operations in schema["paths"].items()
            for method, operation in operations.items() if method in HTTP_METHODS}


def _browser_only(operation: dict[str, Any]) -> bool:
    """Authenticated by a recipient token only (the inbox API for browsers and apps)."""
    return operation.get("security") == [{"RecipientToken": []}]


def schema_operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {key: op for key, op in _all_operations().items() if not _browser_only(op)}


def test_only_the_recipient_token_operations_are_left_out() -> None:
    left_out = {path for (_, path), op in _all_operations().items() if _browser_only(op)}
    assert left_out and all(path.startswith("/api/v1/inbox/") for path in left_out)


def client_operations() -> dict[tuple[str, str], list[str]]:
    resources = client_module("_resources").RESOURCES
    found: dict[tuple[str, str], list[str]] = {}
    for name, cls in resources.items():
        for attr, func in inspect.getmembers(cls, inspect.isfunction):
            marker = getattr(func, "__notifyhub_operation__", None)
            if marker:
                found.setdefault(marker[:2], []).append(f"client.{name}.{attr}")
    return found


def test_every_schema_operation_has_a_client_method_and_back() -> None:
    in_schema = set(schema_operations())
    in_client = client_operations()

    missing = sorted(in_schema - set(in_client))
    unknown = sorted(set(in_client) - in_schema)
    assert not missing, f"operations without a client method: {missing}"
    assert not unknown, f"client methods for no operation: {[in_client[k] for k in unknown]}"
    assert all(len(methods) == 1 for methods in in_client.values()), in_client


def test_the_client_sends_idempotency_keys_to_exactly_the_operations_that_honour_them() -> None:
    honoured = {key for key, operation in schema_operations().items()
                if any(p.get("in") == "header" and p.get("name") == "Idempotency-Key"
                       for p in operation.get("parameters", []))}
    resources = client_module("_resources").RESOURCES
    sent = {func.__notifyhub_operation__[:2]
            for cls in resources.values()
            for _, func in inspect.getmembers(cls, inspect.isfunction)
            if getattr(func, "__notifyhub_operation__", (None, None, False))[2]}
    assert honoured and sent == honoured
