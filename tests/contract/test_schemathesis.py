"""The OpenAPI schema (drf-spectacular) tells the truth: schemathesis generates requests from it
for every operation, authenticated, and runs all of its default checks on every response."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from apps.clients.models import KeyMode
from apps.clients.services import api_key_create, generate_raw_key
from apps.inbox.tokens import encode_inbox_token, generate_secret
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory

# 422 codes for rules no static schema can state: they depend on what exists (an unknown
# template id is well-formed) or on the clock. Only these are tolerated where schemathesis
# expects a schema-valid request to be accepted; any other 4xx there still fails the test.
STATE_CODES = frozenset({
    "unknown_template", "template_not_published", "missing_variables", "unknown_recipient",
    "recipient_missing_address", "channel_not_supported", "template_missing_channel",
    "schedule_in_past", "schedule_too_far_ahead", "idempotency_key_reused",
    "too_many_endpoints",
})


# The body guard (apps/core/parsers.py) refuses a NUL in any string or key of a JSON body, at
# any depth: for free-form objects (variables, metadata, attributes, definitions) JSON Schema
# cannot say "no NUL anywhere below", so this 400 is tolerated, and only it.
NUL_REFUSED = "NUL characters (\\u0000) are not allowed."


# The webhook network guard refuses loopback, private, metadata… addresses (and which ones
# depends on the deployment's settings): a policy, not a syntax; refused with this message.
GUARD_REFUSED = "This address is not allowed"


@schemathesis.check
def positive_data_acceptance_but_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, except a 422 whose code is in STATE_CODES, and
    a 400 about the `cursor` alone: a cursor is opaque (only one the API handed out is valid),
    which no schema can describe."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    if response.status_code == 422 and error.get("code") in STATE_CODES:
        return None
    if response.status_code == 400 and list(error.get("fields") or {}) == ["cursor"]:
        return None
    fields = error.get("fields") or {}
    if response.status_code == 400 and fields and all(
            problems == [NUL_REFUSED] for problems in fields.values()):
        return None
    if (response.status_code == 400 and list(fields) == ["url"]
            and fields["url"][0].startswith(GUARD_REFUSED)):
        return None
    return positive_data_acceptance(ctx, response, case)


schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


# Known contract failures that a schema cannot fix. Each says why; xfail, not strict: a bounded
# run may not draw the failing input. Everything else must pass.
KNOWN_FAILURES = {
    # quiet_hours.start must differ from quiet_hours.end: JSON Schema (OpenAPI 3.0) cannot
    # compare two properties, so a schema-valid body with start = end is refused (400).
    "PUT /api/v1/preferences/{recipient}": "quiet_hours start = end: a cross-field rule",
}


# One key for every test (each test's transaction creates it again): schemathesis sets it on
# each case, except when a negative case is about a missing or wrong Authorization.
RAW_KEY = generate_raw_key(KeyMode.LIVE)
# The inbox's operations take a recipient token instead (docs/inbox.md): one of the tenant's
# recipient, signed with its inbox secret (both made again in each test's transaction).
TENANT_ID = uuid.uuid4()
INBOX_SECRET = generate_secret()


def inbox_token() -> str:
    now = timezone.now()
    return encode_inbox_token(secret=INBOX_SECRET, client_id=str(TENANT_ID), recipient_id="ada",
                              expires_at=now + timedelta(hours=1), issued_at=now)


@schema.auth(refresh_interval=None)
class ApiKeyAuth:
    def get(self, case: Any, context: Any) -> str:
        if case.operation.path.startswith("/api/v1/inbox/"):
            return inbox_token()
        return RAW_KEY

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@pytest.fixture
def known_failure(request: pytest.FixtureRequest) -> None:
    label = request.node.name.partition("[")[2].rstrip("]")
    if label in KNOWN_FAILURES and not os.environ.get("CONTRACT_NO_XFAIL"):
        request.applymarker(pytest.mark.xfail(reason=KNOWN_FAILURES[label], strict=False))


@pytest.fixture
def api_key(db: None) -> Iterator[None]:
    """RAW_KEY, for a client that has a template; requests run inside the test's transaction
    (the WSGI handler must not close the connection after each request, as Django's own test
    client arranges)."""
    tenant = ClientFactory(id=TENANT_ID, inbox_signing_secret=INBOX_SECRET)
    RecipientFactory(client=tenant, external_id="ada")
    TemplateFactory(client=tenant, key="welcome")
    # The schema's examples send this one.
    TemplateFactory(client=tenant, key="order_confirmation",
                    version__html_body="<p>{{ name }}: {{ orderId }}</p>")
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        api_key_create(client=tenant, name="schemathesis", raw_key=RAW_KEY)
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_matches_its_schema(case: Any, api_key: None, known_failure: None) -> None:
    case.call_and_validate(excluded_checks=[positive_data_acceptance],
                           additional_checks=[positive_data_acceptance_but_state])
