"""What the tenant-isolation and mass-assignment tests share: the API routes, read from the URL
resolver (so a new endpoint is tested, or fails the completeness check, without anyone
remembering to add it), one "world" of objects per tenant built through the API, and a
snapshot of every row a tenant owns."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apps.clients.models import Client
from apps.notifications.models import Delivery
from apps.notifications.status import notifications_refresh_status
from apps.webhooks.models import WebhookAttempt, WebhookMessage
from tests.factories import ClientFactory, api_key_for

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")


# --- The routes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """One URL pattern under /api/v1/: its name, template (`notifications/<uuid:notification_id>`),
    parameters and the HTTP methods its view answers."""

    name: str
    template: str
    params: tuple[str, ...]
    view: Any
    methods: tuple[str, ...]

    @property
    def is_api_view(self) -> bool:
        """A DRF view behind API-key authentication (not a public page or provider callback)."""
        return isinstance(self.view, type) and issubclass(self.view, APIView)

    def url(self, values: dict[str, Any]) -> str:
        def fill(match: re.Match[str]) -> str:
            return str(values[match.group(2)])

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, self.template)

    def __str__(self) -> str:
        return self.name


def _walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(list(pattern.url_patterns), route)
        else:
            yield route, pattern


def api_routes() -> list[Route]:
    """Every route under /api/v1/, in resolver order."""
    routes = []
    for template, pattern in _walk(list(get_resolver().url_patterns), ""):
        if not template.startswith(API_PREFIX):
            continue
        callback = pattern.callback
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None) or callback
        methods = tuple(m.upper() for m in METHODS if hasattr(view, m))
        params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", template))
        assert pattern.name, f"route {template} has no name"
        routes.append(Route(name=pattern.name, template=template, params=params, view=view,
                            methods=methods))
    return routes


# --- One tenant's objects, made through its own API key ----------------------------------------

@dataclass
class World:
    """A tenant with one of everything the API manages, created through the API."""

    prefix: str
    client: Client
    api: APIClient
    template_key: str = ""
    template_id: str = ""
    recipient: str = ""
    device_token: str = ""
    notification_id: str = ""
    delivery_ids: list[str] = field(default_factory=list)
    failed_delivery_id: str = ""
    segment_key: str = ""
    segment_id: str = ""
    schedule_id: str = ""
    endpoint_id: str = ""
    message_id: str = ""

    def ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = getattr(self.api, method)(f"/api/v1/{path}", body, format="json")
        assert response.status_code == expect, (method, path, response.status_code, response.content)
        return response.json() if response.content else None

    def markers(self) -> set[str]:
        """Strings that name this tenant's data: none may appear in another tenant's answer."""
        owned = tenant_rows(self.client)
        ids = {str(pk) for (_, pk) in owned if _looks_like_uuid(pk)}
        return ids | {self.template_key, self.recipient, self.device_token, self.segment_key,
                      f"{self.prefix}@example.com", f"https://{self.prefix}.example.com/hooks",
                      f"{self.prefix} order service"}


def _looks_like_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def api_for(client: Client) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(client)}")
    return api


def build_world(prefix: str, phone: str) -> World:
    """`prefix`_welcome template (two versions), `prefix`_user recipient with a device and a
    preference, a notification (one delivery dead-lettered), a segment, a recurring send, a
    webhook endpoint with a message and an attempt."""
    client = ClientFactory(slug=f"{prefix}-tenant", name=f"{prefix} tenant")
    world = World(prefix=prefix, client=client, api=api_for(client))
    world.template_key = f"{prefix}_welcome"
    template = world.ok("post", "templates", {
        "key": world.template_key, "name": f"{prefix} welcome", "channels": ["email", "sms"],
        "version": {"subject": "Hi {{ name }}", "text_body": "Hello {{ name }}",
                    "sms_body": "Hi {{ name }}"},
    }, expect=201)
    world.template_id = template["id"]
    world.ok("post", f"templates/{world.template_key}/versions",
             {"subject": "Draft {{ name }}", "text_body": "Draft", "sms_body": "Draft",
              "publish": False}, expect=201)
    world.recipient = f"{prefix}_user"
    world.ok("put", f"recipients/{world.recipient}",
             {"email": f"{prefix}@example.com", "phone": phone, "attributes": {"plan": "pro"}},
             expect=201)
    world.device_token = f"{prefix}-device-token"
    world.ok("post", f"recipients/{world.recipient}/devices",
             {"token": world.device_token, "platform": "android"}, expect=201)
    world.ok("post", f"preferences/{world.recipient}/opt-out", {"category": "marketing"})
    sent = world.ok("post", "notifications", {
        "recipients": [world.recipient], "template_id": world.template_key,
        "variables": {"name": "Ada"}, "channels": ["email", "sms"],
        "metadata": {"order": f"{prefix}-order"},
    }, expect=202)
    world.notification_id = sent["id"]
    world.delivery_ids = [d["id"] for d in sent["deliveries"]]
    # A dead letter: the SMS delivery ran out of attempts.
    world.failed_delivery_id = next(d["id"] for d in sent["deliveries"] if d["channel"] == "sms")
    Delivery.objects.filter(id=world.failed_delivery_id).update(
        status="failed", attempts=5, error_code="provider_error", completed_at=timezone.now(),
        lease_until=None)
    notifications_refresh_status(notification_ids=[world.notification_id])
    world.segment_key = f"{prefix}-segment"
    segment = world.ok("post", "segments", {"name": f"{prefix} segment", "key": world.segment_key,
                                            "definition": {"all": []}}, expect=201)
    world.segment_id = segment["id"]
    schedule = world.ok("post", "schedules", {
        "name": f"{prefix} digest", "template_id": world.template_key,
        "variables": {"name": "Ada"}, "recipient_ids": [world.recipient], "minute": "0",
        "hour": "9",
    }, expect=201)
    world.schedule_id = schedule["id"]
    endpoint = world.ok("post", "webhooks", {"url": f"https://{prefix}.example.com/hooks",
                                             "description": f"{prefix} order service"},
                        expect=201)
    world.endpoint_id = endpoint["id"]
    world.message_id = world.ok("post", f"webhooks/{world.endpoint_id}/test",
                                expect=202)["message_id"]
    message = WebhookMessage.objects.get(id=world.message_id)
    WebhookAttempt.objects.create(message=message, endpoint_id=world.endpoint_id, attempt=1,
                                  status_code=503, error_code="http_503", error="unavailable")
    return world


def two_worlds() -> tuple[World, World]:
    return build_world("alpha", "+14155550101"), build_world("beta", "+14155550102")


# --- Every row a tenant owns ---------------------------------------------------------------------

def _path_to_client(model: type[models.Model], depth: int = 3) -> str | None:
    """The ORM lookup from `model` to its Client (`client`, `recipient__client`, …), following
    foreign keys breadth-first; None if it has none."""
    if model is Client:
        return "pk"
    frontier: list[tuple[type[models.Model], str]] = [(model, "")]
    for _ in range(depth):
        following = []
        for current, path in frontier:
            for f in current._meta.get_fields():
                if not (f.many_to_one or f.one_to_one) or not f.concrete or f.related_model is None:
                    continue
                lookup = f"{path}__{f.name}" if path else f.name
                if f.related_model is Client:
                    return lookup
                following.append((f.related_model, lookup))
        frontier = following
    return None


def _owned_querysets(client: Client) -> Iterator[tuple[str, models.QuerySet[Any]]]:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    for model in apps.get_models():
        path = _path_to_client(model)
        if path is not None:
            yield model._meta.label, model._default_manager.filter(**{path: client.pk})
    # A recurring send's beat task and crontab point at nothing of the client's.
    tasks = PeriodicTask.objects.filter(recurring_send__client=client)
    yield "django_celery_beat.PeriodicTask", tasks
    yield "django_celery_beat.CrontabSchedule", CrontabSchedule.objects.filter(
        periodictask__in=tasks)


def tenant_rows(client: Client) -> dict[tuple[str, Any], dict[str, Any]]:
    """(model label, pk) → the row's stored values, for every row the client owns."""
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    for label, queryset in _owned_querysets(client):
        for row in queryset.order_by().values():
            rows[(label, row.get("id", row.get("pk")))] = row
    return rows


def changed_rows(before: dict[tuple[str, Any], dict[str, Any]],
                 after: dict[tuple[str, Any], dict[str, Any]]) -> list[str]:
    """What differs between two snapshots, one line per row (empty when nothing does)."""
    out = []
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is None or new is None:
            out.append(f"{key}: {'created' if old is None else 'deleted'}")
            continue
        fields = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
        out.append(f"{key}: {', '.join(fields)}")
    return out


def unchanged(client: Client) -> Callable[[], list[str]]:
    """Snapshot now; the returned function lists what changed since."""
    before = tenant_rows(client)
    return lambda: changed_rows(before, tenant_rows(client))

