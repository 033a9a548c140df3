"""The acceptance pipeline: 1 to N send requests accepted together, all or nothing.

Every way in (POST /api/v1/notifications, POST /api/v1/notifications/bulk, a segment send, a
recurring schedule) builds `SendRequest`s and calls `notifications_accept`; a single send is a
batch of one. The rules are checked for every request before anything is kept, each failure
named by its request (`notifications[3].template_id` in a bulk, `template_id` in a single send).
The work is done per statement, not per item: templates and their locale versions are read once
(one query), inline recipients of all requests are upserted in one `recipients_upsert`, and
notifications, deliveries, "accepted" events and the audit rows are written together: one
statement (multi-row INSERTs chained in a WITH) for a small batch, one COPY per table for a large
one. Deliveries are published after commit; they stay `pending` (their lease is the relay
sweeper's net for a lost publish) until a worker claims them.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.audit.context import current_context
from apps.audit.models import AuditLog
from apps.audit.services import Entry
from apps.clients.models import Client, key_mode
from apps.core import ids
from apps.core.crypto import encrypt, pii_batch
from apps.core.db.rows import model_columns, unsaved
from apps.core.encrypted_fields import EncryptedMixin, PIIHashField
from apps.core.exceptions import ApplicationError
from apps.core.generations import GenerationCache
from apps.recipients.models import Recipient
from apps.recipients.selectors import active_device_tokens, recipients_by_external_id
from apps.recipients.services import RECIPIENT_FIELDS, recipients_upsert
from apps.templates.locales import locale_key
from apps.templates.models import Template, TemplateVersion
from apps.templates.rendering import has_content_for
from apps.templates.selectors import pick_version, template_versions_cached

from .acceptjob import JobBuilder
from .audit import notification_send_entry
from .enqueue import deliveries_publish_accepted
from .models import Delivery, DeliveryEvent, DeliveryStatus, Notification, NotificationStatus
from .providers.registry import supported_channels

# Up to this many rows over all tables, the writes go in one statement; above, one COPY each.
SMALL_BATCH_ROWS = 2000


@dataclass
class SendRequest:
    """One send as the pipeline takes it (a validated send body, or a segment's chunk)."""

    recipients: list[str | dict[str, Any]]
    template_id: str
    variables: dict[str, Any] = field(default_factory=dict)
    channels: list[str] | None = None
    priority: str = "normal"
    category: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    local_send_time: time | None = None
    local_send_date: date | None = None
    idempotency_key: str | None = None
    request_hash: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SendRequest:
        """From a validated send body (NotificationSendSerializer's validated_data)."""
        return cls(
            recipients=list(body["recipients"]), template_id=str(body["template_id"]),
            variables=body.get("variables") or {}, channels=body.get("channels"),
            priority=body.get("priority") or "normal", category=body.get("category"),
            metadata=body.get("metadata") or {}, scheduled_at=body.get("scheduled_at"),
            local_send_time=body.get("local_send_time"),
            local_send_date=body.get("local_send_date"),
        )


class AcceptedDelivery(NamedTuple):
    id: uuid.UUID
    notification_id: uuid.UUID
    recipient: str  # the recipient's external id
    channel: str
    priority: str
    status: str


@dataclass
class Accepted:
    notifications: list[Notification]  # in request order, saved
    deliveries: list[AcceptedDelivery] = field(default_factory=list)  # in request order
    # (channel, priority) → deliveries accepted
    by_channel: dict[tuple[str, str], int] = field(default_factory=dict)
    # A large send accepted as a job (fanout.py): its deliveries are created by workers, so
    # `deliveries` is empty and `by_channel` counts the deliveries planned.
    job_id: uuid.UUID | None = None

    @property
    def delivery_count(self) -> int:
        """Deliveries accepted (created now, or planned by the job)."""
        return sum(self.by_channel.values())


# The bulk API's name for it (kept for callers of notifications_send_bulk).
BulkAccepted = Accepted

FieldName = Callable[[int, str], str]


def bulk_field(index: int, name: str) -> str:
    """A bulk item's field: `notifications[3].template_id`."""
    return f"notifications[{index}].{name}" if name else f"notifications[{index}]"


def single_field(index: int, name: str) -> str:
    """A single send's field: as the body names it."""
    return name


class _Errors:
    """Failures of one validation stage: the first item's code, every item's fields."""

    def __init__(self, field_name: FieldName) -> None:
        self.field_name = field_name
        self.code = ""
        self.message = ""
        self.fields: dict[str, list[str]] = {}
        self.items: set[int] = set()

    def add(self, index: int, error: ApplicationError) -> None:
        if not self.code:
            self.code, self.message = error.code, error.message
        self.items.add(index)
        for name, messages in (error.fields or {"": [error.message]}).items():
            self.fields.setdefault(self.field_name(index, name) or "non_field_errors",
                                   []).extend(messages)

    def raise_any(self) -> None:
        if self.fields:
            items = len(self.items)
            message = self.message if items == 1 else f"{self.message} ({items} items)"
            raise ApplicationError(message, code=self.code, fields=self.fields)


def check_version(
    key: str, version: TemplateVersion, channels: list[str],
    variables: Mapping[str, Any] | frozenset[str],
) -> None:
    """422 unless this version has content for every channel and gets every variable."""
    no_content = [c for c in channels if not has_content_for(version, c)]
    if no_content:
        raise ApplicationError(
            f"Template '{key}' ({version.locale}) has no content for: {', '.join(no_content)}.",
            code="template_missing_channel",
            fields={"channels": [f"Add {', '.join(no_content)} content to the template."]},
        )
    missing_vars = [name for name in version.required_variables if name not in variables]
    if missing_vars:
        raise ApplicationError(
            f"Missing template variables: {', '.join(missing_vars)}.",
            code="missing_variables",
            fields={f"variables.{name}": ["Required by the template."] for name in missing_vars},
        )


def local_due_time(tz_name: str, at: time, on: date | None, now: datetime) -> datetime:
    """`at` o'clock in the recipient's time zone: on `on`, or the next time it comes round.
    An unknown or empty time zone counts as UTC; a local time skipped by a DST change moves
    forward with it (zoneinfo's fold rules)."""
    try:
        tz = ZoneInfo(tz_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local_now = now.astimezone(tz)
    day = on or local_now.date()
    candidate = datetime.combine(day, at, tzinfo=tz)
    if on is None and candidate <= local_now:
        candidate = datetime.combine(day + timedelta(days=1), at, tzinfo=tz)
    return candidate.astimezone(ZoneInfo("UTC"))


def _ref_ids(refs: set[str]) -> set[uuid.UUID]:
    ids = set()
    for ref in refs:
        with contextlib.suppress(ValueError):
            ids.add(uuid.UUID(ref))
    return ids


def _index_refs(refs: set[str], templates: Iterable[Template]) -> dict[str, Template]:
    by_ref: dict[str, Template] = {}
    for template in templates:
        by_ref[template.key] = template
        by_ref[str(template.id)] = template
    for ref in refs:  # a UUID written in another case or without dashes
        with contextlib.suppress(ValueError):
            match = by_ref.get(str(uuid.UUID(ref)))
            if match is not None:
                by_ref.setdefault(ref, match)
    return by_ref


# (client id, refs) → the rows `_templates` read, at a client configuration generation.
_TEMPLATE_ROWS: GenerationCache[tuple[Any, frozenset[str]], list[tuple[Any, ...]]] = GenerationCache()


def _templates(
    client: Client, refs: set[str], *, generation: str | None = None,
) -> tuple[dict[str, Template], dict[Any, dict[str, TemplateVersion]]]:
    """ref (key or UUID string) → the client's template with its active version, and template
    id → {locale key → active version}: one query (each active-version pointer with its
    template; plain SQL, the ORM's compile of the same join costs more than running it), the
    versions themselves from the process's cache of immutable versions (one query for those
    it has not seen), plus one only when a ref names no published template (unknown or
    unpublished).

    With the request's `generation` (apps/clients/config_generation.py), the pointer rows come
    from this process's copy read at that generation when there is one (no query), and a
    read that found every ref is kept for the next request."""
    template_columns = model_columns(Template, "t")
    cache_key = (client.id, frozenset(refs))
    rows = _TEMPLATE_ROWS.get(cache_key, generation) if generation is not None else None
    read_now = rows is None
    if rows is None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT p.locale, p.version_id, {template_columns.sql} "
                "FROM templates_templateactiveversion p "
                "JOIN templates_template t ON t.id = p.template_id "
                "WHERE t.client_id = %s AND (t.key = ANY(%s) OR t.id = ANY(%s))",
                [client.id, list(refs), list(_ref_ids(refs))])
            rows = cursor.fetchall()
    templates: dict[Any, Template] = {}
    for _, _, *values in rows:
        if values[0] not in templates:
            # A fresh instance per request: its list and dict values are copies.
            templates[values[0]] = template_columns.instance(
                [copy.deepcopy(v) if isinstance(v, list | dict) else v for v in values])
    versions = template_versions_cached(
        {version_id for _, version_id, *_ in rows}
        | {t.active_version_id for t in templates.values() if t.active_version_id})
    for template in templates.values():
        active = versions.get(template.active_version_id) if template.active_version_id else None
        Template.active_version.field.set_cached_value(template, active)
    by_locale: dict[Any, dict[str, TemplateVersion]] = defaultdict(dict)
    for locale, version_id, template_id, *_ in rows:
        by_locale[template_id][locale_key(locale)] = versions[version_id]
    by_ref = _index_refs(refs, templates.values())
    if any(ref not in by_ref for ref in refs):
        found = Template.objects.select_related("active_version").filter(
            Q(key__in=refs) | Q(id__in=_ref_ids(refs)), client=client)
        by_ref = _index_refs(refs, [templates.get(t.id, t) for t in found])
    elif read_now and generation is not None:
        _TEMPLATE_ROWS.put(cache_key, generation, rows)
    return by_ref, by_locale


def _converter(field: models.Field[Any, Any]) -> Callable[[Any], Any] | None:
    """How a value is stored; None for an auto_now(_add) column (its value, else `now`)."""
    if isinstance(field, EncryptedMixin):
        return lambda value: encrypt(value) if value else value
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return None
    if isinstance(field, models.JSONField):
        dumps = functools.partial(json.dumps, cls=field.encoder)
        return lambda value: Jsonb(value, dumps=dumps)
    return lambda value: value.value if isinstance(value, enum.Enum) else value


def copy_insert(
    model: type[models.Model], rows: Iterable[models.Model | Mapping[str, Any]], now: datetime
) -> int:
    """Inserts rows with one COPY: several times cheaper than bulk_create's INSERT for tens of
    thousands of rows (no per-value SQL compilation, no model instance needed).

    A row is an unsaved instance or a mapping of attnames (`delivery_id`, not `delivery`); a
    column a mapping leaves out gets the field's default. auto_now/auto_now_add columns get
    the row's value, else `now`; an auto-increment primary key is left to the database;
    encrypted fields are encrypted (apps/core/encrypted_fields.py).
    Returns the row count."""
    convert, columns = _columns(model)
    table = connection.ops.quote_name(model._meta.db_table)
    rows = rows if isinstance(rows, Sequence) else list(rows)
    # psycopg's own copy: wrap_database_errors gives Django's exceptions (IntegrityError …).
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {table} ({columns}) FROM STDIN"  # table and column names come from the model
    ) as copy:
        # Chunk by chunk: the server parses and indexes one chunk while the next is built
        # (on a second core), so a 50,000-row COPY costs little more wall time than its text.
        lines = _CopyLines(model, now)
        done = 0
        try:
            for start in range(0, len(rows), _COPY_CHUNK):
                copy.write("".join(lines(rows[start:start + _COPY_CHUNK])))
                done = start + _COPY_CHUNK
        except _Unsupported:  # a column type the text writer does not know: psycopg formats it
            for row in rows[done:]:
                copy.write_row(_row_values(row, convert, now))
    return len(rows)


