"""OpenAPI pieces shared by the notification endpoints: the error body and an example per
status (the body is always `{"error": {"code", "message", "fields"}}`, API.md)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()))


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def _error(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


ERRORS: dict[str, dict[str, Any]] = {
    "invalid": _error("invalid", "The request has invalid fields.",
                      {"recipients[0].email": ["Enter a valid email address."]}),
    "bulk_invalid": _error("invalid", "The request has invalid fields.",
                           {"notifications[2].template_id": ["This field is required."],
                            "notifications[7].recipients[0].phone": [
                                "Use E.164 format, e.g. +14155550100."]}),
    "bulk_unknown_template": _error("unknown_template", "Unknown template 'nope'.",
                                    {"notifications[3].template_id": [
                                        "No template with this id or key."]}),
    "not_found": _error("not_found", "Notification not found."),
    "request_too_large": _error("request_too_large",
                                "The request body is larger than 33554432 bytes."),
    "idempotency_key_in_flight": _error(
        "idempotency_key_in_flight",
        "A request with this Idempotency-Key is still in progress; retry later.",
        {"Idempotency-Key": ["In flight."]}),
    "notification_in_flight": _error(
        "notification_in_flight",
        "A delivery of this notification is being sent right now; retry in a few seconds or "
        "cancel it first (PUT …/cancel)."),
    "idempotency_key_reused": _error(
        "idempotency_key_reused", "This Idempotency-Key was used with a different request body.",
        {"Idempotency-Key": ["Use a new key for a different request."]}),
    "throttled": _error("throttled", "Request was throttled. Expected available in 1 second."),
    "quota_exceeded": _error(
        "quota_exceeded",
        "Daily delivery quota reached: this request needs 500 deliveries, 120 of 100000 are "
        "left today (UTC).", {"quota": ["120 of 100000 deliveries left until 00:00 UTC."]}),
}

_BY_STATUS: dict[int, tuple[str, list[str]]] = {
    400: ("Invalid or malformed request.", ["invalid"]),
    404: ("Unknown id, or another client's.", ["not_found"]),
    413: ("The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.", ["request_too_large"]),
    409: ("Conflict.", ["idempotency_key_in_flight", "notification_in_flight"]),
    422: ("A business rule refused it (unknown template, missing variables, reused "
          "Idempotency-Key …).", ["idempotency_key_reused"]),
    429: ("Throttled or daily quota reached; see Retry-After.", ["throttled", "quota_exceeded"]),
}


def error_responses(
    *statuses: int, examples: dict[int, list[str]] | None = None
) -> dict[int, OpenApiResponse]:
    """`responses=` entries for these error statuses, each with its examples (`examples`
    replaces a status' default example names)."""
    out = {}
    for code in statuses:
        description, names = _BY_STATUS[code]
        names = (examples or {}).get(code, names)
        out[code] = OpenApiResponse(
            response=ErrorSerializer,
            description=description,
            examples=[OpenApiExample(name, value=ERRORS[name], response_only=True,
                                     status_codes=[str(code)]) for name in names],
        )
    return out
