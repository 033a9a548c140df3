"""API key scopes: every /api/v1/ view declares them, and a key without the scope is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apps.clients.models import ApiKey, Scope, all_scopes
from apps.clients.scopes import HasScope, declared_scopes, implemented_methods
from apps.clients.services import api_key_create
from apps.core.api import HealthApi, ReadyApi
from apps.inbox.api.views import InboxApiView
from apps.notifications.providers.twilio.receipts import TwilioInboundWebhookView
from apps.notifications.providers.vonage.receipts import VonageInboundWebhookView
from apps.preferences.api.unsubscribe import UnsubscribeView
from apps.webhooks.inbound.base import ProviderWebhookView
from tests.factories import ClientFactory, TemplateFactory

pytestmark = pytest.mark.django_db

# Not key-authenticated on purpose: liveness/readiness, provider callbacks (signature-verified)
# the one-click unsubscribe link (signed token) and the inbox (a recipient token, no API key:
# tests/inbox/api). Everything else needs a scope.
PUBLIC_VIEWS = (HealthApi, ReadyApi, ProviderWebhookView, TwilioInboundWebhookView,
                VonageInboundWebhookView, UnsubscribeView, InboxApiView)

SAMPLE_ARGS = {"uuid": "00000000-0000-4000-8000-000000000000", "int": "1", "str": "x", "path": "x"}


def api_routes() -> Iterator[tuple[str, type]]:
    """(sample path, view class) for every URL pattern under /api/v1/."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern):
                yield route, entry.callback

    for route, callback in walk(get_resolver().url_patterns, "/"):
        if not route.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE_ARGS[m.group(1) or "str"], route)
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        assert view_class is not None, f"{route}: not a class-based view"
        yield path, view_class


ROUTES = list(api_routes())


def key_with(client: Any, scopes: list[str], mode: str = "live") -> APIClient:
    raw = api_key_create(client=client, name="k", scopes=scopes, mode=mode)[1]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


def test_the_walk_finds_the_api() -> None:
    paths = {path for path, _ in ROUTES}
    assert {"/api/v1/notifications", "/api/v1/templates", "/api/v1/webhooks",
            "/api/v1/admin/retry-failed", "/api/v1/recipients/x/devices"} <= paths
    for path, view_class in ROUTES:  # the sample path resolves to the same view
        match = resolve(path)
        assert (getattr(match.func, "view_class", None) or match.func.cls) is view_class


@pytest.mark.parametrize(("path", "view_class"), ROUTES, ids=[p for p, _ in ROUTES])
def test_every_api_view_declares_a_scope_for_each_method_or_is_a_known_public_one(
    path: str, view_class: type
) -> None:
    if issubclass(view_class, PUBLIC_VIEWS):
        return
    assert issubclass(view_class, APIView), f"{path}: {view_class.__name__} is not a DRF view"
    assert HasScope in view_class.permission_classes, f"{view_class.__name__} skips HasScope"
    methods = implemented_methods(view_class)
    assert methods, view_class
    for method in methods:
        needed = declared_scopes(view_class, method)
        assert needed, f"{view_class.__name__}.{method.lower()} declares no scope"
        assert all(isinstance(s, Scope) for s in needed)
    stale = set(getattr(view_class, "required_scopes", {})) - methods
    assert not stale, f"{view_class.__name__} declares scopes for methods it lacks: {stale}"