_COPY_CHUNK = 2000  # lines per write
_ESCAPE = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


class _Unsupported(Exception):
    pass


def _text(value: Any) -> str:
    """A value in COPY's text format (what psycopg's write_row sends, without its per-value
    adapter lookup: ~4x cheaper per row for the accept's 50,000 notifications)."""
    kind = type(value)
    if kind is str:
        return value.translate(_ESCAPE)
    if value is None:
        return "\\N"
    if kind is bool:
        return "t" if value else "f"
    if kind is int or kind is uuid.UUID:
        return str(value)
    if kind is datetime or kind is date or kind is time:
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _text(value.value)
    if isinstance(value, datetime | date | time):  # a subclass (freezegun's)
        return value.isoformat()
    if isinstance(value, str):  # a str subclass (a TextChoices member is caught above)
        return str.translate(value, _ESCAPE)
    raise _Unsupported(kind.__name__)


class _JsonText:
    """value → JSON as COPY text; `memo` (one per COPY) reuses the text of an object already
    written (the same channels list for every notification of a request)."""

    def __init__(self, encoder: Any) -> None:
        self.dumps = functools.partial(json.dumps, cls=encoder)

    def __call__(self, value: Any, memo: dict[int, tuple[Any, str]] | None = None) -> str:
        if type(value) is dict and not value:
            return "{}"
        if memo is not None:
            known = memo.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
        text = str(self.dumps(value)).translate(_ESCAPE)
        if memo is not None:
            memo[id(value)] = (value, text)  # kept alive: its id cannot be reused meanwhile
        return text


