from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client, request_is_test
from apps.clients.models import Client, Scope
from apps.clients.quotas import QuotaExceeded, seconds_until_utc_midnight
from apps.clients.scopes import ScopeMap
from apps.core.exceptions import ApplicationError, error_body
from apps.segments.selectors import segment_find
from apps.templates.selectors import template_get_for_send

from ..selectors import recurring_send_get, recurring_send_list
from ..services import (
    recurring_send_create,
    recurring_send_delete,
    recurring_send_run,
    recurring_send_update,
)
from .serializers import (
    RecurringSendInputSerializer,
    RecurringSendOutputSerializer,
    RunResultSerializer,
)


def _resolve(client: Client, data: dict[str, Any]) -> dict[str, Any]:
    """template_id and segment (ids or keys) → the client's Template and Segment."""
    values = dict(data)
    if "template_id" in values:
        values["template"] = template_get_for_send(client=client,
                                                   template_ref=values.pop("template_id"))
    if values.get("segment") is not None:
        segment = segment_find(client=client, ref=values["segment"])
        if segment is None:
            raise ApplicationError(f"Unknown segment '{values['segment']}'.",
                                   code="unknown_segment",
                                   fields={"segment": ["No segment with this id or key."]})
        values["segment"] = segment
    return values


class RecurringSendCollectionApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "POST": Scope.SEND}
    serializer_class = RecurringSendOutputSerializer

    def get_queryset(self) -> Any:
        return recurring_send_list(client=request_client(self.request),
                                   is_test=request_is_test(self.request))

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your recurring sends, newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    @extend_schema(request=RecurringSendInputSerializer,
                   responses={201: RecurringSendOutputSerializer})
    def post(self, request: Request) -> Response:
        """Create a recurring send: a template sent on a crontab in a time zone to recipient
        ids or a segment. Beat runs it from the next matching minute."""
        serializer = RecurringSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = request_client(request)
        recurring_send = recurring_send_create(client=client, is_test=request_is_test(request),
                                               **_resolve(client, serializer.validated_data))
        return Response(RecurringSendOutputSerializer(recurring_send).data,
                        status=status.HTTP_201_CREATED)


class RecurringSendDetailApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "PUT": Scope.SEND, "DELETE": Scope.SEND}

    @extend_schema(responses=RecurringSendOutputSerializer)
    def get(self, request: Request, schedule_id: str) -> Response:
        recurring_send = recurring_send_get(client=request_client(request),
                                            recurring_send_id=schedule_id,
                                            is_test=request_is_test(request))
        return Response(RecurringSendOutputSerializer(recurring_send).data)

    @extend_schema(request=RecurringSendInputSerializer, responses=RecurringSendOutputSerializer)
    def put(self, request: Request, schedule_id: str) -> Response:
        """Change a recurring send; fields left out keep their value. `enabled: false`
        pauses it."""
        client = request_client(request)
        recurring_send = recurring_send_get(client=client, recurring_send_id=schedule_id,
                                            is_test=request_is_test(request))
        serializer = RecurringSendInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        recurring_send = recurring_send_update(recurring_send=recurring_send,
                                               **_resolve(client, serializer.validated_data))
        return Response(RecurringSendOutputSerializer(recurring_send).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, schedule_id: str) -> Response:
        """Delete a recurring send and its beat schedule."""
        recurring_send_delete(recurring_send=recurring_send_get(
            client=request_client(request), recurring_send_id=schedule_id,
            is_test=request_is_test(request)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecurringSendRunApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.SEND}

    @extend_schema(
        request=None,
        responses={202: RunResultSerializer},
        parameters=[OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER,
            description="A repeated run with the same key returns the first run's notifications.",
        )],
    )
    def post(self, request: Request, schedule_id: str) -> Response:
        """Run it now, outside its crontab (also when disabled). 202 with the notifications;
        422 when the send is refused (e.g. a template variable is missing); 429
        `quota_exceeded` over the daily delivery quota."""
        recurring_send = recurring_send_get(client=request_client(request),
                                            recurring_send_id=schedule_id,
                                            is_test=request_is_test(request))
        key = request.headers.get("Idempotency-Key", "").strip() or uuid.uuid4().hex
        if len(key) > 100:
            return Response(error_body("invalid", "Idempotency-Key is too long.",
                                       {"Idempotency-Key": ["At most 100 characters."]}),
                            status=status.HTTP_400_BAD_REQUEST)
        result = recurring_send_run(recurring_send=recurring_send, manual_key=key)
        if result.status == "failed" and result.error_code == QuotaExceeded.code:
            return Response(error_body(result.error_code, result.error),
                            status=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": str(seconds_until_utc_midnight(datetime.now(UTC)))})
        if result.status == "failed":
            return Response(error_body(result.error_code, result.error),
                            status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return Response({"status": result.status,
                         "notifications": [str(n.id) for n in result.notifications],
                         "recipients": result.recipients}, status=status.HTTP_202_ACCEPTED)
