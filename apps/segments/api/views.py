from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client, request_is_test
from apps.clients.models import Scope
from apps.clients.quotas import delivery_quota
from apps.clients.scopes import ScopeMap
from apps.core.exceptions import error_body
from apps.core.idempotency import namespaced_key
from apps.core.pagination import CursorPagination
from apps.notifications.api.views import LimitHeadersMixin
from apps.notifications.services import request_fingerprint
from apps.recipients.api.serializers import RecipientOutputSerializer

from ..selectors import segment_count, segment_get, segment_list, segment_queryset
from ..services import segment_create, segment_delete, segment_send, segment_update
from .serializers import (
    SegmentCountSerializer,
    SegmentInputSerializer,
    SegmentOutputSerializer,
    SegmentSendResultSerializer,
    SegmentSendSerializer,
    SegmentUpdateSerializer,
    send_result,
)

# Chunk keys add "segment:<uuid>:" and "#<n>" to the header; the column holds 255.
MAX_IDEMPOTENCY_KEY = 200


class SegmentCollectionApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "POST": Scope.SEND}
    serializer_class = SegmentOutputSerializer

    def get_queryset(self) -> Any:
        return segment_list(client=request_client(self.request))

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your segments, newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    @extend_schema(request=SegmentInputSerializer, responses={201: SegmentOutputSerializer})
    def post(self, request: Request) -> Response:
        """Create a segment. A bad definition answers 400 with the path of each bad node,
        e.g. `definition.all[1].op`."""
        serializer = SegmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segment = segment_create(client=request_client(request), **serializer.validated_data)
        return Response(SegmentOutputSerializer(segment).data, status=status.HTTP_201_CREATED)


class SegmentDetailApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "PUT": Scope.SEND, "DELETE": Scope.SEND}

    @extend_schema(responses=SegmentOutputSerializer)
    def get(self, request: Request, segment_ref: str) -> Response:
        """A segment by id or key."""
        segment = segment_get(client=request_client(request), ref=segment_ref)
        return Response(SegmentOutputSerializer(segment).data)

    @extend_schema(request=SegmentUpdateSerializer, responses=SegmentOutputSerializer)
    def put(self, request: Request, segment_ref: str) -> Response:
        """Update a segment; fields left out keep their value."""
        serializer = SegmentUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segment = segment_get(client=request_client(request), ref=segment_ref)
        segment = segment_update(segment=segment, **serializer.validated_data)
        return Response(SegmentOutputSerializer(segment).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, segment_ref: str) -> Response:
        """Delete a segment (409 while a recurring send targets it)."""
        segment_delete(segment=segment_get(client=request_client(request), ref=segment_ref))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentCountApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ}

    @extend_schema(responses=SegmentCountSerializer)
    def get(self, request: Request, segment_ref: str) -> Response:
        """How many recipients match the segment now."""
        segment = segment_get(client=request_client(request), ref=segment_ref)
        return Response({"id": str(segment.id), "key": segment.key,
                         "count": segment_count(segment=segment)})


class RecipientPagination(CursorPagination):
    ordering = ("external_id", "id")


class SegmentRecipientsApi(ListAPIView):
    """The recipients matching the segment now, by external id (cursor pagination)."""

    required_scopes: ScopeMap = {"GET": Scope.READ}
    serializer_class = RecipientOutputSerializer
    pagination_class = RecipientPagination

    def get_queryset(self) -> Any:
        segment = segment_get(client=request_client(self.request), ref=self.kwargs["segment_ref"])
        return segment_queryset(segment=segment)


class SegmentSendApi(LimitHeadersMixin, APIView):
    required_scopes: ScopeMap = {"POST": Scope.SEND}

    @extend_schema(
        request=SegmentSendSerializer,
        responses={202: SegmentSendResultSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER,
                description="Same key and body returns the first response.",
            )
        ],
    )
    def post(self, request: Request, segment_ref: str) -> Response:
        """Send a template to everyone in the segment now (or at `scheduled_at`, or at
        `local_send_time` in each recipient's time zone): one notification per 10,000
        recipients; members without an address for a requested channel are skipped. Counts
        against the daily delivery quota (429 `quota_exceeded`, nothing sent)."""
        serializer = SegmentSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip() or None
        if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
            return Response(
                error_body("invalid", "Idempotency-Key is too long.",
                           {"Idempotency-Key": [f"At most {MAX_IDEMPOTENCY_KEY} characters."]}),
                status=status.HTTP_400_BAD_REQUEST,
            )
        client = request_client(request)
        is_test = request_is_test(request)
        if key is not None:
            key = namespaced_key(key, is_test=is_test)
        segment = segment_get(client=client, ref=segment_ref)
        with delivery_quota(client=client, is_test=is_test) as charge:
            notifications = segment_send(
                client=client,
                segment=segment,
                charge=charge,
                **serializer.validated_data,
                actor=f"api_key:{getattr(request.auth, 'prefix', '')}",
                idempotency_key=key,
                request_hash=request_fingerprint(request.data),
                is_test=is_test,
            )
        matching = segment_count(segment=segment)
        return Response(send_result(notifications, matching), status=status.HTTP_202_ACCEPTED)