def _json_text(encoder: Any) -> _JsonText:
    return _JsonText(encoder)


@functools.cache
def _text_columns(model: type[models.Model]) -> list[tuple[str, Callable[[], Any], Any]]:
    """[(attname, default(), value → text)] in _columns' order; the text function is None for
    an auto_now(_add) column."""
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    out: list[tuple[str, Callable[[], Any], Any]] = []
    for f, (attname, default, conv) in zip(fields, _columns(model)[0], strict=True):
        if conv is None:
            fmt = None
        elif isinstance(f, EncryptedMixin):
            def fmt(value: Any) -> str:
                return _text(encrypt(value) if value else value)
        elif isinstance(f, models.JSONField):
            fmt = _json_text(f.encoder)
        else:
            fmt = _text
        out.append((attname, default, fmt))
    return out


class _CopyLines:
    """Rows → COPY text lines (values as _row_values gives them), one call per chunk. A column
    whose value is the same object as in the row before reuses its text: the client, template
    version, channels, priority … of a bulk's 50,000 notifications are formatted once."""

    def __init__(self, model: type[models.Model], now: datetime) -> None:
        memo: dict[int, tuple[Any, str]] = {}
        self.columns = [(attname, default, functools.partial(fmt, memo=memo)
                         if isinstance(fmt, _JsonText) else fmt)
                        for attname, default, fmt in _text_columns(model)]
        self.stamp = now.isoformat()
        self.last: list[Any] = [_NOTHING] * len(self.columns)
        self.texts: list[str] = [""] * len(self.columns)

    def __call__(self, rows: Sequence[models.Model | Mapping[str, Any]]) -> list[str]:
        columns, last, texts, stamp = self.columns, self.last, self.texts, self.stamp
        lines = []
        for row in rows:
            values = vars(row) if isinstance(row, models.Model) else row
            parts = []
            for i, (attname, default, fmt) in enumerate(columns):
                value = values.get(attname, _NOTHING)
                if value is last[i] and value is not _NOTHING:
                    parts.append(texts[i])
                    continue
                if fmt is None:  # auto_now(_add): the row's value, else the batch's time
                    text = _text(value) if value and value is not _NOTHING else stamp
                else:
                    text = fmt(default() if value is _NOTHING else value)
                last[i], texts[i] = value, text
                parts.append(text)
            lines.append("\t".join(parts) + "\n")
        return lines