@pytest.mark.parametrize(("path", "view_class"), ROUTES, ids=[p for p, _ in ROUTES])
def test_a_key_without_the_declared_scope_is_refused_everywhere(
    path: str, view_class: type
) -> None:
    """Whatever the method and path, before anything runs: 403 insufficient_scope naming the
    scope(s) that would do."""
    if issubclass(view_class, PUBLIC_VIEWS):
        return
    tenant = ClientFactory()
    for method in sorted(implemented_methods(view_class)):
        needed = [str(s) for s in declared_scopes(view_class, method) or ()]
        api = key_with(tenant, [s for s in all_scopes() if s not in needed])
        response = api.generic(method, path, "{}", content_type="application/json")
        assert response.status_code == 403, (method, path, response.content[:300])
        error = response.json()["error"]
        assert error["code"] == "insufficient_scope"
        assert error["fields"] == {"scope": needed}
        assert all(f"'{s}'" in error["message"] for s in needed)
        assert response["WWW-Authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{" ".join(needed)}"')


@pytest.fixture
def tenant() -> Any:
    client = ClientFactory()
    TemplateFactory(client=client, key="welcome")
    return client


SEND = {"recipients": [{"id": "ada", "email": "ada@example.com"}], "template_id": "welcome",
        "variables": {"name": "Ada"}}

# (scope, method, path, body, status with only that scope)
ALLOWED = [
    ("send", "post", "/api/v1/notifications", SEND, 202),
    ("send", "post", "/api/v1/notifications/bulk", {"notifications": [SEND]}, 202),
    ("send", "put", "/api/v1/recipients/bob", {"email": "bob@example.com"}, 201),
    ("send", "post", "/api/v1/preferences/ada/opt-out", {"category": "marketing"}, 200),
    ("read", "get", "/api/v1/notifications", None, 200),
    ("read", "get", "/api/v1/metrics/delivery-rates", None, 200),
    ("read", "get", "/api/v1/templates", None, 200),
    ("templates", "get", "/api/v1/templates", None, 200),
    ("templates", "post", "/api/v1/templates",
     {"key": "promo", "name": "Promo", "channels": ["email"]}, 201),
    ("webhooks", "post", "/api/v1/webhooks", {"url": "https://hooks.example.com/n"}, 201),
    ("webhooks", "get", "/api/v1/webhooks", None, 200),
    ("admin", "get", "/api/v1/admin/queue-status", None, 200),
    ("admin", "get", "/api/v1/metrics/system-status", None, 200),
    ("admin", "post", "/api/v1/admin/retry-failed", {}, 202),
    ("admin", "get", "/api/v1/audit/logs", None, 200),
]


@pytest.mark.parametrize(("scope", "method", "path", "body", "expected"), ALLOWED,
                         ids=[f"{s}-{m}-{p}" for s, m, p, _, _ in ALLOWED])
def test_a_key_with_only_the_needed_scope_gets_through(
    tenant: Any, scope: str, method: str, path: str, body: Any, expected: int
) -> None:
    if path.startswith("/api/v1/preferences/ada"):
        key_with(tenant, ["send"]).put("/api/v1/recipients/ada", {"email": "ada@example.com"},
                                       format="json")
    response = getattr(key_with(tenant, [scope]), method)(path, body, format="json")
    assert response.status_code == expected, response.content[:500]


# (method, path, body, the scope it needs) for a key holding every other scope
REFUSED = [
    ("post", "/api/v1/notifications", SEND, "send"),
    ("get", "/api/v1/notifications", None, "read"),
    ("put", "/api/v1/recipients/ada", {"email": "ada@example.com"}, "send"),
    ("post", "/api/v1/templates", {"key": "p", "name": "P", "channels": ["email"]}, "templates"),
    ("get", "/api/v1/webhooks", None, "webhooks"),
    ("post", "/api/v1/admin/retry-failed", {}, "admin"),
    ("get", "/api/v1/metrics/system-status", None, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "scope"), REFUSED,
                         ids=[f"{m}-{p}" for m, p, _, _ in REFUSED])
def test_refused_requests_change_nothing(
    tenant: Any, method: str, path: str, body: Any, scope: str
) -> None:
    from apps.notifications.models import Notification
    from apps.recipients.models import Recipient
    from apps.templates.models import Template

    before = (Notification.objects.count(), Recipient.objects.count(), Template.objects.count())
    api = key_with(tenant, [s for s in all_scopes() if s != scope])
    response = getattr(api, method)(path, body, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["fields"] == {"scope": [scope]}
    assert (Notification.objects.count(), Recipient.objects.count(),
            Template.objects.count()) == before


def test_template_reads_accept_read_or_templates_and_name_both(tenant: Any) -> None:
    response = key_with(tenant, ["send"]).get("/api/v1/templates/welcome")
    assert response.status_code == 403
    assert response.json()["error"]["fields"] == {"scope": ["read", "templates"]}
    assert key_with(tenant, ["templates"]).get("/api/v1/templates/welcome").status_code == 200


def test_no_key_is_401_before_any_scope_question(tenant: Any) -> None:
    response = APIClient().post("/api/v1/notifications", SEND, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_key_with_no_scope_at_all_is_refused_everything(tenant: Any) -> None:
    api = key_with(tenant, [])
    assert api.get("/api/v1/notifications").status_code == 403
    assert api.get("/api/v1/health").status_code == 200  # public stays public


def test_unimplemented_methods_stay_405_and_options_needs_no_scope(tenant: Any) -> None:
    api = key_with(tenant, ["read"])
    assert api.patch("/api/v1/notifications", {}, format="json").status_code == 405
    assert api.options("/api/v1/notifications").status_code == 200
    assert api.head("/api/v1/notifications").status_code == 200  # HEAD follows GET


def test_a_view_without_a_declaration_is_closed(tenant: Any) -> None:
    """A new view someone forgot to declare refuses every key instead of being open."""
    from django.test import RequestFactory
    from rest_framework.response import Response

    class Undeclared(APIView):
        def get(self, request: Any) -> Response:
            return Response({"ok": True})

    raw = api_key_create(client=tenant, name="all")[1]
    request = RequestFactory().get("/api/v1/new", HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = Undeclared.as_view()(request)
    assert response.status_code == 403
    assert response.data["error"]["code"] == "insufficient_scope"


def test_keys_get_every_scope_by_default_and_unknown_scopes_are_refused(tenant: Any) -> None:
    from apps.clients.services import InvalidKey

    key, _ = api_key_create(client=tenant, name="default")
    assert key.scopes == all_scopes()
    with pytest.raises(InvalidKey):
        api_key_create(client=tenant, name="bad", scopes=["send", "root"])
    assert not ApiKey.objects.filter(name="bad").exists()
