"""The read serializers write their JSON directly (for speed); it is the JSON DRF's declared
fields would have written."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from apps.notifications.api.serializers import (
    NOTIFICATION_LIST_VALUES,
    DeliveryEventSerializer,
    DeliverySerializer,
    NotificationSerializer,
    notification_list_item,
)
from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
from apps.notifications.models import Delivery, Notification
from apps.notifications.providers.base import SendResult
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db


def as_json(data: Any) -> Any:
    return json.loads(JSONRenderer().render(data))


def generic(serializer: serializers.Serializer, instance: Any) -> Any:
    return as_json(serializers.Serializer.to_representation(serializer, instance))


def test_fast_representations_match_the_declared_fields(client_tenant: Any,
                                                        email_template: Any) -> None:
    notification = notification_send(
        client=client_tenant, template_id="welcome", variables={"name": "Zoë"},
        metadata={"campaign": 7}, scheduled_at=timezone.now() + timedelta(hours=1),
        recipients=[{"id": "a", "email": "a@example.com"}, {"id": "b", "email": "b@example.com"}],
    ).notification
    Delivery.objects.filter(notification=notification).update(status="queued", due_at=None)
    first, _second = notification.deliveries.order_by("created_at", "id")
    attempt = deliveries_claim(delivery_ids=[str(first.id)])[str(first.id)]
    delivery_record_outcome(delivery_id=str(first.id), attempt=attempt,
                            result=SendResult.retryable("sendgrid", "http_503", "busy"))

    notification = Notification.objects.select_related("template_version__template").get()
    assert as_json(NotificationSerializer(notification).data) == \
        generic(NotificationSerializer(), notification)
    # The list writes `values()` rows (no instances): the same JSON.
    [row] = Notification.objects.values(*NOTIFICATION_LIST_VALUES)
    assert as_json(notification_list_item(row)) == generic(NotificationSerializer(), notification)
    for delivery in Delivery.objects.select_related("recipient").prefetch_related("events"):
        assert as_json(DeliverySerializer(delivery).data) == generic(DeliverySerializer(), delivery)
        for event in delivery.events.all():
            assert as_json(DeliveryEventSerializer(event).data) == \
                generic(DeliveryEventSerializer(), event)
    retrying = Delivery.objects.select_related("recipient").get(id=first.id)
    assert retrying.status == "retrying"
    assert DeliverySerializer(retrying).data["next_attempt_at"] is not None
