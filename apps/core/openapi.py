"""The error side of the OpenAPI schema: every operation documents the error statuses it can
really answer, each with the one error body (`{"error": {"code", "message", "fields"}}`,
docs/api.md "Errors"). A postprocessing hook (SPECTACULAR_SETTINGS) adds them from what the
operation is, so a new endpoint cannot forget them:

- every operation: 400 (a NUL in the URL, a body that is not JSON: checked on every path),
  413 (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, on every path) and 503 (the database is
  unreachable; retry after `Retry-After`);
- with an API key: 401 (no or bad key), 403 (`insufficient_scope`), 429 (`throttled`, and
  `quota_exceeded` on sends);
- with a path parameter: 404 (unknown id, or another client's);
- with a request body: 415 (not `application/json`);
- writes (POST, PUT, PATCH, DELETE): 409 (in flight, taken, changed meanwhile) and 422 (a
  business rule: unknown template, missing variables, `schedule_in_past`, …);
- reads named in READ_422: 422 as well.

Statuses an operation documents itself (`error_responses()` with examples) are kept.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Error"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The one error format (docs/api.md \"Errors\").",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "Field path → problems, e.g. `recipients[2].email`.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message", "fields"],
        },
    },
    "required": ["error"],
}

DESCRIPTIONS = {
    400: "Invalid or malformed request (`invalid`, `malformed_request`); `fields` names each "
         "problem.",
    401: "No or bad API key (`unauthenticated`).",
    403: "The key lacks the scope this operation needs (`insufficient_scope`).",
    404: "Unknown id, or another client's (`not_found`).",
    409: "Conflict: in flight, already taken, or changed meanwhile; retry or change the request.",
    413: "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (`request_too_large`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    422: "Well-formed, but a business rule refused it (unknown template, missing variables, "
         "`schedule_in_past`, `schedule_too_far_ahead`, …).",
    429: "Throttled, or the daily delivery quota is reached; see `Retry-After`.",
    503: "A store is unreachable for a moment (`service_unavailable`); retry after "
         "`Retry-After`.",
}

WRITES = frozenset({"post", "put", "patch", "delete"})
# Reads that can refuse a well-formed request for a business rule (422).
READ_422: frozenset[tuple[str, str]] = frozenset()


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    statuses = [400, 413, 503]
    if any(requirement for requirement in operation.get("security", [])):
        statuses += [401, 403, 429]
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters) or "{" in path:
        statuses.append(404)
    if "requestBody" in operation:
        statuses.append(415)
    if method in WRITES:
        statuses += [409, 422]
    elif (method, path) in READ_422:
        statuses.append(422)
    return sorted(set(statuses))


def error_responses_hook(result: dict[str, Any], generator: Any, request: Any, public: bool,
                         **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: the error statuses of every operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR_COMPONENT, ERROR_SCHEMA)
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                responses.setdefault(str(status), {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": reference}},
                })
    return result
