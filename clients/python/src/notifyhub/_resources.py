"""One method per API operation, grouped by resource. Written once for both clients: a method
describes its call (a RequestSpec) and hands it to the client's executor, which runs it
synchronously (`Client`) or returns an awaitable (`AsyncClient`). List methods return an
iterator over every item of every page (`for n in client.notifications.list(): …`)."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from ._base import RequestSpec, operation

R_co = TypeVar("R_co", covariant=True)  # one result: NotifyHubObject, or an awaitable of it
P_co = TypeVar("P_co", covariant=True)  # a paginated list: an (async) iterator of objects


class Executor(Protocol[R_co, P_co]):
    def call(self, spec: RequestSpec) -> R_co: ...

    def paginate(self, spec: RequestSpec) -> P_co: ...


def _p(value: object) -> str:
    """A path segment, escaped (an external id may hold `/` or spaces)."""
    return quote(str(value), safe="")


def _body(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


class _Resource(Generic[R_co, P_co]):
    def __init__(self, executor: Executor[R_co, P_co]) -> None:
        self._x = executor


V1 = "/api/v1"


class Notifications(_Resource[R_co, P_co]):
    @operation("POST", f"{V1}/notifications", idempotent=True)
    def send(self, *, recipients: list[Any], template_id: str,
             variables: dict[str, Any] | None = None, channels: list[str] | None = None,
             priority: str | None = None, category: str | None = None,
             metadata: dict[str, Any] | None = None, scheduled_at: str | None = None,
             idempotency_key: str | None = None, **fields: Any) -> R_co:
        """Send a template to recipients (ids, or objects with `id`/`email`/`phone`…).
        Returns the accepted notification (`id`, `status`, `deliveries`). An Idempotency-Key
        is generated unless given, and reused by every retry of this call."""
        body = _body({"recipients": recipients, "template_id": template_id,
                      "variables": variables, "channels": channels, "priority": priority,
                      "category": category, "metadata": metadata,
                      "scheduled_at": scheduled_at, **fields})
        return self._x.call(RequestSpec("POST", f"{V1}/notifications", json=body,
                                        idempotent=True, idempotency_key=idempotency_key))

    @operation("POST", f"{V1}/notifications/bulk", idempotent=True)
    def send_bulk(self, *, notifications: list[dict[str, Any]],
                  idempotency_key: str | None = None) -> R_co:
        """Many sends in one request; each item is a `send()` body."""
        return self._x.call(RequestSpec("POST", f"{V1}/notifications/bulk",
                                        json={"notifications": notifications},
                                        idempotent=True, idempotency_key=idempotency_key))

    @operation("GET", f"{V1}/notifications")
    def list(self, *, channel: str | None = None, status: str | None = None,
             recipient: str | None = None, created_after: str | None = None,
             created_before: str | None = None, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/notifications", params={
            "channel": channel, "status": status, "recipient": recipient,
            "created_after": created_after, "created_before": created_before,
            "page_size": page_size}))

    @operation("GET", f"{V1}/notifications/{{notification_id}}")
    def get(self, notification_id: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/notifications/{_p(notification_id)}"))

    @operation("DELETE", f"{V1}/notifications/{{notification_id}}")
    def delete(self, notification_id: str) -> R_co:
        return self._x.call(RequestSpec("DELETE", f"{V1}/notifications/{_p(notification_id)}"))

    @operation("PUT", f"{V1}/notifications/{{notification_id}}/cancel")
    def cancel(self, notification_id: str) -> R_co:
        return self._x.call(RequestSpec("PUT", f"{V1}/notifications/{_p(notification_id)}/cancel"))

    @operation("GET", f"{V1}/notifications/{{notification_id}}/status")
    def status(self, notification_id: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/notifications/{_p(notification_id)}/status"))

    @operation("GET", f"{V1}/notifications/{{notification_id}}/deliveries")
    def deliveries(self, notification_id: str, *, channel: str | None = None,
                   status: str | None = None, include: str | None = None,
                   page_size: int | None = None) -> P_co:
        """Every delivery of a notification; `include="events"` adds each one's timeline."""
        return self._x.paginate(RequestSpec(
            "GET", f"{V1}/notifications/{_p(notification_id)}/deliveries",
            params={"channel": channel, "status": status, "include": include,
                    "page_size": page_size}))


