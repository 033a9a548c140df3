from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from apps.clients.authentication import request_client
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap

from ..selectors import audit_logs_for_client
from .serializers import AuditLogFilterSerializer, AuditLogSerializer


class AuditLogListApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": Scope.ADMIN}
    serializer_class = AuditLogSerializer

    @extend_schema(parameters=[AuditLogFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your audit log, newest first (cursor pagination): what was done to your
        notifications, templates, preferences, segments, schedules and API keys, by which API
        key (or NotifyHub staff, or the system), from where. 400 for a bad date."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        filters = AuditLogFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return audit_logs_for_client(client=request_client(self.request), **filters.validated_data)
