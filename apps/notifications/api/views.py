from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from apps.clients.authentication import request_client, request_is_test
from apps.clients.config_generation import request_client_generation
from apps.clients.models import Scope
from apps.clients.quotas import delivery_quota
from apps.clients.scopes import ScopeMap
from apps.core.exceptions import error_body
from apps.core.gcpause import paused_for_large_bodies
from apps.core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotency_key_for, idempotent
from apps.core.renderers import FastJSONRenderer

from .. import instrumentation
from ..bulk import AcceptedDelivery, notifications_send_bulk
from ..deletion import notification_delete
from ..models import Channel, Notification, NotificationStatus
from ..redrive import deliveries_redrive, failed_deliveries
from ..selectors import (
    DETAIL_DELIVERY_PAGE,
    DeliveryCursor,
    DeliveryRowsPage,
    deliveries_rows_page,
    notification_counts,
    notification_get,
    notification_list_rows,
)
from ..services import notification_cancel, notification_send, request_fingerprint
from .pagination import KeysetCursorPagination
from .schema import error_responses
from .serializers import (
    BulkAcceptedSerializer,
    BulkSendSerializer,
    DeliveryPageQuerySerializer,
    DeliveryPageSerializer,
    NotificationAcceptedSerializer,
    NotificationDetailSerializer,
    NotificationSendSerializer,
    NotificationSerializer,
    NotificationStatusSerializer,
    RetryFailedResultSerializer,
    RetryFailedSerializer,
    _iso,
    bulk_body_validate,
    delivery_items,
    notification_detail_body,
    notification_list_item,
    send_body_validate,
)


def _accepted_body(notification: Notification, deliveries: Sequence[AcceptedDelivery] = ()
                   ) -> dict[str, Any]:
    """The 202 body: built directly (no serializer: it is the hot path of every send). A large
    send (accepted as a job, apps/notifications/fanout.py) lists no deliveries: they are
    created by workers after the 202; it says how many there will be."""
    body: dict[str, Any] = {
        "id": str(notification.id),
        "status": notification.status,
        "created_at": _iso(notification.created_at),
        "scheduled_at": _iso(notification.scheduled_at),
        "test": notification.is_test,
    }
    planned = notification.recipient_count * len(notification.channels or ())
    if not deliveries and planned >= settings.ACCEPT_FANOUT_MIN_DELIVERIES:
        body.update(deliveries=[], expanding=True,
                    recipient_count=notification.recipient_count, delivery_count=planned)
        return body
    if not deliveries:  # a replay: read them back
        deliveries = [
            AcceptedDelivery(d.id, d.notification_id, d.recipient.external_id, d.channel,
                             d.priority, d.status)
            for d in notification.deliveries.select_related("recipient").order_by("created_at", "id")
        ]
    body["deliveries"] = [
        {"id": str(d.id), "recipient": d.recipient, "channel": d.channel, "status": d.status}
        for d in deliveries
    ]
    return body



def _status_body(notification: Notification) -> dict[str, Any]:
    counts = notification_counts(notification=notification)
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


def _query(serializer: serializers.Serializer, request: Request) -> dict[str, Any]:
    """The request's query parameters validated by `serializer` — one instance per process,
    reused (building a serializer copies its declared fields: ~10x the cost of validating a
    query); its validation keeps no state on the instance. 400 as `is_valid` would answer."""
    return dict(serializer.run_validation(request.query_params))


# The reads' JSON (pages of up to 500 deliveries) written by orjson (apps/core/renderers.py).
READ_RENDERERS = [FastJSONRenderer]
_LIST_FILTERS = NotificationListFilterSerializer()
_PAGE_QUERY = DeliveryPageQuerySerializer()