_NOTHING: Any = object()


def _copy_text(
    model: type[models.Model], rows: Sequence[models.Model | Mapping[str, Any]], now: datetime
) -> list[str]:
    """The rows as COPY text lines (values as _row_values gives them)."""
    return _CopyLines(model, now)(rows)


def _row_values(
    row: models.Model | Mapping[str, Any], convert: list[Any], now: datetime
) -> list[Any]:
    values = vars(row) if isinstance(row, models.Model) else row
    return [
        (values.get(attname) or now) if conv is None
        else conv(values[attname]) if attname in values else conv(default())
        for attname, default, conv in convert
    ]


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


@functools.cache
def _columns(model: type[models.Model]) -> tuple[list[Any], str]:
    """[(attname, default(), converter)] and the quoted column list of a model's insert
    (built once per model)."""
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    if any(isinstance(f, PIIHashField) for f in fields):
        raise NotImplementedError(f"Bulk inserts do not compute the hashes of {model.__name__}.")
    convert = []
    for f in fields:
        callable_default = f.has_default() and callable(f.default)
        default = f.get_default if callable_default else _constant(f.get_default())
        convert.append((f.attname, default, _converter(f)))
    return convert, ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)


@functools.cache
def _references(model: type[models.Model]) -> frozenset[type[models.Model]]:
    """The models a model's foreign key constraints point at."""
    return frozenset(target for f in model._meta.concrete_fields
                     if getattr(f, "db_constraint", False)
                     and isinstance(target := f.related_model, type))


_deferred_fks: dict[str, list[str]] = {}


@contextlib.contextmanager
def _foreign_keys_checked_now(model: type[models.Model], *, enabled: bool) -> Iterator[None]:
    """Within the block, the table's deferrable foreign keys are checked row by row
    (`SET CONSTRAINTS … IMMEDIATE`); deferred again after it."""
    if not enabled:
        yield
        return
    table = model._meta.db_table
    names = _deferred_fks.get(table)
    if names is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass"
                           " AND contype = 'f' AND condeferrable AND condeferred", [table])
            names = _deferred_fks[table] = sorted(row[0] for row in cursor.fetchall())
    if not names:
        yield
        return
    listed = ", ".join(connection.ops.quote_name(name) for name in names)
    with connection.cursor() as cursor:
        cursor.execute(f"SET CONSTRAINTS {listed} IMMEDIATE")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"SET CONSTRAINTS {listed} DEFERRED")


def rows_insert(
    tables: Sequence[tuple[type[models.Model], Sequence[models.Model | Mapping[str, Any]]]],
    now: datetime,
) -> None:
    """Inserts rows into several tables in the order given, as copy_insert stores them: a
    small batch in ONE statement (each table's multi-row INSERT chained in a WITH: one round
    trip), a large one with one COPY per table. A table may reference rows of another written
    later in the same call: those foreign keys are checked at the commit."""
    tables = [(model, rows) for model, rows in tables if rows]
    if not tables:
        return
    if sum(len(rows) for _, rows in tables) > SMALL_BATCH_ROWS:
        for position, (model, rows) in enumerate(tables):
            later = {m for m, _ in tables[position + 1:]}
            # Checked as the rows arrive (on the server's core, while the next chunk is
            # built) rather than all at the commit, unless a row refers to a table this call
            # writes later: 50,000 rows' checks cost ~0.8 s at the commit otherwise.
            with _foreign_keys_checked_now(model, enabled=not later & _references(model)):
                copy_insert(model, rows, now)
        return
    parts: list[str] = []
    params: list[Any] = []
    for model, rows in tables:
        convert, columns = _columns(model)
        placeholder = "(" + ", ".join(["%s"] * len(convert)) + ")"
        for row in rows:
            params.extend(_row_values(row, convert, now))
        table = connection.ops.quote_name(model._meta.db_table)
        parts.append(f"INSERT INTO {table} ({columns}) VALUES "
                     + ", ".join([placeholder] * len(rows)))
    *first, last = parts
    sql = ("WITH " + ", ".join(f"w{i} AS ({part})" for i, part in enumerate(first)) + " "
           if first else "") + last
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _resolve_recipients(
    client: Client, requests: Sequence[SendRequest], channels_of: Sequence[Sequence[str]],
    errors: _Errors, audit: list[Entry],
) -> dict[str, Recipient]:
    """Upserts every inline recipient of every request at once; reads the ids. external id →
    Recipient; an unknown id is recorded against its request and position."""
    inline = [r for request in requests for r in request.recipients if isinstance(r, dict)]
    known = recipients_upsert(client=client, items=inline, audit_into=audit) if inline else {}
    wanted = {r for request in requests for r in request.recipients
              if isinstance(r, str) and r not in known}
    if wanted:
        channels = {c for channels in channels_of for c in channels}
        known.update(recipients_by_external_id(client=client, external_ids=list(wanted),
                                               channels=channels))
    _unknown_recipients(requests, known, errors)
    return known


