"""Mass assignment: server-owned fields in a request body are ignored or refused, never applied.

Every POST/PUT/PATCH of every API route (read from the URL resolver) is called with a valid
body plus INJECTED — ids, the owner (another client's id), statuses, timestamps, attempt
counts, provider ids, secrets. The answer is a 2xx (the extra fields ignored) or a 400 naming
one of them; never a 5xx. Then no row the caller owns was created or changed with an injected
value, no row has the injected id, and the other client's rows are untouched. A write route
without a body in WRITE_BODIES (or a reason in NOT_TESTED) fails the completeness check.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps

from .support import Route, World, api_routes, tenant_rows, two_worlds, unchanged

INJECTED_ID = "00000000-0000-4000-8000-00000000beef"
LONG_AGO = "2001-02-03T04:05:06Z"


def injected(owner_elsewhere: str) -> dict[str, Any]:
    return {
        "id": INJECTED_ID, "pk": INJECTED_ID,
        "client": owner_elsewhere, "client_id": owner_elsewhere,
        "status": "delivered", "attempts": 99,
        "created_at": LONG_AGO, "updated_at": LONG_AGO, "completed_at": LONG_AGO,
        "sent_at": LONG_AGO, "deleted_at": LONG_AGO, "disabled_at": LONG_AGO,
        "revoked_at": LONG_AGO, "last_run_at": LONG_AGO, "last_scheduled_for": LONG_AGO,
        "failing_since": LONG_AGO, "first_published_at": LONG_AGO, "lease_until": LONG_AGO,
        "provider": "injected", "provider_message_id": "injected-message-id",
        "error_code": "injected", "error_message": "injected", "last_error": "injected",
        "disabled_reason": "injected", "secret": "whsec_aW5qZWN0ZWQtc2VjcmV0",
        "key_hash": "injected", "request_hash": "injected", "idempotency_key": "injected",
        "recipient_count": 999, "last_notification_ids": [INJECTED_ID],
        "template_version": INJECTED_ID, "template_version_id": INJECTED_ID,
        "notification_id": INJECTED_ID, "delivery_id": INJECTED_ID, "endpoint_id": INJECTED_ID,
        "is_active": False, "published_by": "injected",
    }


def _nested(caller: World, alpha: str) -> dict[str, Any]:
    """Injected fields for an object nested in a body whose `id` is a legitimate field."""
    return {k: v for k, v in injected(alpha).items() if k not in ("id", "pk")}


WriteBody = Callable[[World, str], Any]
# (route, method) → a valid body for the caller's own objects (the alpha client's id given for
# nested injection). None: the operation takes no body (INJECTED is still sent).
WRITE_BODIES: dict[tuple[str, str], WriteBody | None] = {
    ("notifications", "POST"): lambda w, a: {
        "recipients": [{"id": w.recipient, "email": "b@example.com", **_nested(w, a)}],
        "template_id": w.template_key, "variables": {"name": "x"}, "channels": ["email"]},
    ("notifications-bulk", "POST"): lambda w, a: {"notifications": [{
        "recipients": [{"id": w.recipient, **_nested(w, a)}], "template_id": w.template_key,
        "variables": {"name": "x"}, "channels": ["email"], **injected(a)}]},
    ("notification-cancel", "PUT"): None,
    ("retry-failed", "POST"): lambda w, a: {"channel": "sms"},
    ("templates", "POST"): lambda w, a: {"key": "fresh", "name": "Fresh", "channels": ["email"],
                                         "version": {"subject": "s", "text_body": "t"}},
    ("template-detail", "PUT"): lambda w, a: {"name": "Renamed"},
    ("template-versions", "POST"): lambda w, a: {"subject": "s2", "text_body": "t2",
                                                 "sms_body": "s"},
    ("template-version-publish", "POST"): None,
    ("template-preview", "POST"): lambda w, a: {"variables": {"name": "x"}},
    ("preferences-detail", "PUT"): lambda w, a: {"categories": {"news": False}},
    ("preferences-channel", "PATCH"): lambda w, a: {"enabled": False},
    ("preferences-opt-out", "POST"): lambda w, a: {"channel": "sms"},
    ("preferences-opt-in", "POST"): lambda w, a: {"category": "marketing"},
    ("recipient-detail", "PUT"): lambda w, a: {"email": "new@example.com"},
    ("recipient-devices", "POST"): lambda w, a: {"token": "fresh-token", "platform": "ios"},
    ("recipient-erase", "POST"): None,
    ("recipient-inbox-token", "POST"): None,
    ("segments", "POST"): lambda w, a: {"name": "Fresh", "key": "fresh",
                                        "definition": {"all": []}},
    ("segment-detail", "PUT"): lambda w, a: {"name": "Renamed"},
    ("segment-send", "POST"): lambda w, a: {"template_id": w.template_key,
                                            "variables": {"name": "x"}, "channels": ["email"]},
    ("schedules", "POST"): lambda w, a: {"name": "Fresh", "template_id": w.template_key,
                                         "variables": {"name": "x"},
                                         "recipient_ids": [w.recipient], "minute": "5",
                                         "hour": "8"},
    ("schedule-detail", "PUT"): lambda w, a: {"name": "Renamed"},
    ("schedule-run", "POST"): None,
    ("webhook-endpoints", "POST"): lambda w, a: {"url": "https://fresh.example.com/hooks"},
    ("webhook-endpoint-rotate-secret", "POST"): None,
    ("webhook-endpoint-test", "POST"): None,
    ("webhook-endpoint-replay", "POST"): lambda w, a: {"since": "2000-01-01T00:00:00Z"},
}
NOT_TESTED: dict[str, str] = {
    "preferences-unsubscribe": "public page: a form post with a signed token, no JSON body",
    "webhook-sendgrid": "provider callback: the provider's own payload, signature-checked",
    "webhook-twilio": "provider callback: the provider's own payload, signature-checked",
    "webhook-whatsapp": "provider callback: the provider's own payload, signature-checked",
    "webhook-twilio-inbound": "provider callback: the provider's own payload, signature-checked",
    "webhook-test-sendgrid": "test-mode provider callback: signature-checked, test deliveries only",
    "webhook-test-twilio": "test-mode provider callback: signature-checked, test deliveries only",
    "webhook-test-whatsapp": "test-mode provider callback: signature-checked, test deliveries only",
    "webhook-vonage": "provider callback: the provider's own payload, signature-checked",
    "webhook-vonage-inbound": "provider callback: the provider's own payload, signature-checked",
    "webhook-test-vonage": "test-mode provider callback: signature-checked, test deliveries only",
    **dict.fromkeys(
        ("inbox-read-all", "inbox-message-read", "inbox-message-seen", "inbox-message-unread",
         "inbox-message-archive"),
        "inbox (recipient token, no API key): reads no body at all; the token alone names the "
        "inbox (tests/security/test_tenant_isolation.py, tests/inbox/api)"),
}

ROUTES = api_routes()
WRITES = [(r, m) for r in ROUTES if r.name not in NOT_TESTED
          for m in r.methods if m in ("POST", "PUT", "PATCH")]
FILL = {
    "notification_id": lambda w: w.notification_id, "template_ref": lambda w: w.template_key,
    "number": lambda w: 2, "recipient": lambda w: w.recipient,
    "external_id": lambda w: w.recipient, "channel": lambda w: "email",
    "segment_ref": lambda w: w.segment_key, "schedule_id": lambda w: w.schedule_id,
    "endpoint_id": lambda w: w.endpoint_id,
}


def test_every_write_route_has_a_body_or_a_reason() -> None:
    missing = [f"{m} {r.template}" for r, m in WRITES if (r.name, m) not in WRITE_BODIES]
    assert missing == []
    assert not {n for n, _ in WRITE_BODIES} - {r.name for r in ROUTES}, "stale entries"
    unfillable = [r.template for r, _ in WRITES if any(p not in FILL for p in r.params)]
    assert unfillable == []


def _is_injected(name: str, value: Any, alpha: str) -> bool:
    planted = injected(alpha).get(name)
    if planted is None or value is None:
        return False
    if isinstance(value, dt.datetime):
        return value.year == 2001
    return str(value) == str(planted) or value == planted


def _rows_with_injected_id() -> list[str]:
    found = []
    for model in apps.get_models():
        pk = model._meta.pk
        if pk is not None and pk.get_internal_type() == "UUIDField" and \
                model._default_manager.filter(pk=uuid.UUID(INJECTED_ID)).exists():
            found.append(model._meta.label)
    return found


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), WRITES, ids=lambda v: str(v))
def test_server_owned_fields_in_a_body_are_ignored_or_refused(route: Route, method: str) -> None:
    alpha, beta = two_worlds()
    alpha_id = str(alpha.client.id)
    make = WRITE_BODIES[(route.name, method)]
    body = {**(make(beta, alpha_id) if make else {}), **injected(alpha_id)}
    url = route.url({p: FILL[p](beta) for p in route.params})
    alpha_changes = unchanged(alpha.client)
    before = tenant_rows(beta.client)

    response = getattr(beta.api, method.lower())(url, body, format="json")

    answer = f"{method} {url}: {response.status_code} {response.content[:400]!r}"
    assert response.status_code < 500, answer
    if response.status_code == 400:
        error = response.json()["error"]
        assert error["code"] == "invalid", answer
        assert set(error["fields"]) & set(injected(alpha_id)), answer
    else:
        assert 200 <= response.status_code < 300, answer
    after = tenant_rows(beta.client)
    applied = [
        f"{label}:{pk}.{name}={value!r}"
        for (label, pk), row in after.items() if row != before.get((label, pk))
        for name, value in row.items()
        if _is_injected(name, value, alpha_id)
        and (before.get((label, pk)) or {}).get(name) != value
    ]
    assert applied == [], answer
    assert _rows_with_injected_id() == [], answer
    assert alpha_changes() == [], answer