class LimitHeadersMixin:
    """Adds `Retry-After` to errors that carry one (429 `quota_exceeded`; DRF adds it for
    `throttled` itself); a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a JSON 413."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return Response(
                error_body("request_too_large", f"The request body is larger than {limit} bytes."),
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        response: Response = super().handle_exception(exc)  # type: ignore[misc]
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response["Retry-After"] = str(int(retry_after))
        return response


class NotificationCollectionApi(LimitHeadersMixin, ListAPIView):
    renderer_classes = READ_RENDERERS
    required_scopes: ScopeMap = {"GET": Scope.READ, "POST": Scope.SEND}
    serializer_class = NotificationSerializer
    pagination_class = KeysetCursorPagination

    @extend_schema(
        request=NotificationSendSerializer,
        responses={202: NotificationAcceptedSerializer, **error_responses(
            400, 409, 413, 422, 429, examples={409: ["idempotency_key_in_flight"]})},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @paused_for_large_bodies
    @idempotent
    def post(self, request: Request) -> Response:
        """Send a template to recipients on one or more channels. 202 once committed."""
        body = send_body_validate(request.data)
        # Besides the request-level record (apps.core.idempotency), the key stays on the
        # notification: reusing it after the record expired still finds this notification.
        key = idempotency_key_for(request)
        client = request_client(request)
        is_test = request_is_test(request)
        # notification_send's transaction is the request's; the quota is charged inside it
        # and refunded if it fails, commit included.
        with delivery_quota(client=client, is_test=is_test) as charge:
            outcome = notification_send(
                client=client,
                **body,
                idempotency_key=key,
                # Compared only when the key is reused (notification_replay): no key, no hash.
                request_hash=request_fingerprint(request.data) if key else "",
                is_test=is_test,
                charge=charge,
                config_generation=request_client_generation(request),
            )
        if outcome.expanding:
            instrumentation.observe_accepted_counts(
                {(c, outcome.notification.priority): outcome.notification.recipient_count
                 for c in outcome.notification.channels})
        elif not outcome.replayed:
            instrumentation.observe_accepted(outcome.deliveries)
        response = Response(_accepted_body(outcome.notification, outcome.deliveries),
                            status=status.HTTP_202_ACCEPTED)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(parameters=[NotificationListFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your notifications, newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Rows, not instances: a page of 50 would build 150 (notification, version, template).
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # the paginator always pages
        return self.get_paginated_response([notification_list_item(row) for row in page])

    def get_queryset(self) -> Any:
        """The filtered list as rows a keyset page at a time (selectors.NotificationList)."""
        return notification_list_rows(client=request_client(self.request),
                                      is_test=request_is_test(self.request),
                                      **_query(_LIST_FILTERS, self.request))


class NotificationDetailApi(APIView):
    renderer_classes = READ_RENDERERS
    required_scopes: ScopeMap = {"GET": Scope.READ, "DELETE": Scope.SEND}

    @extend_schema(responses={200: NotificationDetailSerializer, **error_responses(404)})
    def get(self, request: Request, notification_id: str) -> Response:
        """The notification, its deliveries per status (`counts`, `total`) and its first
        deliveries with their timelines; `deliveries_next` pages through the rest."""
        notification = notification_get(client=request_client(request), notification_id=notification_id,
                                        is_test=request_is_test(request))
        page = deliveries_rows_page(notification=notification, limit=DETAIL_DELIVERY_PAGE,
                                    with_events=True)
        next_url = None
        if page.next is not None:
            base = reverse("notification-deliveries", args=[notification.id], request=request)
            next_url = _with_cursor(f"{base}?include=events&page_size={DETAIL_DELIVERY_PAGE}",
                                    page.next)
        # NotificationDetailSerializer's JSON, written directly (serializers.py).
        return Response(notification_detail_body(
            notification, counts=notification_counts(notification=notification),
            deliveries=page.rows, deliveries_next=next_url))

    @extend_schema(
        request=None,
        responses={204: OpenApiResponse(description="Deleted with its deliveries and timelines."),
                   **error_responses(404, 409, examples={409: ["notification_in_flight"]})},
    )
    def delete(self, request: Request, notification_id: str) -> Response:
        """Delete the notification, its deliveries and their timelines. Work not sent yet
        (scheduled, queued, retrying) is dropped; 409 `notification_in_flight` while a delivery
        is being handed to a provider (`sending`) — retry a moment later."""
        notification = notification_get(client=request_client(request),
                                        notification_id=notification_id,
                                        is_test=request_is_test(request), with_timeline=False)
        notification_delete(notification=notification)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _with_cursor(url: str, cursor: DeliveryCursor) -> str:
    return str(replace_query_param(url, "cursor", cursor.encode()))


def _page_body(request: Request, page: DeliveryRowsPage) -> dict[str, Any]:
    """DeliveryPageSerializer's JSON, written directly (serializers.delivery_items)."""
    next_url = None
    if page.next is not None:
        next_url = _with_cursor(request.build_absolute_uri(), page.next)
    return {"next": next_url, "results": delivery_items(page.rows)}


