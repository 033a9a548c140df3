from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from apps.core.exceptions import ApplicationError
from apps.core.fields import E164, BoundedJSONObjectField, StrictTypesMixin, has_nul, validate_timezone
from apps.core.queues import Priority
from apps.recipients.api.serializers import InlineRecipientSerializer

from ..models import (
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)
from ..selectors import DeliveryCursor


@extend_schema_field(
    {
        "oneOf": [
            # `\S`: not only whitespace (an id is stripped, and a blank one refused).
            {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S",
             "description": "The id of a recipient you created"},
            {
                "type": "object",
                "description": "A recipient upserted on the fly",
                "required": ["id"],
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
                    "email": {"type": "string", "format": "email"},
                    "phone": {"type": "string", "example": "+14155550100",
                              "pattern": r"^(\+[1-9][0-9]{6,14})?$"},
                    "whatsapp": {"type": "string", "pattern": r"^(\+[1-9][0-9]{6,14})?$"},
                    "locale": {"type": "string", "maxLength": 15,
                               "pattern": r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"},
                    "timezone": {"type": "string", "minLength": 1, "maxLength": 64,
                                 "description": "An IANA time zone name."},
                    "attributes": {"type": "object"},
                },
            },
        ]
    }
)
class RecipientRefField(serializers.Field):
    """A recipient: your id for one already known, or an object upserted on the fly."""

    default_error_messages = {"invalid": "A recipient id string or an object with an 'id'."}

    def to_internal_value(self, data: Any) -> str | dict[str, Any]:
        if isinstance(data, str):
            if not data.strip() or len(data) > 200 or "\x00" in data:
                self.fail("invalid")
            return data
        if isinstance(data, dict):
            # One serializer per field, reused for every recipient: building a serializer's
            # fields costs more than validating an item (bulk sends validate 100,000).
            inline = self.__dict__.get("_inline")
            if inline is None:
                inline = self.__dict__["_inline"] = InlineRecipientSerializer()
            return dict(inline.run_validation(data))
        self.fail("invalid")
        raise AssertionError  # unreachable

    def to_representation(self, value: Any) -> Any:
        return value


class SendContentSerializer(StrictTypesMixin, serializers.Serializer):
    """What to send, without to whom: shared by notification, segment and schedule sends."""

    template_id = serializers.CharField(max_length=100)
    variables = BoundedJSONObjectField(required=False, default=dict)
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False, min_length=1
    )
    priority = serializers.ChoiceField(choices=Priority.choices(), default="normal")
    category = serializers.RegexField(r"^[a-z0-9_.-]{1,50}$", required=False)
    metadata = BoundedJSONObjectField(required=False, default=dict, max_bytes=8192)
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True)
    local_send_time = serializers.TimeField(
        required=False, help_text="Deliver at this time in each recipient's own time zone "
        "(next occurrence, or on local_send_date).")
    local_send_date = serializers.DateField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "local_send_date" in attrs and "local_send_time" not in attrs:
            raise serializers.ValidationError({"local_send_time": ["Required with local_send_date."]})
        # After every field is valid (a 400 names them all first): a business rule, so 422.
        # With local_send_time too, the answer is conflicting_schedule (apps/notifications/bulk.py).
        if attrs.get("local_send_time") is None:
            scheduled_at_check_horizon(attrs.get("scheduled_at"))
        return attrs


class ScheduleTooFarAhead(ApplicationError):
    code = "schedule_too_far_ahead"


