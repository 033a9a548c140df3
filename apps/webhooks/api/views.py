"""Client webhook endpoints: `/api/v1/webhooks…` (the provider callbacks under
`/api/v1/webhooks/<provider>` are apps/webhooks/inbound; ids here are UUIDs, so they never
collide)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap

from ..outbound.selectors import webhook_attempt_list, webhook_endpoint_get, webhook_endpoint_list
from ..outbound.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_test,
    webhook_messages_replay,
)
from .serializers import (
    WebhookAttemptFilterSerializer,
    WebhookAttemptSerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointWithSecretSerializer,
    WebhookReplayResultSerializer,
    WebhookReplaySerializer,
    WebhookTestResultSerializer,
)


class WebhookEndpointCollectionApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": Scope.WEBHOOKS, "POST": Scope.WEBHOOKS}
    serializer_class = WebhookEndpointSerializer

    def get_queryset(self) -> Any:
        return webhook_endpoint_list(client=request_client(self.request))

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your webhook endpoints, newest first (cursor pagination). Secrets are not shown."""
        return super().get(request, *args, **kwargs)

    @extend_schema(request=WebhookEndpointCreateSerializer,
                   responses={201: WebhookEndpointWithSecretSerializer})
    def post(self, request: Request) -> Response:
        """Register a URL for signed events. The response carries the signing secret
        (`whsec_…`) — the only time it is shown."""
        serializer = WebhookEndpointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        endpoint = webhook_endpoint_create(client=request_client(request), url=data["url"],
                                           event_types=data["events"],
                                           description=data["description"])
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data,
                        status=status.HTTP_201_CREATED)


class WebhookEndpointDetailApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.WEBHOOKS, "DELETE": Scope.WEBHOOKS}

    @extend_schema(responses=WebhookEndpointSerializer)
    def get(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = webhook_endpoint_get(client=request_client(request), endpoint_id=endpoint_id)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, endpoint_id: UUID) -> Response:
        """Stop sending to this endpoint; messages not sent yet are dropped."""
        endpoint = webhook_endpoint_get(client=request_client(request), endpoint_id=endpoint_id)
        webhook_endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointRotateSecretApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.WEBHOOKS}

    @extend_schema(request=None, responses=WebhookEndpointWithSecretSerializer)
    def post(self, request: Request, endpoint_id: UUID) -> Response:
        """A new signing secret, shown once. For 24 hours every message is signed with both
        the new and the old secret (two space-separated signatures), so you can switch your
        receiver over without missing anything."""
        endpoint = webhook_endpoint_get(client=request_client(request), endpoint_id=endpoint_id)
        endpoint = webhook_endpoint_rotate_secret(endpoint=endpoint)
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data)


class WebhookEndpointTestApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.WEBHOOKS}

    @extend_schema(request=None, responses={202: WebhookTestResultSerializer})
    def post(self, request: Request, endpoint_id: UUID) -> Response:
        """Queue a `webhook.test` event to the endpoint; its attempts show what happened.
        409 `endpoint_disabled` for a disabled endpoint."""
        endpoint = webhook_endpoint_get(client=request_client(request), endpoint_id=endpoint_id)
        message = webhook_endpoint_test(endpoint=endpoint)
        return Response({"message_id": str(message.id)}, status=status.HTTP_202_ACCEPTED)


class WebhookEndpointAttemptsApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": Scope.WEBHOOKS}
    serializer_class = WebhookAttemptSerializer

    def get_queryset(self) -> Any:
        endpoint = webhook_endpoint_get(client=request_client(self.request),
                                        endpoint_id=self.kwargs["endpoint_id"])
        filters = WebhookAttemptFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return webhook_attempt_list(endpoint=endpoint, **filters.validated_data)

    @extend_schema(parameters=[WebhookAttemptFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every delivery attempt to this endpoint, newest first: status code, duration, error
        (cursor pagination; filter by `message_id`, `succeeded`)."""
        return super().get(request, *args, **kwargs)


class WebhookEndpointReplayApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.WEBHOOKS}

    @extend_schema(request=WebhookReplaySerializer, responses={202: WebhookReplayResultSerializer})
    def post(self, request: Request, endpoint_id: UUID) -> Response:
        """Send again one message (`message_id`) or every message since a time (`since`), with
        a fresh retry schedule and the same `webhook-id`."""
        endpoint = webhook_endpoint_get(client=request_client(request), endpoint_id=endpoint_id)
        serializer = WebhookReplaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        count = webhook_messages_replay(endpoint=endpoint, **serializer.validated_data)
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)