def _unknown_recipients(
    requests: Sequence[SendRequest], known: Mapping[str, Any], errors: _Errors
) -> None:
    for index, request in enumerate(requests):
        for position, r in enumerate(request.recipients):
            if isinstance(r, str) and r not in known:
                errors.add(index, ApplicationError(
                    "Unknown recipient.", code="unknown_recipient",
                    fields={f"recipients[{position}]": [
                        "Unknown recipient id; create it with PUT /api/v1/recipients/{id}."]}))


_ADDRESS_FIELDS = ("email", "phone", "whatsapp")


class PlannedRecipient:
    """A recipient as an accepted job will leave it, read without writing or decrypting
    anything: which addresses it has comes from the stored hash columns merged with the
    body's inline fields (as recipients_upsert would merge them). Stands in for a Recipient
    in the checks of `notifications_accept`; `stored_id` is the row's id if it exists."""

    __slots__ = ("addresses", "external_id", "has_active_device", "id", "locale", "stored_id",
                 "timezone")

    def __init__(self, external_id: str, stored: Sequence[Any] | None) -> None:
        self.external_id = external_id
        self.stored_id = stored[0] if stored else None
        # A new recipient's stand-in key (never a row's id: no query matches it).
        self.id: Any = self.stored_id or ("new", external_id)
        self.addresses = {name for name, present in zip(_ADDRESS_FIELDS, stored[1:4],
                                                        strict=True) if present} if stored else set()
        self.locale = stored[4] if stored else "en"
        self.timezone = stored[5] if stored else "UTC"
        self.has_active_device = False

    def apply(self, fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if name in _ADDRESS_FIELDS:
                if value:
                    self.addresses.add(name)
                else:
                    self.addresses.discard(name)
            elif name in ("locale", "timezone"):
                setattr(self, name, value if value is not None else "")

    def address_for(self, channel: str) -> str:
        """A marker ("x") where the recipient has an address for the channel, else ""."""
        if channel == "push":
            present = self.has_active_device
        elif channel == "in_app":  # everyone has an inbox
            present = True
        elif channel == "whatsapp":
            present = bool(self.addresses & {"whatsapp", "phone"})
        else:
            present = {"email": "email", "sms": "phone"}.get(channel, "") in self.addresses
        return "x" if present else ""


def inline_fields(requests: Sequence[SendRequest]) -> dict[str, dict[str, Any]]:
    """external id → the inline fields every request gives it, merged in order (what
    recipients_upsert keeps)."""
    merged: dict[str, dict[str, Any]] = {}
    for request in requests:
        for r in request.recipients:
            if isinstance(r, dict):
                merged.setdefault(str(r["id"]), {}).update(
                    {k: v for k, v in r.items() if k in RECIPIENT_FIELDS})
    return merged


def _plan_recipients(
    client: Client, requests: Sequence[SendRequest], merged: Mapping[str, Mapping[str, Any]],
    errors: _Errors,
) -> dict[str, PlannedRecipient]:
    """external id → PlannedRecipient for every recipient of every request: one read of the
    stored rows (ids, hash presence, locale, time zone; nothing decrypted), nothing written.
    An unknown id is recorded as `_resolve_recipients` records it."""
    wanted = {str(r["id"] if isinstance(r, dict) else r)
              for request in requests for r in request.recipients}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT external_id, id, email_hash <> '', phone_hash <> '', whatsapp_hash <> '',"
            " locale, timezone FROM recipients_recipient"
            " WHERE client_id = %s AND external_id = ANY(%s)", [client.id, list(wanted)])
        stored = {row[0]: row[1:] for row in cursor.fetchall()}
    known: dict[str, PlannedRecipient] = {}
    for external_id in wanted:
        row = stored.get(external_id)
        fields = merged.get(external_id)
        if row is None and fields is None:
            continue
        planned = known[external_id] = PlannedRecipient(external_id, row)
        if fields:
            planned.apply(fields)
    _unknown_recipients(requests, known, errors)
    return known


def mark_devices(recipients: Iterable[Any]) -> None:
    """Sets `has_active_device` (what address_for("push") reads) in one query."""
    recipients = list(recipients)
    # A planned recipient not stored yet (a stand-in id) has no device.
    with_devices = active_device_tokens(
        recipient_ids=[r.id for r in recipients if isinstance(r.id, uuid.UUID)])
    for recipient in recipients:
        recipient.has_active_device = str(recipient.id) in with_devices


class Plan(NamedTuple):
    """What a notification's deliveries copy from it."""

    notification_id: uuid.UUID
    channels: list[str]
    priority: str