class Templates(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/templates")
    def list(self, *, category: str | None = None, channel: str | None = None,
             page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/templates", params={
            "category": category, "channel": channel, "page_size": page_size}))

    @operation("GET", f"{V1}/templates/search")
    def search(self, *, name: str | None = None, channel: str | None = None,
               page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/templates/search", params={
            "name": name, "channel": channel, "page_size": page_size}))

    @operation("POST", f"{V1}/templates")
    def create(self, **fields: Any) -> R_co:
        """`key`, `name`, `channels`, bodies… (docs/templates.md)."""
        return self._x.call(RequestSpec("POST", f"{V1}/templates", json=fields))

    @operation("GET", f"{V1}/templates/{{template_ref}}")
    def get(self, template_ref: str) -> R_co:
        """By UUID or key."""
        return self._x.call(RequestSpec("GET", f"{V1}/templates/{_p(template_ref)}"))

    @operation("PUT", f"{V1}/templates/{{template_ref}}")
    def update(self, template_ref: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("PUT", f"{V1}/templates/{_p(template_ref)}", json=fields))

    @operation("DELETE", f"{V1}/templates/{{template_ref}}")
    def delete(self, template_ref: str) -> R_co:
        return self._x.call(RequestSpec("DELETE", f"{V1}/templates/{_p(template_ref)}"))

    @operation("POST", f"{V1}/templates/{{template_ref}}/preview")
    def preview(self, template_ref: str, *, variables: dict[str, Any] | None = None,
                locale: str | None = None, version: int | None = None, **fields: Any) -> R_co:
        """Render without sending."""
        body = _body({"variables": variables, "locale": locale, "version": version, **fields})
        return self._x.call(RequestSpec("POST", f"{V1}/templates/{_p(template_ref)}/preview",
                                        json=body))

    @operation("GET", f"{V1}/templates/{{template_ref}}/preview")
    def preview_by_query(self, template_ref: str, *, variables: str | None = None,
                         locale: str | None = None, version: int | None = None) -> R_co:
        """The GET form of `preview()`: `variables` is JSON text."""
        return self._x.call(RequestSpec("GET", f"{V1}/templates/{_p(template_ref)}/preview",
                                        params={"variables": variables, "locale": locale,
                                                "version": version}))

    @operation("GET", f"{V1}/templates/{{template_ref}}/versions")
    def versions(self, template_ref: str, *, locale: str | None = None,
                 page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/templates/{_p(template_ref)}/versions",
                                            params={"locale": locale, "page_size": page_size}))

    @operation("POST", f"{V1}/templates/{{template_ref}}/versions")
    def create_version(self, template_ref: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/templates/{_p(template_ref)}/versions",
                                        json=fields))

    @operation("POST", f"{V1}/templates/{{template_ref}}/versions/{{number}}/publish")
    def publish_version(self, template_ref: str, number: int, *, locale: str | None = None) -> R_co:
        return self._x.call(RequestSpec(
            "POST", f"{V1}/templates/{_p(template_ref)}/versions/{int(number)}/publish",
            params={"locale": locale}))


class Preferences(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/preferences/{{recipient}}")
    def get(self, recipient: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/preferences/{_p(recipient)}"))

    @operation("PUT", f"{V1}/preferences/{{recipient}}")
    def update(self, recipient: str, **fields: Any) -> R_co:
        """`channels`, `categories`, `quiet_hours`, `timezone` (docs/preferences.md)."""
        return self._x.call(RequestSpec("PUT", f"{V1}/preferences/{_p(recipient)}", json=fields))

    @operation("PATCH", f"{V1}/preferences/{{recipient}}/channels/{{channel}}")
    def update_channel(self, recipient: str, channel: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec(
            "PATCH", f"{V1}/preferences/{_p(recipient)}/channels/{_p(channel)}", json=fields))

    @operation("GET", f"{V1}/preferences/{{recipient}}/consent")
    def consent(self, recipient: str, *, page_size: int | None = None) -> P_co:
        """The consent evidence trail, newest first."""
        return self._x.paginate(RequestSpec("GET", f"{V1}/preferences/{_p(recipient)}/consent",
                                            params={"page_size": page_size}))

    @operation("POST", f"{V1}/preferences/{{recipient}}/opt-in")
    def opt_in(self, recipient: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/preferences/{_p(recipient)}/opt-in",
                                        json=fields))

    @operation("POST", f"{V1}/preferences/{{recipient}}/opt-out")
    def opt_out(self, recipient: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/preferences/{_p(recipient)}/opt-out",
                                        json=fields))


