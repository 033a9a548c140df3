"""Metrics and operations endpoints: /metrics/delivery-rates, /metrics/channel-performance,
/metrics/system-status and /admin/queue-status."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client, request_is_test
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap

from .metrics_selectors import channel_performance, delivery_rates, queue_status, system_status
from .schema import error_responses
from .serializers import (
    ChannelPerformanceSerializer,
    DeliveryRatesSerializer,
    MetricsWindowSerializer,
    QueueStatusSerializer,
    SystemStatusSerializer,
)

WINDOW_PARAMETER = OpenApiParameter(
    "window", str, OpenApiParameter.QUERY, enum=["1h", "24h", "7d"], default="24h",
    description="Deliveries accepted in the last hour, day or week.",
)


def _window(request: Request) -> str:
    serializer = MetricsWindowSerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return str(serializer.validated_data["window"])


class DeliveryRatesApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ}

    @extend_schema(parameters=[WINDOW_PARAMETER],
                   responses={200: DeliveryRatesSerializer, **error_responses(400)})
    def get(self, request: Request) -> Response:
        """Your deliveries accepted in the window, per channel: how many are in each status,
        each status' share, and the delivery rate (delivered / (delivered + bounced + failed))."""
        body = delivery_rates(client=request_client(request), window=_window(request),
                              is_test=request_is_test(request))
        return Response(DeliveryRatesSerializer(body).data)


class ChannelPerformanceApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ}

    @extend_schema(parameters=[WINDOW_PARAMETER],
                   responses={200: ChannelPerformanceSerializer, **error_responses(400)})
    def get(self, request: Request) -> Response:
        """Per channel and provider, for your deliveries accepted in the window that reached a
        provider: sent, delivered, failed (incl. bounced), and p50/p95 accept → sent latency."""
        body = channel_performance(client=request_client(request), window=_window(request),
                                   is_test=request_is_test(request))
        return Response(ChannelPerformanceSerializer(body).data)


class SystemStatusApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.ADMIN}

    @extend_schema(responses={200: SystemStatusSerializer})
    def get(self, request: Request) -> Response:
        """The service as a whole (not per client): database and broker checks, broker queue
        depths, and each provider's circuit breaker. `degraded` when a check fails or a
        breaker is open or half-open."""
        return Response(SystemStatusSerializer(system_status()).data)


class QueueStatusApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.ADMIN}

    @extend_schema(responses={200: QueueStatusSerializer})
    def get(self, request: Request) -> Response:
        """Broker depth per queue (all clients' messages) and your deliveries not finished
        yet, per priority and status."""
        body = queue_status(client=request_client(request), is_test=request_is_test(request))
        return Response(QueueStatusSerializer(body).data)
