from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.core.exceptions import error_body

from ..models import Channel, Notification, NotificationStatus
from ..redrive import deliveries_redrive, failed_deliveries
from ..selectors import notification_get, notification_list, notification_status_counts
from ..services import notification_cancel, notification_send, request_fingerprint
from .serializers import (
    NotificationAcceptedSerializer,
    NotificationDetailSerializer,
    NotificationSendSerializer,
    NotificationSerializer,
    NotificationStatusSerializer,
    RetryFailedResultSerializer,
    RetryFailedSerializer,
)


def _accepted_body(notification: Notification) -> dict[str, Any]:
    deliveries = getattr(notification, "prefetched_deliveries", None)
    if deliveries is None:
        deliveries = list(
            notification.deliveries.select_related("recipient").order_by("created_at", "id")
        )
    return dict(
        NotificationAcceptedSerializer(
            {
                "id": notification.id,
                "status": notification.status,
                "created_at": notification.created_at,
                "scheduled_at": notification.scheduled_at,
                "deliveries": [
                    {"id": d.id, "recipient": d.recipient.external_id, "channel": d.channel,
                     "status": d.status}
                    for d in deliveries
                ],
            }
        ).data
    )


def _status_body(notification: Notification) -> dict[str, Any]:
    counts = notification_status_counts(notification=notification)
    return {
        "id": str(notification.id),
        "status": notification.status,
        "total": sum(counts.values()),
        "counts": counts,
        "updated_at": notification.updated_at.isoformat(),
        "completed_at": notification.completed_at.isoformat() if notification.completed_at else None,
    }


class NotificationListFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=NotificationStatus.choices, required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    recipient = serializers.CharField(required=False, max_length=200)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class NotificationCollectionApi(ListAPIView):
    serializer_class = NotificationSerializer

    @extend_schema(
        request=NotificationSendSerializer,
        responses={202: NotificationAcceptedSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER,
                description="Same key and body within 24 h returns the first response.",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        """Send a template to recipients on one or more channels. 202 once committed."""
        serializer = NotificationSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip() or None
        if key is not None and len(key) > 255:
            return Response(
                error_body("invalid", "Idempotency-Key is too long.",
                           {"Idempotency-Key": ["At most 255 characters."]}),
                status=status.HTTP_400_BAD_REQUEST,
            )
        outcome = notification_send(
            client=request_client(request),
            **serializer.validated_data,
            idempotency_key=key,
            request_hash=request_fingerprint(request.data),
        )
        response = Response(_accepted_body(outcome.notification), status=status.HTTP_202_ACCEPTED)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(parameters=[NotificationListFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your notifications, newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        filters = NotificationListFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return notification_list(client=request_client(self.request), **filters.validated_data)


class NotificationDetailApi(APIView):
    @extend_schema(responses=NotificationDetailSerializer)
    def get(self, request: Request, notification_id: str) -> Response:
        """The notification, its deliveries and each delivery's timeline."""
        notification = notification_get(client=request_client(request), notification_id=notification_id)
        return Response(NotificationDetailSerializer(notification).data)


class NotificationStatusApi(APIView):
    @extend_schema(responses=NotificationStatusSerializer)
    def get(self, request: Request, notification_id: str) -> Response:
        """The notification's status with a count of its deliveries per status."""
        notification = notification_get(
            client=request_client(request), notification_id=notification_id, with_timeline=False
        )
        return Response(_status_body(notification))


class RetryFailedApi(APIView):
    @extend_schema(request=RetryFailedSerializer, responses={202: RetryFailedResultSerializer})
    def post(self, request: Request) -> Response:
        """Re-drive your dead-lettered deliveries (status `failed`): all of them, or those of
        one notification, a list of ids, a channel, or failed after a time. Each gets a fresh
        attempt budget; the re-drive shows on its timeline."""
        serializer = RetryFailedSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        limit = data.pop("limit")
        client = request_client(request)
        key = getattr(request.auth, "prefix", "")
        count = deliveries_redrive(
            deliveries=failed_deliveries(client=client, **data), actor=f"api_key:{key}", limit=limit
        )
        return Response({"redriven": count}, status=status.HTTP_202_ACCEPTED)


class NotificationCancelApi(APIView):
    @extend_schema(request=None, responses={200: NotificationStatusSerializer})
    def put(self, request: Request, notification_id: str) -> Response:
        """Cancel what has not been sent yet (scheduled, queued or waiting to retry). 409 if
        every delivery was already sent."""
        client = request_client(request)
        notification = notification_get(client=client, notification_id=notification_id,
                                        with_timeline=False)
        key = getattr(request.auth, "prefix", "")
        notification_cancel(notification=notification, actor=f"api_key:{key}")
        notification.refresh_from_db()
        return Response(_status_body(notification))