class DeliveryRows:
    """Delivery rows as the model stores them (see copy_insert), built one recipient at a time
    by the accept and by a job's slice alike; `insert` writes them with their "accepted"
    events and the audit rows given."""

    def __init__(self, *, client_id: Any, is_test: bool, now: datetime) -> None:
        self.client_id = client_id
        self.is_test = is_test
        self.now = now
        self.requeue_lease = now + timedelta(seconds=settings.RELAY_REQUEUE_AFTER_SECONDS)
        self.rows: list[dict[str, Any]] = []
        self.accepted: list[AcceptedDelivery] = []
        self.publish: list[tuple[str, str]] = []
        self.by_channel: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, plan: Plan, recipient: Any, *, version_id: Any, due_at: datetime | None,
            stamp: Callable[[], datetime]) -> None:
        """One delivery per channel of `plan` for this recipient: `scheduled` with a due time,
        else `pending` (published after commit); `version_id` None = the notification's own."""
        priority = plan.priority
        status = (DeliveryStatus.SCHEDULED.value if due_at is not None
                  else DeliveryStatus.PENDING.value)
        for channel in plan.channels:
            delivery_id = ids.uuid4()
            created = stamp()
            self.rows.append({
                "id": delivery_id, "notification_id": plan.notification_id,
                "client_id": self.client_id, "recipient_id": recipient.id, "channel": channel,
                "priority": priority, "status": status, "address": recipient.address_for(channel),
                "due_at": due_at, "lease_until": due_at or self.requeue_lease,
                "template_version_id": version_id,
                "is_test": self.is_test, "created_at": created, "updated_at": created,
            })
            self.accepted.append(AcceptedDelivery(delivery_id, plan.notification_id,
                                                  recipient.external_id, channel, priority,
                                                  status))
            self.by_channel[(channel, priority)] += 1
            if due_at is None:
                self.publish.append((str(delivery_id), priority))

    def insert(self, *, before: Sequence[tuple[type[models.Model], Sequence[Any]]] = (),
               audit: Sequence[Entry] = (), accepted_at: datetime | None = None,
               audit_rows: Sequence[Mapping[str, Any]] = ()) -> None:
        """Writes `before` (e.g. the notifications), the deliveries, their "accepted" events
        (at `accepted_at`, default now) and the audit rows (`audit`, and `audit_rows` already
        as AuditLog values) with `rows_insert`."""
        context = current_context()
        at = accepted_at or self.now
        rows_insert([
            *before,
            (Delivery, self.rows),
            (DeliveryEvent, [{"delivery_id": d["id"], "status": d["status"], "event": "accepted",
                              "occurred_at": at} for d in self.rows]),
            (AuditLog, [*(entry.values(context) for entry in audit), *audit_rows]),
        ], self.now)


