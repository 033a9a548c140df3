"""Shapes of the inbox API (docs/inbox.md). A message is `selectors.message_payload`, the same
JSON the stream's `message` events carry."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from ..selectors import Status


class InboxMessageSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    seq = serializers.IntegerField(help_text="Per recipient, increasing: the stream's event id.")
    delivery_id = serializers.UUIDField(help_text="The delivery this message is (channel in_app).")
    category = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    action_url = serializers.CharField(help_text="Where the message leads; may be empty.")
    # A field named like Serializer.data (declared fields are kept apart from attributes).
    data = serializers.DictField(help_text="The template's in-app data, rendered.")  # type: ignore[assignment]
    created_at = serializers.DateTimeField()
    seen_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()


MESSAGE_EXAMPLE = {
    "id": "6f1c0d5e-2b8a-4c1e-9f4a-1d2e3f405162", "seq": 42,
    "delivery_id": "0b7e5a52-8a8c-4d8e-bb9b-7c3f5c1a2d10", "category": "transactional",
    "title": "Welcome, Ada", "body": "Thanks for joining Acme.",
    "action_url": "https://app.example.com/start", "data": {"order_id": "ORD-789"},
    "created_at": "2026-01-05T09:00:00Z", "seen_at": None, "read_at": None,
    "archived_at": None, "expires_at": "2026-04-05T09:00:00Z",
}


@extend_schema_serializer(examples=[OpenApiExample(
    "A page", value={"next": "https://notifyhub.example.com/api/v1/inbox/messages?cursor=42",
                     "previous": None, "results": [MESSAGE_EXAMPLE]}, response_only=True)])
class InboxPageSerializer(serializers.Serializer[Any]):
    next = serializers.CharField(allow_null=True, help_text="The next (older) page, or null.")
    previous = serializers.CharField(allow_null=True)
    results = InboxMessageSerializer(many=True)


class InboxListFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Status.CHOICES, required=False, default=Status.ALL,
                                     help_text="all (default), unread or unseen; archived "
                                               "messages are never listed.")
    cursor = serializers.RegexField(r"^[1-9][0-9]{0,17}$", required=False,
                                    help_text="From a previous page's `next`.")
    page_size = serializers.IntegerField(required=False, min_value=1,
                                         help_text="Messages per page (default 25, at most 100).")


@extend_schema_serializer(examples=[OpenApiExample(
    "Counts", value={"unread": 3, "unseen": 1, "total": 12}, response_only=True)])
class InboxCountsSerializer(serializers.Serializer[Any]):
    unread = serializers.IntegerField()
    unseen = serializers.IntegerField()
    total = serializers.IntegerField(help_text="Messages in the inbox (archived ones excluded).")


@extend_schema_serializer(examples=[OpenApiExample(
    "Marked", value={"changed": 1, "counts": {"unread": 2, "unseen": 0, "total": 12}},
    response_only=True)])
class InboxMarkSerializer(serializers.Serializer[Any]):
    changed = serializers.IntegerField(help_text="Messages whose state changed (0: already so).")
    counts = InboxCountsSerializer()


@extend_schema_serializer(examples=[OpenApiExample(
    "Me", value={"recipient_id": "user-123", "locale": "en"}, response_only=True)])
class InboxMeSerializer(serializers.Serializer[Any]):
    recipient_id = serializers.CharField(help_text="Your own id for the recipient.")
    locale = serializers.CharField()
    preferences_url = serializers.URLField(
        help_text="The recipient's hosted preference center (signed, long-lived link).")


@extend_schema_serializer(examples=[OpenApiExample(
    "A token", value={
        "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiIuLi4ifQ.c2lnbmF0dXJl",
        "expires_at": "2026-01-05T10:00:00Z",
        "stream_url": "https://stream.notifyhub.example.com/api/v1/inbox/stream"},
    response_only=True)])
class InboxTokenSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(help_text="The recipient token (a JWT): give it to the "
                                            "recipient's browser or app.")
    expires_at = serializers.DateTimeField()
    stream_url = serializers.CharField(help_text="Where the SSE stream is served "
                                                 "(INBOX_STREAM_URL); add ?token=.")