def scheduled_at_check_horizon(value: datetime | None, *, field: str = "scheduled_at") -> None:
    """422 `schedule_too_far_ahead` when `value` is more than SCHEDULED_AT_MAX_AHEAD_DAYS from
    now: a send parked for years is a typo (the year 9999), not a plan."""
    days = settings.SCHEDULED_AT_MAX_AHEAD_DAYS
    if value is not None and value > timezone.now() + timedelta(days=days):
        raise ScheduleTooFarAhead(
            f"scheduled_at is more than {days} days ahead.",
            fields={field: [f"Must be at most {days} days from now."]})


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Order confirmation by email",
            value={
                "recipients": ["user_456", {"id": "user_789", "email": "a@example.com"}],
                "template_id": "order_confirmation",
                "variables": {"name": "John", "orderId": "ORD-789"},
                "channels": ["email"],
                "priority": "high",
                "category": "transactional",
                "metadata": {"campaign_id": "123"},
            },
            request_only=True,
        )
    ]
)
class NotificationSendSerializer(SendContentSerializer):
    recipients = serializers.ListField(child=RecipientRefField(), min_length=1)

    def validate_recipients(self, value: list[Any]) -> list[Any]:
        # Read at request time (not import time) so the setting can change per deployment.
        limit = settings.MAX_RECIPIENTS_PER_REQUEST
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} recipients per request.")
        return value


def _iso(value: datetime | None) -> str | None:
    """What DRF's DateTimeField writes (ISO 8601 in the current time zone, UTC as "Z"),
    without building a field per value. The current time zone is the default one (TIME_ZONE):
    nothing in NotifyHub activates another, and reading the active one is a thread-local
    lookup (~5-20 µs, four per delivery of a page)."""
    if value is None:
        return None
    default = timezone.get_default_timezone()
    if value.tzinfo is UTC and getattr(default, "key", None) in _UTC_NAMES:
        # What the database hands back (its session is in UTC) when TIME_ZONE is UTC too: no
        # conversion (half of this function's cost, four times per delivery of a page).
        return value.isoformat()[:-6] + "Z"
    text = value.astimezone(default).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})


# The read serializers below declare their fields (the schema and the docs come from them) but
# write their output directly: pages of 50 rows through DRF's generic field machinery cost a
# few milliseconds per request. tests/notifications/api/test_read_representation.py checks
# both give the same JSON.


class DeliveryEventSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="occurred_at")

    class Meta:
        model = DeliveryEvent
        fields = ["at", "event", "status", "provider", "provider_message_id", "error_code",
                  "error_message", "detail"]

    def to_representation(self, instance: DeliveryEvent) -> dict[str, Any]:
        return {"at": _iso(instance.occurred_at), "event": instance.event,
                "status": instance.status, "provider": instance.provider,
                "provider_message_id": instance.provider_message_id,
                "error_code": instance.error_code, "error_message": instance.error_message,
                "detail": instance.detail}


class DeliverySerializer(serializers.ModelSerializer):
    recipient = serializers.CharField(source="recipient.external_id")
    next_attempt_at = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ["id", "recipient", "channel", "status", "attempts", "next_attempt_at",
                  "provider", "provider_message_id", "error_code", "error_message",
                  "created_at", "sent_at", "delivered_at", "completed_at"]

    def get_next_attempt_at(self, obj: Delivery) -> str | None:
        return obj.due_at.isoformat() if obj.status == "retrying" and obj.due_at else None

    def to_representation(self, instance: Delivery) -> dict[str, Any]:
        return {
            "id": str(instance.id), "recipient": instance.recipient.external_id,
            "channel": instance.channel, "status": instance.status,
            "attempts": instance.attempts, "next_attempt_at": self.get_next_attempt_at(instance),
            "provider": instance.provider, "provider_message_id": instance.provider_message_id,
            "error_code": instance.error_code, "error_message": instance.error_message,
            "created_at": _iso(instance.created_at), "sent_at": _iso(instance.sent_at),
            "delivered_at": _iso(instance.delivered_at),
            "completed_at": _iso(instance.completed_at),
        }


class DeliveryWithTimelineSerializer(DeliverySerializer):
    timeline = DeliveryEventSerializer(source="events", many=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "timeline"]

    def to_representation(self, instance: Delivery) -> dict[str, Any]:
        data = super().to_representation(instance)
        event = DeliveryEventSerializer()
        data["timeline"] = [event.to_representation(e) for e in instance.events.all()]
        return data


class DeliverySummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    recipient = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.CharField()


class TemplateRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="template.id")
    key = serializers.CharField(source="template.key")
    version = serializers.IntegerField()


class NotificationSerializer(serializers.ModelSerializer):
    template = TemplateRefSerializer(source="template_version")
    test = serializers.BooleanField(
        source="is_test", read_only=True,
        help_text="Accepted with a test key: sent to the provider sandbox only.")

    class Meta:
        model = Notification
        fields = ["id", "status", "test", "priority", "category", "channels", "template",
                  "variables", "metadata", "scheduled_at", "recipient_count", "created_at",
                  "updated_at", "completed_at"]

    def to_representation(self, instance: Notification) -> dict[str, Any]:
        return notification_item(instance)


def notification_item(instance: Notification) -> dict[str, Any]:
    """A notification (with its template version and template) as NotificationSerializer
    writes it."""
    version = instance.template_version
    return {
        "id": str(instance.id), "status": instance.status, "test": instance.is_test,
        "priority": instance.priority, "category": instance.category,
        "channels": instance.channels,
        "template": {"id": str(version.template.id), "key": version.template.key,
                     "version": version.version},
        "variables": instance.variables, "metadata": instance.metadata,
        "scheduled_at": _iso(instance.scheduled_at),
        "recipient_count": instance.recipient_count,
        "created_at": _iso(instance.created_at), "updated_at": _iso(instance.updated_at),
        "completed_at": _iso(instance.completed_at),
    }


def delivery_event_item(row: dict[str, Any],
                        iso: Callable[[datetime | None], str | None] = _iso) -> dict[str, Any]:
    """An event row (selectors.EVENT_ROW_FIELDS) as DeliveryEventSerializer writes it."""
    return {"at": iso(row["occurred_at"]), "event": row["event"], "status": row["status"],
            "provider": row["provider"], "provider_message_id": row["provider_message_id"],
            "error_code": row["error_code"], "error_message": row["error_message"],
            "detail": row["detail"]}


def delivery_item(row: dict[str, Any],
                  iso: Callable[[datetime | None], str | None] = _iso) -> dict[str, Any]:
    """A delivery row (selectors.deliveries_rows_page) as DeliverySerializer writes it, or
    DeliveryWithTimelineSerializer when the row carries its `timeline`."""
    due_at = row["due_at"]
    item = {
        "id": str(row["id"]), "recipient": row["recipient"], "channel": row["channel"],
        "status": row["status"], "attempts": row["attempts"],
        "next_attempt_at": due_at.isoformat() if row["status"] == "retrying" and due_at else None,
        "provider": row["provider"], "provider_message_id": row["provider_message_id"],
        "error_code": row["error_code"], "error_message": row["error_message"],
        "created_at": iso(row["created_at"]), "sent_at": iso(row["sent_at"]),
        "delivered_at": iso(row["delivered_at"]), "completed_at": iso(row["completed_at"]),
    }
    timeline = row.get("timeline")
    if timeline is not None:
        item["timeline"] = [delivery_event_item(event, iso) for event in timeline]
    return item


