"""Writes for segments, and sending to a set of recipients in chunks (a segment, or any
recipient queryset such as a recurring send's list of ids)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, Q, QuerySet

from apps.audit.services import audit_record, audit_snapshot, audit_update
from apps.clients.models import Client
from apps.core.exceptions import ApplicationError, Conflict, NotFound
from apps.notifications import instrumentation
from apps.notifications.bulk import SendRequest, notifications_accept, single_field
from apps.notifications.models import Notification
from apps.recipients.models import Recipient
from apps.templates.selectors import template_get_for_send

from .criteria import definition_errors, has_address_q
from .models import Segment
from .selectors import segment_queryset

logger = logging.getLogger(__name__)

# The recipient flag that says a recipient has an address for a channel.
CHANNEL_ADDRESS_FLAGS = {"email": "has_email", "sms": "has_phone", "whatsapp": "has_whatsapp",
                         "push": "has_push"}


def _invalid(fields: dict[str, list[str]]) -> ApplicationError:
    return ApplicationError("The segment has invalid fields.", code="invalid", fields=fields,
                            status_code=400)


def _check(*, client: Client, key: str, definition: Any, exclude_id: Any = None) -> None:
    errors = definition_errors(definition)
    if errors:
        raise _invalid(errors)
    if Segment.objects.filter(client=client, key=key).exclude(id=exclude_id).exists():
        # A taken key is a conflict with what exists (409), as for templates.
        raise Conflict(f"A segment with key '{key}' exists.", code="segment_key_taken",
                       fields={"key": ["A segment with this key exists."]})


def _save(segment: Segment) -> Segment:
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError as exc:  # a concurrent request took the key
        raise _invalid({"key": ["A segment with this key exists."]}) from exc
    return segment


@transaction.atomic
def segment_create(*, client: Client, name: str, key: str, definition: dict[str, Any]) -> Segment:
    """A new segment; 400 naming the path of every bad node of the definition."""
    _check(client=client, key=key, definition=definition)
    segment = _save(Segment(client=client, name=name, key=key, definition=definition))
    audit_record(action="segment.create", client=client, object_type="segment", object_id=segment.pk,
                 changes={"name": name, "key": key, "definition": definition})
    return segment


@transaction.atomic
def segment_update(
    *, segment: Segment, name: str | None = None, key: str | None = None,
    definition: dict[str, Any] | None = None,
) -> Segment:
    """Changes the fields given; the others keep their value."""
    before = audit_snapshot(segment, ("name", "key", "definition"))
    new_key = segment.key if key is None else key
    new_definition = segment.definition if definition is None else definition
    _check(client=segment.client, key=new_key, definition=new_definition, exclude_id=segment.id)
    segment.key, segment.definition = new_key, new_definition
    if name is not None:
        segment.name = name
    _save(segment)
    audit_update(action="segment.update", before=before, after=segment, client=segment.client_id,
                 object_type="segment", extra={"key": segment.key})
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    """Deletes a segment; 409 while a recurring send still targets it."""
    segment_id = segment.pk
    try:
        segment.delete()
    except ProtectedError as exc:
        users = ", ".join(sorted(str(o) for o in exc.protected_objects))
        raise Conflict(
            f"Segment '{segment.key}' is used by: {users}. Delete or retarget them first.",
            code="segment_in_use",
        ) from exc
    audit_record(action="segment.delete", client=segment.client_id, object_type="segment",
                 object_id=segment_id, changes={"name": segment.name, "key": segment.key})


def reachable_q(channels: list[str]) -> Q:
    """Recipients with an address for every one of the channels (as Recipient.address_for)."""
    query = Q()
    for channel in channels:
        flag = CHANNEL_ADDRESS_FLAGS.get(channel)
        # A channel without addresses here (unknown): nobody; notification_send reports it.
        query &= has_address_q(flag) if flag else Q(pk__in=[])
    return query


def _replayed(*, client: Client, key: str, request_hash: str) -> list[Notification]:
    prefix = f"{key}#"
    earlier = [
        n for n in Notification.objects.filter(client=client, idempotency_key__startswith=prefix)
        if (n.idempotency_key or "")[len(prefix):].isdigit()
    ]
    earlier.sort(key=lambda n: int((n.idempotency_key or "")[len(prefix):]))
    if earlier and request_hash and earlier[0].request_hash and earlier[0].request_hash != request_hash:
        raise ApplicationError(
            "This Idempotency-Key was used with a different request body.",
            code="idempotency_key_reused",
            fields={"Idempotency-Key": ["Use a new key for a different request."]},
        )
    return earlier


Charge = Callable[[int], None]


@transaction.atomic
def recipients_send_in_chunks(
    *,
    client: Client,
    audience: QuerySet[Recipient],
    template_id: str,
    charge: Charge,
    variables: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    priority: str = "normal",
    category: str | None = None,
    metadata: dict[str, Any] | None = None,
    scheduled_at: datetime | None = None,
    local_send_time: time | None = None,
    local_send_date: date | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
    is_test: bool = False,
) -> list[Notification]:
    """Sends to every recipient of `audience` that has an address for each channel: streams
    their external ids (keyset by external id, one query per chunk) in chunks of
    MAX_RECIPIENTS_PER_REQUEST: one notification per chunk (metadata gets `"chunk": i`),
    all accepted together by the acceptance pipeline (`notifications_accept`). Recipients
    without an address are left out in SQL, not failed.

    All chunks commit together (deliveries are published after commit). With an idempotency
    key, chunk i uses `<key>#<i>` and a repeated call returns the first call's notifications.

    `charge` is the daily delivery quota's (apps.clients.quotas.delivery_quota, entered by the
    caller outside this transaction so a rollback refunds): it is called once, with every new
    delivery of every chunk, before anything commits — over the quota, the whole send is
    refused (429 `quota_exceeded`) and nothing is written. Replayed chunks cost nothing.
    """
    if idempotency_key:
        earlier = _replayed(client=client, key=idempotency_key, request_hash=request_hash)
        if earlier:
            return earlier
    template = template_get_for_send(client=client, template_ref=template_id)
    channels = list(dict.fromkeys(channels or template.channels))
    reachable = (
        audience.filter(client=client).filter(reachable_q(channels)).order_by("external_id")
    )
    size = settings.MAX_RECIPIENTS_PER_REQUEST
    requests: list[SendRequest] = []
    last: str | None = None
    while True:
        page = reachable if last is None else reachable.filter(external_id__gt=last)
        external_ids = list(page.values_list("external_id", flat=True)[:size])
        if not external_ids:
            break
        index = len(requests)
        requests.append(SendRequest(
            recipients=list(external_ids),
            template_id=str(template.id),
            variables=variables or {},
            channels=channels,
            priority=priority,
            category=category,
            metadata={**(metadata or {}), "chunk": index},
            scheduled_at=scheduled_at,
            local_send_time=local_send_time,
            local_send_date=local_send_date,
            idempotency_key=f"{idempotency_key}#{index}" if idempotency_key else None,
            request_hash=request_hash,
        ))
        if len(external_ids) < size:
            break
        last = external_ids[-1]
    if not requests:
        return []
    # One pass of the acceptance pipeline for every chunk: the same rules and errors as a
    # single send (named as its fields: `template_id`, `variables.name`), one write per table.
    accepted = notifications_accept(client=client, requests=requests, is_test=is_test,
                                    field_name=single_field)
    charge(len(accepted.deliveries))
    counts = dict(accepted.by_channel)
    if counts:
        transaction.on_commit(lambda: instrumentation.observe_accepted_counts(counts))
    return accepted.notifications


def segment_idempotency_key(*, segment: Segment, key: str) -> str:
    return f"segment:{segment.id}:{key}"


@transaction.atomic
def segment_send(
    *,
    client: Client,
    segment: Segment,
    template_id: str,
    charge: Charge,
    variables: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    priority: str = "normal",
    category: str | None = None,
    metadata: dict[str, Any] | None = None,
    scheduled_at: datetime | None = None,
    local_send_time: time | None = None,
    local_send_date: date | None = None,
    actor: str = "",
    idempotency_key: str | None = None,
    request_hash: str = "",
    is_test: bool = False,
) -> list[Notification]:
    """Sends a template to the segment's recipients as they are now: one notification per
    chunk of MAX_RECIPIENTS_PER_REQUEST, metadata `{"segment": key, "chunk": i}`. Recipients
    without an address for a requested channel are skipped. Returns the notifications (none
    when nobody matches). `charge`: the daily delivery quota (see recipients_send_in_chunks);
    `local_send_time` sends at that time in each recipient's own time zone."""
    if segment.client_id != client.id:
        raise NotFound(f"Segment '{segment.key}' not found.")
    # Sends to one segment are serialized: an idempotent replay sees the committed first call.
    Segment.objects.select_for_update().filter(pk=segment.pk).values_list("pk").first()
    notifications = recipients_send_in_chunks(
        client=client,
        audience=segment_queryset(segment=segment),
        template_id=template_id,
        charge=charge,
        variables=variables,
        channels=channels,
        priority=priority,
        category=category,
        metadata={**(metadata or {}), "segment": segment.key},
        scheduled_at=scheduled_at,
        local_send_time=local_send_time,
        local_send_date=local_send_date,
        idempotency_key=segment_idempotency_key(segment=segment, key=idempotency_key)
        if idempotency_key else None,
        request_hash=request_hash,
        is_test=is_test,
    )
    logger.info("segment %s sent by %s: %d notification(s), %d recipient(s)", segment.key,
                actor or "-", len(notifications), sum(n.recipient_count for n in notifications))
    return notifications
