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

An optional query parameter sent empty is the parameter not given (`allowEmptyValue`).

Statuses an operation documents itself (`error_responses()` with examples) are kept.

Two more things every operation gets here:
- the API-key scope it needs (`ScopedAutoSchema`, the DEFAULT_SCHEMA_CLASS): `x-required-scopes`
  and a line in its description, from the view's `required_scopes` (apps/clients/scopes.py),
  the same declaration that refuses a key without it;
- an example for its request body: from the view (`extend_schema(examples=…)`) or, for the
  bodies that have none there, from REQUEST_EXAMPLES below, keyed by the body's component.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from drf_spectacular.openapi import AutoSchema

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


# The URL may not hold a NUL (400 on every path, apps/core/middleware.py).
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"


def _send_rules(schema: dict[str, Any]) -> None:
    """Send bodies: `local_send_date` needs `local_send_time`; `scheduled_at` and
    `local_send_time` not together (SendContentSerializer, apps/notifications/bulk.py)."""
    properties = schema.get("properties", {})
    rules: list[dict[str, Any]] = []
    if "local_send_date" in properties and "local_send_time" in properties:
        rules.append({"anyOf": [{"not": {"required": ["local_send_date"]}},
                                {"required": ["local_send_time"]}]})
    if "scheduled_at" in properties and "local_send_time" in properties:
        rules.append({"not": {"required": ["scheduled_at", "local_send_time"],
                              "properties": {"scheduled_at": {"type": "string"}}}})
    if rules:
        schema.setdefault("allOf", []).extend(rules)