class Recipients(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/recipients/{{external_id}}")
    def get(self, external_id: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/recipients/{_p(external_id)}"))

    @operation("PUT", f"{V1}/recipients/{{external_id}}")
    def update(self, external_id: str, **fields: Any) -> R_co:
        """Create or replace: `email`, `phone`, `locale`, `timezone`, `attributes`…"""
        return self._x.call(RequestSpec("PUT", f"{V1}/recipients/{_p(external_id)}", json=fields))

    @operation("GET", f"{V1}/recipients/{{external_id}}/devices")
    def devices(self, external_id: str, *, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/recipients/{_p(external_id)}/devices",
                                            params={"page_size": page_size}))

    @operation("POST", f"{V1}/recipients/{{external_id}}/devices")
    def add_device(self, external_id: str, **fields: Any) -> R_co:
        """`token`, `platform`…"""
        return self._x.call(RequestSpec("POST", f"{V1}/recipients/{_p(external_id)}/devices",
                                        json=fields))

    @operation("DELETE", f"{V1}/recipients/{{external_id}}/devices")
    def remove_device(self, external_id: str, *, token: str) -> R_co:
        return self._x.call(RequestSpec("DELETE", f"{V1}/recipients/{_p(external_id)}/devices",
                                        params={"token": token}))

    @operation("POST", f"{V1}/recipients/{{external_id}}/inbox-token")
    def inbox_token(self, external_id: str) -> R_co:
        """A short-lived token for the recipient's in-app inbox: `token`, `expires_at`,
        `stream_url`. Hand it to their browser or app (or mint one offline with
        `notifyhub.mint_inbox_token`)."""
        return self._x.call(RequestSpec("POST", f"{V1}/recipients/{_p(external_id)}/inbox-token"))

    @operation("GET", f"{V1}/recipients/{{external_id}}/export")
    def export(self, external_id: str) -> R_co:
        """Everything held about the recipient (right of access)."""
        return self._x.call(RequestSpec("GET", f"{V1}/recipients/{_p(external_id)}/export"))

    @operation("POST", f"{V1}/recipients/{{external_id}}/erase")
    def erase(self, external_id: str) -> R_co:
        """Erase the recipient's personal data (right to erasure)."""
        return self._x.call(RequestSpec("POST", f"{V1}/recipients/{_p(external_id)}/erase"))


class Schedules(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/schedules")
    def list(self, *, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/schedules",
                                            params={"page_size": page_size}))

    @operation("POST", f"{V1}/schedules")
    def create(self, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/schedules", json=fields))

    @operation("GET", f"{V1}/schedules/{{schedule_id}}")
    def get(self, schedule_id: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/schedules/{_p(schedule_id)}"))

    @operation("PUT", f"{V1}/schedules/{{schedule_id}}")
    def update(self, schedule_id: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("PUT", f"{V1}/schedules/{_p(schedule_id)}", json=fields))

    @operation("DELETE", f"{V1}/schedules/{{schedule_id}}")
    def delete(self, schedule_id: str) -> R_co:
        return self._x.call(RequestSpec("DELETE", f"{V1}/schedules/{_p(schedule_id)}"))

    @operation("POST", f"{V1}/schedules/{{schedule_id}}/run", idempotent=True)
    def run(self, schedule_id: str, *, idempotency_key: str | None = None) -> R_co:
        """Run a schedule now, once."""
        return self._x.call(RequestSpec("POST", f"{V1}/schedules/{_p(schedule_id)}/run",
                                        idempotent=True, idempotency_key=idempotency_key))


class Segments(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/segments")
    def list(self, *, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/segments",
                                            params={"page_size": page_size}))

    @operation("POST", f"{V1}/segments")
    def create(self, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/segments", json=fields))

    @operation("GET", f"{V1}/segments/{{segment_ref}}")
    def get(self, segment_ref: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/segments/{_p(segment_ref)}"))

    @operation("PUT", f"{V1}/segments/{{segment_ref}}")
    def update(self, segment_ref: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("PUT", f"{V1}/segments/{_p(segment_ref)}", json=fields))

    @operation("DELETE", f"{V1}/segments/{{segment_ref}}")
    def delete(self, segment_ref: str) -> R_co:
        return self._x.call(RequestSpec("DELETE", f"{V1}/segments/{_p(segment_ref)}"))

    @operation("GET", f"{V1}/segments/{{segment_ref}}/count")
    def count(self, segment_ref: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/segments/{_p(segment_ref)}/count"))

    @operation("GET", f"{V1}/segments/{{segment_ref}}/recipients")
    def recipients(self, segment_ref: str, *, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/segments/{_p(segment_ref)}/recipients",
                                            params={"page_size": page_size}))

    @operation("POST", f"{V1}/segments/{{segment_ref}}/send", idempotent=True)
    def send(self, segment_ref: str, *, template_id: str, idempotency_key: str | None = None,
             **fields: Any) -> R_co:
        """Send a template to everyone in the segment (the fields of `notifications.send`,
        without `recipients`)."""
        return self._x.call(RequestSpec("POST", f"{V1}/segments/{_p(segment_ref)}/send",
                                        json={"template_id": template_id, **fields},
                                        idempotent=True, idempotency_key=idempotency_key))


class Webhooks(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/webhooks")
    def list(self, *, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/webhooks",
                                            params={"page_size": page_size}))

    @operation("POST", f"{V1}/webhooks")
    def create(self, *, url: str, **fields: Any) -> R_co:
        """Returns the endpoint with its signing `secret` (`whsec_…`): shown only here."""
        return self._x.call(RequestSpec("POST", f"{V1}/webhooks", json={"url": url, **fields}))

    @operation("GET", f"{V1}/webhooks/{{endpoint_id}}")
    def get(self, endpoint_id: str) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/webhooks/{_p(endpoint_id)}"))

    @operation("DELETE", f"{V1}/webhooks/{{endpoint_id}}")
    def delete(self, endpoint_id: str) -> R_co:
        return self._x.call(RequestSpec("DELETE", f"{V1}/webhooks/{_p(endpoint_id)}"))

    @operation("GET", f"{V1}/webhooks/{{endpoint_id}}/attempts")
    def attempts(self, endpoint_id: str, *, message_id: str | None = None,
                 succeeded: bool | None = None, page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/webhooks/{_p(endpoint_id)}/attempts",
                                            params={"message_id": message_id,
                                                    "succeeded": succeeded,
                                                    "page_size": page_size}))

    @operation("POST", f"{V1}/webhooks/{{endpoint_id}}/replay")
    def replay(self, endpoint_id: str, **fields: Any) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/webhooks/{_p(endpoint_id)}/replay",
                                        json=fields))

    @operation("POST", f"{V1}/webhooks/{{endpoint_id}}/rotate-secret")
    def rotate_secret(self, endpoint_id: str) -> R_co:
        return self._x.call(RequestSpec("POST", f"{V1}/webhooks/{_p(endpoint_id)}/rotate-secret"))

    @operation("POST", f"{V1}/webhooks/{{endpoint_id}}/test")
    def test(self, endpoint_id: str) -> R_co:
        """Send a signed test event to the endpoint."""
        return self._x.call(RequestSpec("POST", f"{V1}/webhooks/{_p(endpoint_id)}/test"))


class Audit(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/audit/logs")
    def logs(self, *, action: str | None = None, notification_id: str | None = None,
             recipient: str | None = None, start: str | None = None, end: str | None = None,
             page_size: int | None = None) -> P_co:
        return self._x.paginate(RequestSpec("GET", f"{V1}/audit/logs", params={
            "action": action, "notification_id": notification_id, "recipient": recipient,
            "start": start, "end": end, "page_size": page_size}))


class Metrics(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/metrics/delivery-rates")
    def delivery_rates(self, *, window: str | None = None) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/metrics/delivery-rates",
                                        params={"window": window}))

    @operation("GET", f"{V1}/metrics/channel-performance")
    def channel_performance(self, *, window: str | None = None) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/metrics/channel-performance",
                                        params={"window": window}))

    @operation("GET", f"{V1}/metrics/system-status")
    def system_status(self) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/metrics/system-status"))


class Admin(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/admin/queue-status")
    def queue_status(self) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/admin/queue-status"))

    @operation("POST", f"{V1}/admin/retry-failed")
    def retry_failed(self, **fields: Any) -> R_co:
        """Re-drive failed deliveries (`notification_id`, `delivery_ids`, `channel`, …)."""
        return self._x.call(RequestSpec("POST", f"{V1}/admin/retry-failed", json=fields))


class System(_Resource[R_co, P_co]):
    @operation("GET", f"{V1}/health")
    def health(self) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/health"))

    @operation("GET", f"{V1}/ready")
    def ready(self) -> R_co:
        return self._x.call(RequestSpec("GET", f"{V1}/ready"))


RESOURCES: dict[str, type[_Resource[Any, Any]]] = {
    "notifications": Notifications, "templates": Templates, "preferences": Preferences,
    "recipients": Recipients, "schedules": Schedules, "segments": Segments,
    "webhooks": Webhooks, "audit": Audit, "metrics": Metrics, "admin": Admin, "system": System,
}
