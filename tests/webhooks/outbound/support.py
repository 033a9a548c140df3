"""Helpers for the outbound webhook tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from apps.core.tasks import publications_publish_on_commit
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send
from apps.notifications.status import notifications_refresh_status
from apps.webhooks.models import WebhookEndpoint
from apps.webhooks.outbound.outbox import webhook_completions_record
from apps.webhooks.outbound.services import webhook_endpoint_create
from tests.sandbox.receiver import Request


class Published(list[tuple[list[str], float | None]]):
    """Task messages the code published: (message ids, countdown); endpoint probes
    (endpoint id, countdown) and drains (endpoint id) apart."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: list[tuple[str, float | None]] = []
        self.drains: list[str] = []

    def ids(self) -> list[str]:
        return [i for chunk, _ in self for i in chunk]


def make_endpoint(client: Any, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    return webhook_endpoint_create(client=client, url=url, event_types=events or [])


def send(client: Any, *, recipient: str = "ada", metadata: dict[str, Any] | None = None) -> Delivery:
    notification = notification_send(
        client=client, recipients=[{"id": recipient, "email": f"{recipient}@example.com"}],
        template_id="welcome", variables={"name": "Ada"}, metadata=metadata or {"order": "ORD-1"},
    ).notification
    return notification.deliveries.get()


def record_sent(delivery: Delivery, message_id: str = "MSG1") -> None:
    """What a dispatch task does for one delivery the provider accepted: record the outcome,
    then refresh the notification's status and record its completion."""
    attempt = deliveries_claim(delivery_ids=[str(delivery.id)])[str(delivery.id)]
    delivery_record_outcome(delivery_id=str(delivery.id), attempt=attempt,
                            result=SendResult.sent("sendgrid", message_id))
    notifications_refresh_status(notification_ids=[delivery.notification_id])
    publications_publish_on_commit(webhook_completions_record(notification_ids=[delivery.notification_id]))


def verified(secret: str, request: Request) -> Any:
    """The payload, as the Standard Webhooks reference library verifies it (raises if not)."""
    return Webhook(secret).verify(request.body, request.headers)


class Redirector:
    """A server on 127.0.0.1 that answers every POST with a redirect to `location`."""

    def __init__(self, location: str, status: int = 302) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> Redirector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