def _present(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """`name` given and not empty."""
    prop = schema.get("properties", {}).get(name, {})
    kind = prop.get("type")
    rule: dict[str, Any] = {}
    if kind == "string" and "enum" not in prop:
        rule = {"minLength": 1}
    elif kind == "object":
        rule = {"minProperties": 1}
    elif kind == "array":
        rule = {"minItems": 1}
    return {"required": [name], **({"properties": {name: rule}} if rule else {})}


def _at_least_one_of(schema: dict[str, Any]) -> bool:
    """`x-at-least-one-of` (extend_schema_serializer(extensions=…)) → anyOf: one of these
    fields given and not empty. True if the schema has such a rule (its body is required)."""
    names = schema.pop("x-at-least-one-of", None)
    if schema.pop("x-presence-only", False):  # given at all (null and "" count)
        rules = [{"required": [n]} for n in names or ()]
    else:
        rules = [_present(schema, n) for n in names or ()]
    if rules:
        schema.setdefault("allOf", []).append({"anyOf": rules})
    if schema.pop("x-reject-unknown", False):  # RejectUnknownFieldsMixin: 400 for any other key
        schema["additionalProperties"] = False
    return bool(names)


def _time_zones(node: Any) -> None:
    """Every `timezone` property of a request body: one of the IANA names (validate_timezone
    refuses any other)."""
    if isinstance(node, dict):
        zone = node.get("properties", {}).get("timezone")
        if isinstance(zone, dict) and zone.get("type") == "string" and "enum" not in zone:
            names = sorted(available_timezones() - {"localtime"})  # the host's own: not a name
            zone["enum"] = [*names, *([""] if not zone.get("minLength") else []),
                            *([None] if zone.get("nullable") else [])]
        for value in node.values():
            _time_zones(value)
    elif isinstance(node, list):
        for value in node:
            _time_zones(value)


def error_responses_hook(result: dict[str, Any], generator: Any, request: Any, public: bool,
                         **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: the error statuses of every operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR_COMPONENT, ERROR_SCHEMA)
    if any("/segments" in path for path in result.get("paths", {})):
        from apps.segments.api.serializers import SEGMENT_CONDITION_SCHEMA, SEGMENT_NODE_SCHEMA

        schemas.setdefault("SegmentCondition", SEGMENT_CONDITION_SCHEMA)
        schemas.setdefault("SegmentNode", SEGMENT_NODE_SCHEMA)
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    request_examples(result)
    needs_body = set()
    for name, component in schemas.items():
        if name.endswith("Request"):
            _send_rules(component)
            if _at_least_one_of(component):
                needs_body.add(f"#/components/schemas/{name}")
            _time_zones(component)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body = operation.get("requestBody", {})
            if any(media.get("schema", {}).get("$ref") in needs_body
                   for media in body.get("content", {}).values()):
                body["required"] = True
            for parameter in operation.get("parameters", []):
                # An optional filter sent empty (`?status=`) is the filter not given: DRF reads
                # query strings that way, and the pagination does too.
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter.setdefault("allowEmptyValue", True)
                if (parameter.get("in") == "query"
                        and parameter.get("description", "").startswith("A JSON object")):
                    # Sent as JSON text (`?variables={"name":"Ada"}`).
                    parameter.pop("schema", None)
                    parameter.pop("allowEmptyValue", None)
                    parameter["content"] = {"application/json": {"schema": {"type": "object"}}}
                    continue
                schema = parameter.get("schema", {})
                if (parameter.get("in") in ("query", "path") and schema.get("type") == "string"
                        and not {"pattern", "enum", "format"} & set(schema)):
                    # A required one may not be blank either (DRF strips whitespace first).
                    schema["pattern"] = NOT_BLANK if parameter.get("required") and parameter.get(
                        "in") == "query" else NO_NUL
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                responses.setdefault(str(status), {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": reference}},
                })
    return result


class ScopedAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the scope each API-key operation needs."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        # Only API-key operations have scopes (the inbox's take a recipient token instead).
        if not operation or not any("ApiKey" in r for r in operation.get("security", [])):
            return operation
        from apps.clients.scopes import declared_scopes

        scopes = [str(s) for s in declared_scopes(self.view, self.method) or ()]
        operation["x-required-scopes"] = scopes
        needs = " or ".join(f"`{s}`" for s in scopes) if scopes else "none (refused to every key)"
        line = f"**Scope:** {needs}."
        operation["description"] = f"{operation['description']}\n\n{line}" if operation.get(
            "description") else line
        return operation


# Request-body examples for the operations whose views give none, by the body's component
# (COMPONENT_SPLIT_REQUEST names them `…Request`). tests/core/test_openapi_docs.py checks that
# every request body has an example and that each one is valid against its schema.
REQUEST_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "RetryFailedRequest": ("Re-drive the failed email deliveries since a time", {
        "failed_after": "2026-01-05T09:00:00Z", "channel": "email", "limit": 500}),
    "PreferenceInputRequest": ("Email on, SMS off, quiet at night, marketing off", {
        "channels": {"email": {"enabled": True}, "sms": {"enabled": False}},
        "categories": {"marketing": False, "security": True},
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
        "frequency_caps": {"marketing": {"limit": 3, "period": "week"}}}),
    "PatchedChannelPatchRequest": ("Turn SMS on, quiet 22:00-08:00", {
        "enabled": True, "quiet_hours": "22:00-08:00"}),
    "OptRequest": ("One category", {"category": "marketing"}),
    "RecipientInputRequest": ("Addresses, locale and time zone", {
        "email": "ada@example.com", "phone": "+14155550100", "locale": "en-GB",
        "timezone": "Europe/London", "attributes": {"plan": "pro", "orders": {"count": 4}}}),
    "DeviceInputRequest": ("An Android push token", {
        "token": "fcm-token-from-the-app", "platform": "android"}),
    "SegmentInputRequest": ("Pro customers with three orders or more", {
        "name": "Loyal pro customers", "key": "loyal_pro",
        "definition": {"all": [{"attribute": "plan", "op": "equals", "value": "pro"},
                               {"attribute": "orders.count", "op": "gte", "value": 3}]}}),
    "SegmentUpdateRequest": ("Rename", {"name": "Loyal pro customers (EU)"}),
    "TemplateCreateRequest": ("An email template, published", {
        "key": "password_reset", "name": "Password reset", "channels": ["email"],
        "category": "security", "sample_variables": {"name": "Ada", "link": "https://x.test/r"},
        "version": {"subject": "Reset your password, {{ name }}",
                    "html_body": "<p>Hi {{ name }}, <a href=\"{{ link }}\">reset it</a>.</p>",
                    "text_body": "Hi {{ name }}, reset it: {{ link }}"}}),
    "TemplateUpdateRequest": ("Add SMS", {"name": "Password reset", "channels": ["email", "sms"]}),
    "PreviewInputRequest": ("Render the French version", {
        "locale": "fr", "variables": {"name": "Ada", "orderId": "ORD-789"}}),
    "VersionCreateRequest": ("A French draft", {
        "locale": "fr", "subject": "Commande {{ orderId }} confirm\u00e9e",
        "html_body": "<p>Merci {{ name }} !</p>", "publish": False}),
    "WebhookReplayRequest": ("Everything since an outage began", {
        "since": "2026-01-05T09:00:00Z"}),
}


def request_examples(result: dict[str, Any]) -> None:
    """Every request body without an example gets the one REQUEST_EXAMPLES has for it."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in WRITES:
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if "examples" in media or "example" in media:
                    continue
                name = media.get("schema", {}).get("$ref", "").rpartition("/")[2]
                if name in REQUEST_EXAMPLES:
                    summary, value = REQUEST_EXAMPLES[name]
                    media["examples"] = {name.removesuffix("Request"): {
                        "summary": summary, "value": value}}
