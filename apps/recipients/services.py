"""Writes for recipients: one upsert used by the recipients API and inline send recipients."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.audit.services import Entry, audit_record, audit_records
from apps.clients.models import Client
from apps.core.crypto import encrypt, pii_hash
from apps.core.db.rows import all_but, model_columns, unsaved
from apps.core.encrypted_fields import EncryptedMixin, PIIHashField

from .models import Device, Recipient

RECIPIENT_FIELDS = ("email", "phone", "whatsapp", "locale", "timezone", "attributes")
ENCRYPTED_FIELDS = ("email", "phone", "whatsapp")


@transaction.atomic(savepoint=False)
def recipients_upsert(
    *, client: Client, items: Iterable[Mapping[str, Any]], audit_into: list[Entry] | None = None,
) -> dict[str, Recipient]:
    """Creates or updates recipients by external id, in bulk.

    Each item has `id` (the external id) and any of RECIPIENT_FIELDS; fields not given keep
    their stored value. Returns external id → Recipient. Two statements whatever the count
    (a read of the existing rows, one INSERT … ON CONFLICT DO UPDATE … RETURNING), plus the
    `recipient.upsert` audit row — or, with `audit_into`, that row's entry is appended to the
    list for the caller to write with its own rows (the send pipeline does).
    """
    wanted: dict[str, dict[str, Any]] = {}
    for item in items:
        merged = wanted.setdefault(str(item["id"]), {})
        merged.update({k: v for k, v in item.items() if k in RECIPIENT_FIELDS})
    if not wanted:
        return {}
    # An address every item gives is overwritten anyway: not read (nor decrypted) first.
    given_by_all = set.intersection(*(set(fields) for fields in wanted.values()))
    existing = _existing(client, list(wanted),
                         deferred=[name for name in ENCRYPTED_FIELDS if name in given_by_all])
    created, updated = _upsert_changes(wanted=wanted, existing=existing)
    rows = []
    for external_id, fields in wanted.items():
        row = existing.get(external_id) or unsaved(
            Recipient, {"client_id": client.pk, "external_id": external_id}, {"client": client})
        for name, value in fields.items():
            setattr(row, name, value if value is not None else "")
        rows.append(row)
    saved = _upsert(rows)
    # Each row's primary key comes from RETURNING: for a row a concurrent request inserted
    # first, that is the stored row's pk.
    result = {r.external_id: r for r in saved}
    entry = _audit_upsert(client=client, wanted=wanted, created=created, updated=updated,
                          saved=result)
    if entry is not None:
        if audit_into is not None:
            audit_into.append(entry)
        else:
            audit_records([entry])
    return result


# From this many rows an upsert goes through a COPY into a temporary table; below, one
# INSERT … VALUES with the statement's text built once per row count.
STAGED_UPSERT_ROWS = 500
_STAGE = "recipient_upsert_stage"


def _existing(client: Client, external_ids: list[str], *, deferred: list[str]
              ) -> dict[str, Recipient]:
    """The client's stored recipients among `external_ids` (the `deferred` addresses not read
    nor decrypted): one plain statement, built once per deferred set."""
    columns = model_columns(Recipient, "r", all_but(Recipient, deferred))
    # One id (a single send) is looked up by equality: a prepared `= ANY(…)` planned while the
    # table had no statistics (a new database) kept reading every recipient of the client
    # through the index's first column and filtering on the id; a full key of the unique
    # index is one row in any plan.
    match, value = ("= %s", external_ids[0]) if len(external_ids) == 1 else ("= ANY(%s)", external_ids)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.sql} FROM {Recipient._meta.db_table} r "
                       f"WHERE r.client_id = %s AND r.external_id {match}", [client.pk, value])
        rows = cursor.fetchall()
    found = (columns.instance(row) for row in rows)
    return {r.external_id: r for r in found}


@functools.cache
def _upsert_statement() -> tuple[list[Any], str, str]:
    """The upsert's fields, quoted column list and its ON CONFLICT … RETURNING tail."""
    fields = list(Recipient._meta.concrete_fields)
    quote = connection.ops.quote_name
    updated = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}"
                        for c in (*RECIPIENT_FIELDS, *(f"{n}_hash" for n in ENCRYPTED_FIELDS),
                                  "updated_at"))
    tail = (f"ON CONFLICT (client_id, external_id) DO UPDATE SET {updated} "
            "RETURNING id, external_id")
    return fields, ", ".join(quote(str(f.column)) for f in fields), tail


@functools.cache
def _values_sql(count: int, width: int) -> str:
    row = "(" + ", ".join(["%s"] * width) + ")"
    return ", ".join([row] * count)