@transaction.atomic(savepoint=False)
@pii_batch()  # each address encrypted once for the recipient and its deliveries
def notifications_accept(
    *, client: Client, requests: Sequence[SendRequest], is_test: bool = False,
    field_name: FieldName = bulk_field, fanout: bool = False, config_generation: str | None = None,
) -> Accepted:
    """Accepts every request or none: raises the first failing rule's ApplicationError naming
    every request that breaks it (`field_name(index, field)`). `is_test` marks them all as a
    test key's (sandbox only: see providers/registry.py). Writes with `rows_insert` and
    publishes the deliveries that are due after commit.

    No savepoint of its own: callers run it inside theirs (notification_send,
    notifications_send_bulk, recipients_send_in_chunks are each @transaction.atomic). A
    request's `idempotency_key` must be free: callers check and serialize (a concurrent
    duplicate fails the unique constraint: 409, nothing kept).

    With `fanout`, a batch of at least ACCEPT_FANOUT_MIN_DELIVERIES deliveries is accepted as
    a job (fanout.py): every check runs here as for a small batch (addresses from the stored
    hashes merged with the inline fields, nothing decrypted), then only the notifications,
    their audit rows and the job are written; workers upsert the recipients and create the
    deliveries after commit. `Accepted.deliveries` is then empty.

    `config_generation`: the client's configuration generation read at the start of the
    request (apps/clients/config_generation.py); with it, the templates may come from this
    process's copy read at the same generation (no query)."""
    now = timezone.now()
    errors = _Errors(field_name)

    # 1. Schedules that cannot be right whatever the data.
    for index, request in enumerate(requests):
        if request.local_send_time is not None and request.scheduled_at is not None:
            errors.add(index, ApplicationError(
                "Use either scheduled_at or local_send_time, not both.", code="conflicting_schedule",
                fields={"local_send_time": ["Not allowed together with scheduled_at."]}))
    errors.raise_any()

    # 2. Templates and their locale versions, once per template.
    templates, by_locale = _templates(client, {request.template_id for request in requests},
                                      generation=config_generation)
    for index, request in enumerate(requests):
        template = templates.get(request.template_id)
        if template is None:
            errors.add(index, ApplicationError(
                f"Unknown template '{request.template_id}'.", code="unknown_template",
                fields={"template_id": ["No template with this id or key."]}))
        elif template.active_version is None:
            errors.add(index, ApplicationError(
                f"Template '{template.key}' has no published version.",
                code="template_not_published", fields={"template_id": ["Publish a version first."]}))
    errors.raise_any()

    # 3. Channels with a configured provider; schedules not in the past.
    available = supported_channels(mode=key_mode(is_test=is_test))
    channels_of: list[list[str]] = []
    same_channels: dict[tuple[str, ...], list[str]] = {}
    for index, request in enumerate(requests):
        template = templates[request.template_id]
        channels = list(dict.fromkeys(request.channels or template.channels))
        channels = same_channels.setdefault(tuple(channels), channels)  # one list per choice
        channels_of.append(channels)
        unsupported = [c for c in channels if c not in available]
        if not channels or unsupported:
            errors.add(index, ApplicationError(
                "No provider is configured for a requested channel.", code="channel_not_supported",
                fields={"channels": [f"Not available: {', '.join(unsupported) or 'none given'}. "
                                     f"Available: {', '.join(available)}."]}))
    errors.raise_any()

    for index, request in enumerate(requests):
        if request.scheduled_at is not None and request.scheduled_at < now - timedelta(seconds=5):
            errors.add(index, ApplicationError(
                "scheduled_at is in the past.", code="schedule_in_past",
                fields={"scheduled_at": ["Must be in the future."]}))
    errors.raise_any()

    # 4. Recipients: one upsert and one read for all requests (rolled back if anything fails);
    # for a job, one read and no write (its slices upsert them).
    planned = sum(len({str(r["id"] if isinstance(r, dict) else r) for r in request.recipients})
                  * len(channels_of[index]) for index, request in enumerate(requests))
    fanout = fanout and planned >= settings.ACCEPT_FANOUT_MIN_DELIVERIES
    audit: list[Entry] = []
    merged: dict[str, dict[str, Any]] = {}
    known: Mapping[str, Any]
    if fanout:
        merged = inline_fields(requests)
        known = _plan_recipients(client, requests, merged, errors)
    else:
        known = _resolve_recipients(client, requests, channels_of, errors, audit)
    errors.raise_any()
    resolved_of: list[list[tuple[int, Any]]] = []  # per request: (position, recipient)
    for request in requests:
        ordered: dict[str, tuple[int, Any]] = {}
        for position, r in enumerate(request.recipients):
            external_id = str(r["id"] if isinstance(r, dict) else r)
            if external_id not in ordered:
                ordered[external_id] = (position, known[external_id])
        resolved_of.append(list(ordered.values()))

    # 5. Each recipient's locale version; every pinned version has content and variables.
    picked: dict[tuple[Any, str], TemplateVersion] = {}
    checked: dict[tuple[Any, tuple[str, ...], frozenset[str]], ApplicationError | None] = {}
    pinned_of: list[dict[Any, TemplateVersion]] = []
    for index, request in enumerate(requests):
        template = templates[request.template_id]
        version = template.active_version
        assert version is not None
        versions = by_locale.get(template.id, {})
        pinned: dict[Any, TemplateVersion] = {}
        for _, recipient in resolved_of[index]:
            cache_key = (template.id, recipient.locale)
            chosen = picked.get(cache_key)
            if chosen is None:
                chosen = picked[cache_key] = pick_version(
                    versions, template.default_locale, recipient.locale) or version
            pinned[recipient.id] = chosen
        pinned_of.append(pinned)
        names = frozenset(request.variables or {})
        for candidate in {v.id: v for v in [version, *pinned.values()]}.values():
            check_key = (candidate.id, tuple(channels_of[index]), names)
            if check_key not in checked:
                try:
                    check_version(template.key, candidate, channels_of[index], names)
                    checked[check_key] = None
                except ApplicationError as exc:
                    checked[check_key] = exc
            failure = checked[check_key]
            if failure is not None:
                errors.add(index, failure)
                break
    errors.raise_any()

    # 6. Every recipient has an address for every requested channel.
    push = {r.external_id: r for i, rs in enumerate(resolved_of) if "push" in channels_of[i]
            for _, r in rs}
    if push:
        mark_devices(push.values())
    for index, resolved in enumerate(resolved_of):
        channels = channels_of[index]
        for position, recipient in resolved:
            absent = [c for c in channels if not recipient.address_for(c)]
            if absent:
                errors.add(index, ApplicationError(
                    "A recipient has no address for a requested channel.",
                    code="recipient_missing_address",
                    fields={f"recipients[{position}]": [f"No address for channel: {', '.join(absent)}."]}))
    errors.raise_any()

    # 7. Local send times: one due time per recipient.
    local_due_of: list[dict[Any, datetime]] = []
    for index, request in enumerate(requests):
        at, on = request.local_send_time, request.local_send_date
        due: dict[Any, datetime] = {}
        if at is not None:
            due = {r.id: local_due_time(r.timezone, at, on, now) for _, r in resolved_of[index]}
            if on is not None and any(d <= now for d in due.values()):
                errors.add(index, ApplicationError(
                    "For some recipients that local time has already passed.",
                    code="schedule_in_past", fields={"local_send_date": ["Pick a later date."]}))
            horizon = settings.SCHEDULED_AT_MAX_AHEAD_DAYS
            if on is not None and any(d > now + timedelta(days=horizon) for d in due.values()):
                errors.add(index, ApplicationError(
                    f"local_send_date is more than {horizon} days ahead.",
                    code="schedule_too_far_ahead",
                    fields={"local_send_date": [f"Must be at most {horizon} days from now."]}))
        local_due_of.append(due)
    errors.raise_any()

    # 8. Write: notifications, deliveries, events, audit rows (or, for a job, the job).
    # Every row gets its own creation time, a microsecond apart in request order: lists page
    # by (created_at, id) with a cursor, which cannot step over thousands of equal timestamps,
    # and a notification's deliveries read back in request order. A job's items keep the
    # offset their deliveries will be stamped with.
    tick = iter(range(10**9))

    def stamp() -> datetime:
        return now + timedelta(microseconds=next(tick))

    notifications: list[Notification] = []
    out = DeliveryRows(client_id=client.id, is_test=is_test, now=now)
    job = JobBuilder(client=client, is_test=is_test, now=now) if fanout else None
    for index, request in enumerate(requests):
        template = templates[request.template_id]
        version = template.active_version
        assert version is not None
        local_due = local_due_of[index]
        scheduled_at = min(local_due.values()) if local_due else request.scheduled_at
        scheduled = scheduled_at is not None and scheduled_at > now
        priority = request.priority or "normal"
        created = stamp()
        notification = unsaved(Notification, {
            "client_id": client.id,
            "idempotency_key": request.idempotency_key or None,
            "request_hash": request.request_hash,
            "template_version_id": version.id,
            "variables": request.variables or {},
            "channels": channels_of[index],
            "priority": priority,
            "category": request.category or template.category,
            "metadata": request.metadata or {},
            "scheduled_at": scheduled_at,
            "status": (NotificationStatus.SCHEDULED.value if scheduled
                       else NotificationStatus.PENDING.value),
            "recipient_count": len(resolved_of[index]),
            "is_test": is_test,
            "created_at": created, "updated_at": created,
        }, related={"client": client, "template_version": version})
        notifications.append(notification)
        plan = Plan(notification.id, channels_of[index], priority)
        pinned = pinned_of[index]
        for _, recipient in resolved_of[index]:
            due_at = (local_due.get(recipient.id, scheduled_at) if scheduled else None)
            own_version = pinned[recipient.id]
            own_version_id = None if own_version.id == version.id else own_version.id
            if job is None:
                out.add(plan, recipient, version_id=own_version_id, due_at=due_at, stamp=stamp)
            else:
                first = next(tick)
                for _ in range(len(plan.channels) - 1):
                    next(tick)
                job.add(plan, recipient, merged.get(recipient.external_id),
                        version_id=own_version_id, due_at=due_at, tick=first)
        if job is not None:
            notification.accept_job_id = job.id
    # One `notification.send` audit row per notification, after the upsert's own rows. A job
    # writes them in its slices, with the deliveries (fanout.py), except for the notifications
    # whose items span several slices.
    at_accept = job.audited_at_accept() if job is not None else None
    audit.extend(
        notification_send_entry(notification=n, template=templates[request.template_id],
                                recipients=[r for _, r in resolved_of[index]])
        for index, (n, request) in enumerate(zip(notifications, requests, strict=True))
        if at_accept is None or str(n.id) in at_accept
    )
    if job is None:
        out.insert(before=[(Notification, notifications)], audit=audit)
    else:
        named = {ref: (t.key, t.active_version.version) for ref, t in templates.items()
                 if t.active_version is not None}
        in_slices = {
            nid: named[request.template_id]
            for n, request in zip(notifications, requests, strict=True)
            if (nid := str(n.id)) not in at_accept  # type: ignore[operator]
        }
        # The job first: its notifications' foreign keys are then checked during their COPY.
        out.insert(before=[*job.rows(audit=in_slices), (Notification, notifications)],
                   audit=audit)
    for notification in notifications:
        notification._state.adding = False
    if job is not None:
        transaction.on_commit(job.publish)
        return Accepted(notifications=notifications, by_channel=dict(job.by_channel),
                        job_id=job.id)
    publish = out.publish
    if publish:
        transaction.on_commit(lambda: deliveries_publish_accepted(items=publish))
    return Accepted(notifications=notifications, deliveries=out.accepted,
                    by_channel=dict(out.by_channel))


@transaction.atomic
def notifications_send_bulk(
    *, client: Client, items: Sequence[Mapping[str, Any]], is_test: bool = False,
    charge: Callable[[int], None] | None = None, config_generation: str | None = None,
) -> Accepted:
    """The bulk API's send: every item (a validated send body) or none, each failure named
    `notifications[<index>].<field>`. `charge`, `config_generation`: as notification_send's."""
    accepted = notifications_accept(
        client=client, requests=[SendRequest.from_body(i) for i in items], is_test=is_test,
        field_name=bulk_field, fanout=True, config_generation=config_generation)
    if charge is not None:
        charge(accepted.delivery_count)
    return accepted
