"""`Idempotency-Key` for POST endpoints (API.md): a decorator for DRF view methods.

Per client and key, for `IDEMPOTENCY_TTL_SECONDS` (24 h):

- same key, same body → the first response is replayed (status and body) with
  `Idempotent-Replayed: true`; nothing runs again;
- same key, different body (or another endpoint) → 422 `idempotency_key_reused`;
- same key while the first request is still running → 409 `idempotency_key_in_flight`.

How it stays exact under concurrency without timeouts: the request runs in one transaction that
first takes a PostgreSQL advisory transaction lock on (client, key) with
`pg_try_advisory_xact_lock` — a request that cannot take it is the concurrent duplicate (409).
The view's writes and the stored response commit together in that transaction, so a stored
record always means "the work is committed", and a crash in between leaves neither (the lock
dies with the connection; the key is free again). Only 2xx responses are stored: a request that
was refused (4xx) or failed wrote nothing, so the key may be used again.

Expired records are ignored, overwritten on reuse, and purged a few at a time by each new record
(`IDEMPOTENCY_PURGE_BATCH`), so the table stays bounded without a beat task;
`idempotency_records_purge()` can also be run on a schedule.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from psycopg.types.json import Jsonb
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .exceptions import ApplicationError, Conflict, error_body
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER,
    description="Up to 255 characters, scoped to your API key's client and mode. Within 24 h the same key "
    "and body replay the first 2xx response (`Idempotent-Replayed: true`); another body is 422 "
    "`idempotency_key_reused`; while the first request still runs, 409 "
    "`idempotency_key_in_flight`.",
)

F = TypeVar("F", bound=Callable[..., Response])


def request_hash(request: Request) -> str:
    """sha256 of the method, the path and the canonical JSON of the body."""
    canonical = json.dumps(
        [request.method, request.path, request.data], sort_keys=True, separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


TEST_NAMESPACE = "test:"


def namespaced_key(key: str, *, is_test: bool) -> str:
    """A key as stored: a test API key's keys live apart from the live keys' ("test:…"), so
    the same Idempotency-Key in both modes means two different requests."""
    if not is_test:
        return key
    if len(TEST_NAMESPACE) + len(key) <= MAX_KEY_LENGTH:
        return TEST_NAMESPACE + key
    return f"{TEST_NAMESPACE}sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def idempotency_key_for(request: Request) -> str | None:
    """The request's Idempotency-Key (stripped) in its API key's namespace; None without one."""
    key = request.headers.get(HEADER, "").strip()
    if not key:
        return None
    return namespaced_key(key, is_test=bool(getattr(request.auth, "is_test", False)))


def _lock_id(client_id: Any, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{client_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _try_lock(client_id: Any, key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_id(client_id, key)])
        row = cursor.fetchone()
    return bool(row and row[0])


def idempotency_records_purge(*, limit: int = 1000) -> int:
    """Deletes up to `limit` expired records (skipping rows another purge holds)."""
    with connection.cursor() as cursor:
        cursor.execute(_PURGE_SQL, [timezone.now(), limit])
        return cursor.rowcount


_PURGE_SQL = """
    DELETE FROM core_idempotencyrecord WHERE id IN (
        SELECT id FROM core_idempotencyrecord WHERE expires_at < %s
        ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)
"""


def _store(
    *, client_id: Any, key: str, fingerprint: str, response: Response,
    expired: IdempotencyRecord | None,
) -> None:
    now = timezone.now()
    fields = {
        "request_hash": fingerprint,
        "status_code": response.status_code,
        "response_body": response.data,
        "expires_at": now + timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS),
    }
    if expired is not None:
        IdempotencyRecord.objects.filter(id=expired.id).update(created_at=now, **fields)
        if settings.IDEMPOTENCY_PURGE_BATCH:
            idempotency_records_purge(limit=settings.IDEMPOTENCY_PURGE_BATCH)
        return
    # The new record and the purge of a few expired ones: one statement (one round trip).
    purge = ""
    params: list[Any] = []
    if settings.IDEMPOTENCY_PURGE_BATCH:
        purge = f"WITH purged AS ({_PURGE_SQL}) "
        params += [now, settings.IDEMPOTENCY_PURGE_BATCH]
    params += [client_id, key, fields["request_hash"], fields["status_code"],
               None if response.data is None else Jsonb(response.data, dumps=_dumps), now,
               fields["expires_at"]]
    with connection.cursor() as cursor:
        cursor.execute(
            purge + "INSERT INTO core_idempotencyrecord (client_id, key, request_hash, "
            "status_code, response_body, created_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)", params)


_dumps = functools.partial(json.dumps, cls=DjangoJSONEncoder)


def idempotent(method: F) -> F:
    """Decorates an APIView handler (`def post(self, request, ...)`) of an authenticated view.

    Without the header the handler runs as is. With it, the handler runs inside one
    transaction with the (client, key) lock held; see the module docstring."""

    @functools.wraps(method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER, "").strip()
        if not key:
            return method(view, request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH:
            return Response(
                error_body("invalid", "Idempotency-Key is too long.",
                           {HEADER: [f"At most {MAX_KEY_LENGTH} characters."]}),
                status=status.HTTP_400_BAD_REQUEST,
            )
        key = namespaced_key(key, is_test=bool(getattr(request.auth, "is_test", False)))
        client_id: Any = getattr(request.user, "pk", None)
        fingerprint = request_hash(request)
        with transaction.atomic():
            if not _try_lock(client_id, key):
                raise Conflict(
                    "A request with this Idempotency-Key is still in progress; retry later.",
                    code="idempotency_key_in_flight",
                    fields={HEADER: ["In flight."]},
                )
            record = IdempotencyRecord.objects.filter(client_id=client_id, key=key).first()
            expired = record if record is not None and record.expires_at <= timezone.now() else None
            if record is not None and expired is None:
                if record.request_hash != fingerprint:
                    raise ApplicationError(
                        "This Idempotency-Key was used with a different request body.",
                        code="idempotency_key_reused",
                        fields={HEADER: ["Use a new key for a different request."]},
                    )
                return Response(record.response_body, status=record.status_code,
                                headers={REPLAYED_HEADER: "true"})
            response = method(view, request, *args, **kwargs)
            if status.is_success(response.status_code):
                _store(client_id=client_id, key=key, fingerprint=fingerprint, response=response,
                       expired=expired)
            return response

    return cast(F, wrapper)