class NotificationDeliveriesApi(APIView):
    renderer_classes = READ_RENDERERS
    required_scopes: ScopeMap = {"GET": Scope.READ}

    @extend_schema(parameters=[DeliveryPageQuerySerializer],
                   responses={200: DeliveryPageSerializer, **error_responses(400, 404)})
    def get(self, request: Request, notification_id: str) -> Response:
        """The notification's deliveries in the order they were accepted, a page at a time
        (`next` link; keyset on (created_at, id), so pages do not shift while it is sent).
        Filters: `status`, `channel`; `include=events` adds each delivery's timeline."""
        params = _query(_PAGE_QUERY, request)
        notification = notification_get(client=request_client(request),
                                        notification_id=notification_id,
                                        is_test=request_is_test(request))
        with_events = params.get("include") == "events"
        page = deliveries_rows_page(
            notification=notification, after=params.get("cursor"), status=params.get("status"),
            channel=params.get("channel"), limit=params["page_size"], with_events=with_events,
        )
        return Response(_page_body(request, page))


class NotificationBulkApi(LimitHeadersMixin, APIView):
    # 50,000 items' ids in the 202: orjson writes them ~8x faster (the same bytes).
    renderer_classes = READ_RENDERERS
    required_scopes: ScopeMap = {"POST": Scope.SEND}

    @extend_schema(
        request=BulkSendSerializer,
        responses={202: BulkAcceptedSerializer, **error_responses(
            400, 409, 413, 422, 429,
            examples={400: ["bulk_invalid"], 409: ["idempotency_key_in_flight"],
                      422: ["bulk_unknown_template", "idempotency_key_reused"]})},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @paused_for_large_bodies
    @idempotent
    def post(self, request: Request) -> Response:
        """Send up to 50,000 notifications at once: every item is a send body. All or
        nothing — one bad item (400 `invalid`, or a business rule's 422) refuses the whole
        request, naming each bad item as `notifications[<index>].<field>`; nothing is written."""
        items = bulk_body_validate(request.data)
        client = request_client(request)
        is_test = request_is_test(request)
        with delivery_quota(client=client, is_test=is_test) as charge:
            accepted = notifications_send_bulk(
                client=client, items=items, is_test=is_test, charge=charge,
                config_generation=request_client_generation(request))
        instrumentation.observe_accepted_counts(accepted.by_channel)
        body = {
            "count": len(accepted.notifications),
            "test": is_test,
            "notifications": [
                {"index": i, "id": str(n.id), "status": n.status}
                for i, n in enumerate(accepted.notifications)
            ],
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class NotificationStatusApi(APIView):
    renderer_classes = READ_RENDERERS
    required_scopes: ScopeMap = {"GET": Scope.READ}

    @extend_schema(responses={200: NotificationStatusSerializer, **error_responses(404)})
    def get(self, request: Request, notification_id: str) -> Response:
        """The notification's status with a count of its deliveries per status."""
        notification = notification_get(
            client=request_client(request), notification_id=notification_id,
            is_test=request_is_test(request),
        )
        return Response(_status_body(notification))


class RetryFailedApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.ADMIN}

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
            deliveries=failed_deliveries(client=client, is_test=request_is_test(request), **data),
            actor=f"api_key:{key}", limit=limit,
        )
        return Response({"redriven": count}, status=status.HTTP_202_ACCEPTED)


class NotificationCancelApi(APIView):
    required_scopes: ScopeMap = {"PUT": Scope.SEND}

    @extend_schema(request=None, responses={200: NotificationStatusSerializer})
    def put(self, request: Request, notification_id: str) -> Response:
        """Cancel what has not been sent yet (scheduled, queued or waiting to retry). 409 if
        every delivery was already sent."""
        client = request_client(request)
        notification = notification_get(client=client, notification_id=notification_id,
                                        is_test=request_is_test(request), with_timeline=False)
        key = getattr(request.auth, "prefix", "")
        notification_cancel(notification=notification, actor=f"api_key:{key}")
        notification.refresh_from_db()
        return Response(_status_body(notification))