def _upsert(rows: list[Recipient]) -> list[Recipient]:
    """INSERT … ON CONFLICT (client_id, external_id) DO UPDATE … RETURNING: what
    bulk_create(update_conflicts=True) does, with the statement built once per row count
    (a COPY into a session temporary table from STAGED_UPSERT_ROWS rows). Addresses are
    encrypted and hashed here as the fields' get_prep_value/pre_save would, and the rows get
    the hashes and timestamps stored."""
    now = timezone.now()
    fields, quoted, tail = _upsert_statement()
    table = connection.ops.quote_name(Recipient._meta.db_table)
    dumps = functools.partial(json.dumps, cls=Recipient._meta.get_field("attributes").encoder)

    def values(row: Recipient) -> list[Any]:
        if not row.created_at:
            row.created_at = now
        row.updated_at = now
        out: list[Any] = []
        for f in fields:
            name = f.attname
            if isinstance(f, PIIHashField):
                out.append(f.pre_save(row, add=row._state.adding))
            elif isinstance(f, EncryptedMixin):
                plain = getattr(row, name)
                out.append(encrypt(plain) if plain else "")
            elif name == "attributes":
                out.append(Jsonb(row.attributes or {}, dumps=dumps))
            else:
                out.append(getattr(row, name))
        return out

    with connection.cursor() as cursor:
        if len(rows) < STAGED_UPSERT_ROWS:
            params = [value for row in rows for value in values(row)]
            cursor.execute(f"INSERT INTO {table} ({quoted}) VALUES "
                           f"{_values_sql(len(rows), len(fields))} {tail}", params)
        else:
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE {table}) "
                           "ON COMMIT DELETE ROWS")
            cursor.execute(f"TRUNCATE {_STAGE}")
            with cursor.cursor.copy(f"COPY {_STAGE} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(values(row))
            cursor.execute(f"INSERT INTO {table} ({quoted}) SELECT {quoted} FROM {_STAGE} {tail}")
        stored = {external_id: pk for pk, external_id in cursor.fetchall()}
    for row in rows:
        row.pk = stored[row.external_id]
        row._state.adding = False
        row._state.db = connection.alias
    return rows


def _upsert_changes(*, wanted: Mapping[str, Mapping[str, Any]], existing: Mapping[str, Recipient],
                    ) -> tuple[list[str], dict[str, list[str]]]:
    """The external ids to create, and those to update with the names of their changed fields
    (read before the rows are written). An address not loaded (deferred: the upsert overwrites
    it without decrypting it) is compared through its keyed hash."""
    created = sorted(external_id for external_id in wanted if external_id not in existing)
    updated: dict[str, list[str]] = {}

    def changed(row: Recipient, name: str, value: Any) -> bool:
        if name in ENCRYPTED_FIELDS and name in row.get_deferred_fields():
            return bool(getattr(row, f"{name}_hash") != pii_hash(value or ""))
        return bool(getattr(row, name) != (value if value is not None else ""))

    for external_id, row in existing.items():
        names = sorted(name for name, value in wanted[external_id].items()
                       if changed(row, name, value))
        if names:
            updated[external_id] = names
    return created, updated


def _audit_upsert(*, client: Client, wanted: Mapping[str, Mapping[str, Any]], created: list[str],
                  updated: dict[str, list[str]], saved: Mapping[str, Recipient]) -> Entry | None:
    """One `recipient.upsert` row per call that creates or changes a recipient: the ids and
    the names of the changed fields, never their values (addresses, attributes)."""
    if not created and not updated:
        return None
    if len(created) + len(updated) == 1:
        [external_id] = created or list(updated)
        return Entry(action="recipient.upsert", client=client, object_type="recipient",
                     object_id=saved[external_id].pk, recipient_external_id=external_id,
                     changes={"created": bool(created),
                              "fields": updated.get(external_id) or sorted(wanted[external_id])})
    return Entry(action="recipient.upsert", client=client, object_type="recipient",
                 changes={"created": created, "updated": sorted(updated),
                          "fields": sorted({name for names in updated.values() for name in names}
                                           | {n for i in created for n in wanted[i]}),
                          "count": len(created) + len(updated)})


def recipient_upsert(*, client: Client, external_id: str, data: Mapping[str, Any]) -> Recipient:
    return recipients_upsert(client=client, items=[{**data, "id": external_id}])[external_id]


@transaction.atomic
def device_register(*, recipient: Recipient, token: str, platform: str) -> tuple[Device, bool]:
    """Registers a push token for a recipient (201 semantics when created).

    A token seen before is reactivated and, if it belonged to another recipient of the same
    client (the app was signed into another account), moved to this one."""
    device = (
        Device.objects.select_for_update()
        .filter(client_id=recipient.client_id, token=token)
        .first()
    )
    if device is None:
        device, created = Device.objects.get_or_create(
            client_id=recipient.client_id, token=token,
            defaults={"recipient": recipient, "platform": platform},
        )
        if created:
            _audit_device("device.register", device, recipient, created=True, platform=platform)
            return device, True
    moved = device.recipient_id != recipient.pk
    if moved or device.platform != platform or not device.is_active:
        _audit_device("device.register", device, recipient, created=False, platform=platform,
                      reactivated=not device.is_active, moved_from_another_recipient=moved)
    device.recipient = recipient
    device.platform = platform
    device.is_active = True
    device.deactivated_at = None
    device.deactivation_reason = ""
    device.save(update_fields=["recipient", "platform", "is_active", "deactivated_at",
                               "deactivation_reason", "updated_at"])
    return device, False


def _audit_device(action: str, device: Device, recipient: Recipient, **changes: Any) -> None:
    """The device's id and platform, never its push token."""
    audit_record(action=action, client=recipient.client_id, object_type="device",
                 object_id=device.pk, recipient_external_id=recipient.external_id, changes=changes)


@transaction.atomic
def device_unregister(*, recipient: Recipient, token: str) -> bool:
    """Deactivates a recipient's token (kept for history). False if it was not theirs."""
    device = (Device.objects.select_for_update()
              .filter(recipient=recipient, token=token, is_active=True).first())
    if device is None:
        return False
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(
        is_active=False, deactivated_at=now, deactivation_reason="unregistered_by_client",
        updated_at=now,
    )
    _audit_device("device.remove", device, recipient, platform=device.platform)
    return True


def devices_deactivate(*, client_id: UUID | str, tokens: Iterable[str], reason: str) -> int:
    """Deactivates tokens the push provider reported dead (UNREGISTERED, invalid)."""
    tokens = list(tokens)
    if not tokens:
        return 0
    now = timezone.now()
    return Device.objects.filter(client_id=client_id, token__in=tokens, is_active=True).update(
        is_active=False, deactivated_at=now, deactivation_reason=reason[:100], updated_at=now
    )