def delivery_items(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`delivery_item` of each row of a page, each distinct time written once: a page's
    deliveries share their accept time (one transaction) and often their other times, and
    writing a time is most of an item's cost (4 or more per delivery)."""
    memo: dict[datetime, str | None] = {}

    def iso(value: datetime | None) -> str | None:
        if value is None:
            return None
        text = memo.get(value)
        if text is None:
            text = memo[value] = _iso(value)
        return text

    return [delivery_item(row, iso) for row in rows]


def notification_detail_body(notification: Notification, *, counts: dict[str, int],
                             deliveries: list[dict[str, Any]],
                             deliveries_next: str | None) -> dict[str, Any]:
    """GET /notifications/{id}'s body as NotificationDetailSerializer writes it, from the
    notification, its counts and the first page's delivery rows (with their timelines)."""
    return {**notification_item(notification), "total": sum(counts.values()),
            "counts": dict(counts), "deliveries": delivery_items(deliveries),
            "deliveries_next": deliveries_next}


# What a list row reads: the notification's columns and its template's id, key and version
# (`values()` rows: no model instances, three per row with select_related).
NOTIFICATION_LIST_VALUES = (
    "id", "status", "is_test", "priority", "category", "channels", "variables", "metadata",
    "scheduled_at", "recipient_count", "created_at", "updated_at", "completed_at",
    "template_version__template_id", "template_version__template__key",
    "template_version__version",
)


def notification_list_item(row: dict[str, Any]) -> dict[str, Any]:
    """A `NOTIFICATION_LIST_VALUES` row as NotificationSerializer writes a notification."""
    return {
        "id": str(row["id"]), "status": row["status"], "test": row["is_test"],
        "priority": row["priority"], "category": row["category"], "channels": row["channels"],
        "template": {"id": str(row["template_version__template_id"]),
                     "key": row["template_version__template__key"],
                     "version": row["template_version__version"]},
        "variables": row["variables"], "metadata": row["metadata"],
        "scheduled_at": _iso(row["scheduled_at"]), "recipient_count": row["recipient_count"],
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
        "completed_at": _iso(row["completed_at"]),
    }


class DeliveryPageQuerySerializer(serializers.Serializer):
    """Query of GET /notifications/{id}/deliveries."""

    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    cursor = serializers.CharField(required=False, max_length=200,
                                   help_text="The `next` cursor of the previous page.")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)
    include = serializers.ChoiceField(
        choices=["events"], required=False,
        help_text="`events`: each delivery with its timeline.")

    def validate_cursor(self, value: str) -> DeliveryCursor:
        try:
            return DeliveryCursor.decode(value)
        except ValueError as exc:
            raise serializers.ValidationError(
                "Not a cursor from this endpoint: follow the `next` link as given.") from exc


class DeliveryPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page; null on the last.")
    results = DeliveryWithTimelineSerializer(
        many=True, help_text="`timeline` only with `include=events`.")


class NotificationDetailSerializer(NotificationSerializer):
    """The notification, its deliveries per status, and the first page of its deliveries.
    Built by the view: `counts`, `deliveries` and `deliveries_next` come from the context."""

    total = serializers.SerializerMethodField(help_text="Deliveries in all.")
    counts = serializers.SerializerMethodField(help_text="Deliveries per status.")
    deliveries = serializers.SerializerMethodField(
        help_text="The first deliveries, in accepted order, each with its timeline.")
    deliveries_next = serializers.SerializerMethodField(
        help_text="GET it for the next deliveries (…/deliveries?cursor=…); null if none.")

    class Meta(NotificationSerializer.Meta):
        fields = [*NotificationSerializer.Meta.fields, "total", "counts", "deliveries",
                  "deliveries_next"]

    def to_representation(self, instance: Notification) -> dict[str, Any]:
        data = super().to_representation(instance)
        data.update(total=self.get_total(instance), counts=self.get_counts(instance),
                    deliveries=self.get_deliveries(instance),
                    deliveries_next=self.get_deliveries_next(instance))
        return data

    def get_total(self, obj: Notification) -> int:
        return sum(self.context["counts"].values())

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_counts(self, obj: Notification) -> dict[str, int]:
        return dict(self.context["counts"])

    @extend_schema_field(DeliveryWithTimelineSerializer(many=True))
    def get_deliveries(self, obj: Notification) -> list[dict[str, Any]]:
        delivery = DeliveryWithTimelineSerializer()
        return [delivery.to_representation(d) for d in self.context["deliveries"]]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_deliveries_next(self, obj: Notification) -> str | None:
        next_url: str | None = self.context["deliveries_next"]
        return next_url


class NotificationAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=NotificationStatus.choices)
    created_at = serializers.DateTimeField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    test = serializers.BooleanField(help_text="Accepted with a test key (sandbox only).")
    deliveries = DeliverySummarySerializer(
        many=True, help_text="The deliveries created; empty for a large send (`expanding`).")
    expanding = serializers.BooleanField(
        required=False, help_text="Only for a large send (at least ACCEPT_FANOUT_MIN_DELIVERIES "
        "deliveries): accepted and committed, its deliveries are being created by workers. "
        "Follow them with GET …/{id}/status and …/{id}/deliveries.")
    recipient_count = serializers.IntegerField(required=False, help_text="Only for a large send.")
    delivery_count = serializers.IntegerField(
        required=False, help_text="Only for a large send: recipients times channels accepted.")


class NotificationStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=NotificationStatus.choices)
    total = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    updated_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class RetryFailedSerializer(StrictTypesMixin, serializers.Serializer):
    notification_id = serializers.UUIDField(required=False)
    delivery_ids = serializers.ListField(child=serializers.UUIDField(), required=False,
                                         max_length=10_000)
    failed_after = serializers.DateTimeField(required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=10_000, default=1000)


class RetryFailedResultSerializer(serializers.Serializer):
    redriven = serializers.IntegerField()


# --- fast send-body validation -------------------------------------------------------------
# DRF costs ~100 µs per send item and ~20 µs per inline recipient: 5 s for a 50,000-recipient
# body. The send bodies are checked here in plain Python first (a few µs per item); anything
# the fast path does not accept as surely valid (a failing value, a type it does not handle,
# non-ASCII text, schedules) goes through the serializers above, so the errors, their field
# paths (`recipients[12].email`, `notifications[3].template_id`) and the validated values are
# exactly DRF's. The serializers stay the OpenAPI schema of the bodies.

_SEND_FIELDS = frozenset({"recipients", "template_id", "variables", "channels", "priority",
                          "category", "metadata"})
_SLOW_FIELDS = frozenset({"scheduled_at", "local_send_time", "local_send_date"})
_CHANNELS = frozenset(Channel.values)
_PRIORITIES = frozenset(p for p, _ in Priority.choices())
_CATEGORY = re.compile(r"^[a-z0-9_.-]{1,50}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_INLINE_FIELDS = frozenset({"id", "email", "phone", "whatsapp", "locale", "timezone",
                            "attributes"})
_known_timezones: set[str] = set()


class _Slow(Exception):
    """The fast path cannot vouch for this value: let DRF decide."""


def _text(value: Any, max_length: int) -> str:
    """A CharField's value (stripped), if plainly valid."""
    if type(value) is not str or not value.isascii() or "\x00" in value:
        raise _Slow
    value = value.strip()
    if not value or len(value) > max_length:
        raise _Slow
    return value


def _json_object(value: Any, max_bytes: int) -> dict[str, Any]:
    if type(value) is not dict or has_nul(value):
        raise _Slow
    # The limit is on json.dumps's text (BoundedJSONObjectField). Each byte of orjson's compact
    # UTF-8 text is at most 6 characters of it (a control character as \u0001; a separator
    # with its space, 2), so an object within a sixth of the limit by orjson is within it:
    # most items, ~10x cheaper. The rest (or what orjson cannot write) are measured exactly.
    try:
        if 6 * len(orjson.dumps(value)) <= max_bytes:
            return value
    except (TypeError, orjson.JSONEncodeError):
        pass
    if len(json.dumps(value, default=str)) > max_bytes:
        raise _Slow
    return value


def _address(value: Any, check: Any) -> str:
    if type(value) is not str or not value.isascii() or "\x00" in value:
        raise _Slow
    value = value.strip()
    if value and not check(value):
        raise _Slow
    return value


# Plain addresses (the bulk of 50,000 items) in a subset of what Django's EmailValidator
# accepts (dot-atom local part, letter TLD): they pass without it; anything else is its call.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}")


