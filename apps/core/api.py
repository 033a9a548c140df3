"""Liveness and readiness."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)

_health = inline_serializer("Health", {"status": serializers.CharField()})
_ready = inline_serializer(
    "Ready", {"status": serializers.CharField(), "checks": serializers.DictField()}
)


class HealthApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(responses=_health)
    def get(self, request: Request) -> Response:
        """The process is up (liveness)."""
        return Response({"status": "ok"})


class ReadyApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: _ready, 503: _ready})
    def get(self, request: Request) -> Response:
        """The database and the broker answer (readiness)."""
        checks = {"database": "ok", "broker": "ok"}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            logger.exception("readiness: database")
            checks["database"] = "unavailable"
        try:
            import redis

            redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2).ping()
        except Exception:
            logger.exception("readiness: broker")
            checks["broker"] = "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return Response({"status": "ok" if ok else "unavailable", "checks": checks},
                        status=200 if ok else 503)