def _email_ok(value: str) -> bool:
    if len(value) > 254:
        return False
    if _PLAIN_EMAIL.fullmatch(value):
        return True
    try:
        validate_email(value)
    except DjangoValidationError:
        return False
    return True


def _phone_ok(value: str) -> bool:
    return bool(E164.match(value))


def _inline_recipient(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": _text(data.get("id"), 200)}
    for name, value in data.items():
        if name == "id" or name not in _INLINE_FIELDS:
            continue
        if name == "email":
            out[name] = _address(value, _email_ok)
        elif name in ("phone", "whatsapp"):
            out[name] = _address(value, _phone_ok)
        elif name == "locale":
            locale = _text(value, 15)
            if not _LOCALE.match(locale):
                raise _Slow
            out[name] = locale
        elif name == "timezone":
            tz = _text(value, 64)
            if tz not in _known_timezones:
                try:
                    validate_timezone(tz)
                except serializers.ValidationError:
                    raise _Slow from None  # DRF reports it
                _known_timezones.add(tz)
            out[name] = tz
        else:  # attributes
            out[name] = _json_object(value, 32_768)
    return out


def _recipient_ref(value: Any) -> str | dict[str, Any]:
    if type(value) is str:
        if not value.strip() or len(value) > 200 or "\x00" in value:
            raise _Slow
        return value
    if type(value) is dict:
        return _inline_recipient(value)
    raise _Slow


def _fast_send(data: Any) -> dict[str, Any]:
    """A send body's validated_data, as NotificationSendSerializer gives it; _Slow if unsure."""
    if type(data) is not dict or not _SLOW_FIELDS.isdisjoint(data):
        raise _Slow
    recipients = data.get("recipients")
    if type(recipients) is not list or not recipients:
        raise _Slow
    if len(recipients) > settings.MAX_RECIPIENTS_PER_REQUEST:
        raise _Slow
    out: dict[str, Any] = {
        "template_id": _text(data.get("template_id"), 100),
        "variables": _json_object(data["variables"], 32_768) if "variables" in data else {},
        "priority": data.get("priority", "normal"),
        "metadata": _json_object(data["metadata"], 8192) if "metadata" in data else {},
    }
    if out["priority"] not in _PRIORITIES or type(out["priority"]) is not str:
        raise _Slow
    if "channels" in data:
        channels = data["channels"]
        if (type(channels) is not list or not channels
                or not all(type(c) is str and c in _CHANNELS for c in channels)):
            raise _Slow
        out["channels"] = list(channels)
    if "category" in data:
        category = data["category"]
        if type(category) is not str or not _CATEGORY.match(category):
            raise _Slow
        out["category"] = category
    # The body is otherwise valid: a bad recipient is reported alone, as DRF would, by the
    # recipient field itself (not by re-validating the whole body: 50,000 recipients).
    refs: list[str | dict[str, Any]] = []
    bad: dict[int, Any] = {}
    for index, ref in enumerate(recipients):
        try:
            refs.append(_recipient_ref(ref))
        except _Slow:
            try:
                refs.append(_REF_FIELD.run_validation(ref))
            except serializers.ValidationError as exc:
                bad[index] = exc.detail
    if bad:
        raise _BadRecipients({"recipients": bad})
    out["recipients"] = refs
    return out


class _BadRecipients(Exception):
    def __init__(self, detail: dict[str, Any]) -> None:
        self.detail = detail


_REF_FIELD = RecipientRefField()


def send_body_validate(data: Any) -> dict[str, Any]:
    """A POST /api/v1/notifications body → validated data; raises DRF's ValidationError (400
    with DRF's field paths) as NotificationSendSerializer would."""
    try:
        return _fast_send(data)
    except _BadRecipients as exc:
        raise serializers.ValidationError(exc.detail) from None
    except (_Slow, serializers.ValidationError):
        serializer = NotificationSendSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


def bulk_body_validate(data: Any) -> list[dict[str, Any]]:
    """A POST /api/v1/notifications/bulk body → its validated items; every bad item is named
    (`notifications[3].template_id`), as BulkSendSerializer would. The size limits are checked
    before any item; items are checked one by one, each bad one by its serializer."""
    items = data.get("notifications") if isinstance(data, dict) else None
    if type(items) is not list or not items:
        envelope = BulkSendSerializer(data=data)
        envelope.is_valid(raise_exception=True)
        return list(envelope.validated_data["notifications"])
    BulkNotificationsField.check_sizes(items)
    validated: list[dict[str, Any]] = []
    errors: dict[int, Any] = {}
    too_far: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        try:
            validated.append(_fast_send(item))
            continue
        except _BadRecipients as exc:
            errors[index] = exc.detail
            continue
        except (_Slow, serializers.ValidationError):
            pass
        serializer = NotificationSendSerializer(data=item)
        try:
            valid = serializer.is_valid()
        except ScheduleTooFarAhead as exc:
            too_far.update({f"notifications[{index}].{k}": v for k, v in exc.fields.items()})
            continue
        if valid:
            validated.append(dict(serializer.validated_data))
        else:
            errors[index] = serializer.errors
    if errors:
        detail: Any = {"notifications": errors}  # keyed by index, as DRF's ListField reports
        raise serializers.ValidationError(detail)
    if too_far:
        days = settings.SCHEDULED_AT_MAX_AHEAD_DAYS
        raise ScheduleTooFarAhead(f"scheduled_at is more than {days} days ahead.", fields=too_far)
    return validated


# --- bulk send -------------------------------------------------------------------------------

class BulkNotificationsField(serializers.ListField):
    """The bulk items: sizes are checked before any item is validated (50,000 items at most,
    BULK_MAX_RECIPIENTS recipients over all items)."""

    child = NotificationSendSerializer()

    @staticmethod
    def check_sizes(data: list[Any]) -> None:
        limit = settings.BULK_MAX_NOTIFICATIONS
        if len(data) > limit:
            raise serializers.ValidationError(
                {"notifications": [f"At most {limit} notifications per request."]})
        recipients = sum(
            len(item["recipients"]) for item in data
            if isinstance(item, dict) and isinstance(item.get("recipients"), list)
        )
        if recipients > settings.BULK_MAX_RECIPIENTS:
            raise serializers.ValidationError({"notifications": [
                f"At most {settings.BULK_MAX_RECIPIENTS} recipients over all notifications."]})

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, list):
            try:
                self.check_sizes(data)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError(exc.detail["notifications"]) from exc  # type: ignore[index, call-overload]
        return list(super().to_internal_value(data))


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Two order confirmations",
            value={"notifications": [
                {"recipients": [{"id": "user_1", "email": "a@example.com"}],
                 "template_id": "order_confirmation",
                 "variables": {"name": "Ada", "orderId": "ORD-1"}},
                {"recipients": ["user_2"], "template_id": "order_confirmation",
                 "variables": {"name": "Bob", "orderId": "ORD-2"}, "priority": "high"},
            ]},
            request_only=True,
        ),
    ]
)
class BulkSendSerializer(StrictTypesMixin, serializers.Serializer):
    notifications = BulkNotificationsField(min_length=1)


class BulkAcceptedItemSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=NotificationStatus.choices)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Accepted",
            value={"count": 2, "test": False, "notifications": [
                {"index": 0, "id": "4f6c1c1e-7f3a-4f7e-9a55-1f1f0c5b2d10", "status": "pending"},
                {"index": 1, "id": "0b9d2a33-5a8c-4bb5-8a1e-7d61b0b9e6a2", "status": "pending"},
            ]},
            response_only=True, status_codes=["202"],
        ),
    ]
)
class BulkAcceptedSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    test = serializers.BooleanField(help_text="Accepted with a test key (sandbox only).")
    notifications = BulkAcceptedItemSerializer(many=True)


# --- metrics ---------------------------------------------------------------------------------

class MetricsWindowSerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=["1h", "24h", "7d"], default="24h")


class RateSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    rates = serializers.DictField(child=serializers.FloatField(allow_null=True))
    delivery_rate = serializers.FloatField(allow_null=True)


class ChannelRateSerializer(RateSummarySerializer):
    channel = serializers.ChoiceField(choices=Channel.choices)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Last 24 hours",
            value={
                "window": "24h", "since": "2026-05-01T10:00:00Z", "until": "2026-05-02T10:00:00Z",
                "overall": {"total": 1000, "counts": {"delivered": 990, "bounced": 10},
                            "rates": {"delivered": 0.99, "bounced": 0.01}, "delivery_rate": 0.99},
                "channels": [{"channel": "email", "total": 1000,
                              "counts": {"delivered": 990, "bounced": 10},
                              "rates": {"delivered": 0.99, "bounced": 0.01},
                              "delivery_rate": 0.99}],
            },
            response_only=True,
        ),
    ]
)
class DeliveryRatesSerializer(serializers.Serializer):
    window = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    overall = RateSummarySerializer()
    channels = ChannelRateSerializer(many=True)


class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class ProviderPerformanceSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    provider = serializers.CharField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    latency_ms = LatencySerializer(help_text="Accept → sent, milliseconds.")


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Last 24 hours",
            value={
                "window": "24h", "since": "2026-05-01T10:00:00Z", "until": "2026-05-02T10:00:00Z",
                "providers": [
                    {"channel": "email", "provider": "sendgrid", "sent": 980, "delivered": 975,
                     "failed": 5, "latency_ms": {"p50": 180.2, "p95": 950.0}},
                    {"channel": "email", "provider": "smtp", "sent": 20, "delivered": 0,
                     "failed": 0, "latency_ms": {"p50": 2300.0, "p95": 4100.5}},
                ],
            },
            response_only=True,
        ),
    ]
)
class ChannelPerformanceSerializer(serializers.Serializer):
    window = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    providers = ProviderPerformanceSerializer(many=True)


class ProviderStateSerializer(serializers.Serializer):
    channel = serializers.CharField()
    provider = serializers.CharField()
    configured = serializers.BooleanField()
    breaker = serializers.ChoiceField(
        choices=["closed", "open", "half_open", "unknown", "disabled", "not_configured"])


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Healthy",
            value={
                "status": "ok", "checks": {"database": "ok", "broker": "ok"},
                "queues": {"critical": 0, "high": 0, "normal": 12, "low": 0, "webhooks": 0,
                           "maintenance": 0},
                "providers": [
                    {"channel": "email", "provider": "sendgrid", "configured": True,
                     "breaker": "closed"},
                    {"channel": "push", "provider": "fcm", "configured": False,
                     "breaker": "not_configured"},
                ],
            },
            response_only=True,
        ),
    ]
)
class SystemStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    checks = serializers.DictField(child=serializers.CharField())
    queues = serializers.DictField(child=serializers.IntegerField())
    providers = ProviderStateSerializer(many=True)


class QueueDepthSerializer(serializers.Serializer):
    name = serializers.CharField()
    depth = serializers.IntegerField()


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Some work waiting",
            value={
                "broker": "ok",
                "queues": [{"name": "critical", "depth": 0}, {"name": "high", "depth": 0},
                           {"name": "normal", "depth": 12}, {"name": "low", "depth": 3},
                           {"name": "webhooks", "depth": 0}, {"name": "maintenance", "depth": 0}],
                "total": 15,
                "backlog": {"normal": {"queued": 1200, "sending": 16}, "low": {"scheduled": 40}},
            },
            response_only=True,
        ),
    ]
)
class QueueStatusSerializer(serializers.Serializer):
    broker = serializers.ChoiceField(choices=["ok", "unavailable"])
    queues = QueueDepthSerializer(many=True, help_text="Broker messages per queue (all clients).")
    total = serializers.IntegerField()
    backlog = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="Your deliveries not finished yet: priority → status → count.",
    )
