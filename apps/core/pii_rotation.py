"""Re-encrypting stored PII under the primary key, and recomputing its hashes, in batches.

Used by the migrations that turned encryption on (plaintext rows → tokens + hashes) and by
`manage.py rotate_pii_keys` (old-key tokens → primary-key tokens; `--rehash` after a new
PII_HASH_KEY). Rows are read and written with raw SQL, one UPDATE per batch, each batch
committed on its own when run outside a transaction. Idempotent: a row whose values are already
under the primary key (and whose hashes are present) is left alone, so a run that stopped can
simply be started again. Compare-and-swap: a row changed by the application between the read
and the write is skipped (the application wrote it under the primary key itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import InvalidToken
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db import connection, models

from .crypto import TOKEN_PREFIX, PIIDecryptionError, keyring
from .encrypted_fields import EncryptedMixin, PIIHashField

DEFAULT_BATCH_SIZE = 1000


@dataclass
class TableReport:
    label: str
    total: int = 0
    scanned: int = 0
    rewritten: int = 0
    skipped_changed: int = 0  # changed by the application meanwhile (already current)
    seconds: float = 0.0
    last_pk: Any = None

    @property
    def rate(self) -> float:
        return self.scanned / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Plan:
    table: str
    pk: str
    pk_type: str
    encrypted: tuple[str, ...]
    # hash column → (source column, keep the hash when the source is empty)
    hashes: dict[str, tuple[str, bool]] = field(default_factory=dict)


def encrypted_models(app_registry: Apps | None = None) -> list[type[models.Model]]:
    """Every model with an encrypted field."""
    registry = app_registry or global_apps
    return [m for m in registry.get_models()
            if any(isinstance(f, EncryptedMixin) for f in m._meta.concrete_fields)]


def _plan(model: type[models.Model]) -> _Plan:
    fields = model._meta.concrete_fields
    by_name = {f.name: f for f in fields}
    pk = model._meta.pk
    assert pk is not None
    return _Plan(
        table=model._meta.db_table,
        pk=str(pk.column),
        pk_type=pk.db_type(connection) or "text",
        encrypted=tuple(str(f.column) for f in fields if isinstance(f, EncryptedMixin)),
        hashes={str(f.column): (str(by_name[f.source].column), f.keep_when_cleared)
                for f in fields if isinstance(f, PIIHashField)},
    )


def _decrypt(value: str | None) -> tuple[str, bool]:
    """(plaintext, whether the stored value must be rewritten under the primary key)."""
    if not value:
        return "", False
    if not value.startswith(TOKEN_PREFIX):
        return value, True  # plaintext from before encryption
    data = value.encode()
    for position, fernet in enumerate(keyring().fernets):
        try:
            return fernet.decrypt(data).decode(), position != 0
        except InvalidToken:
            continue
    raise PIIDecryptionError("A stored value could not be decrypted with any key in "
                             "PII_ENCRYPTION_KEYS.")


def _batches(plan: _Plan, batch_size: int, after: Any) -> Iterator[list[tuple[Any, ...]]]:
    q = connection.ops.quote_name
    columns = [plan.pk, *plan.encrypted, *plan.hashes]
    select = ", ".join(q(c) for c in columns)
    while True:
        with connection.cursor() as cursor:
            if after is None:
                cursor.execute(f"SELECT {select} FROM {q(plan.table)} "
                               f"ORDER BY {q(plan.pk)} LIMIT %s", [batch_size])
            else:
                cursor.execute(f"SELECT {select} FROM {q(plan.table)} "
                               f"WHERE {q(plan.pk)} > %s ORDER BY {q(plan.pk)} LIMIT %s",
                               [after, batch_size])
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def _write(plan: _Plan, old_rows: list[tuple[Any, ...]], new_rows: list[tuple[Any, ...]]) -> int:
    """One UPDATE for the batch, each row only if it still holds what was read."""
    q = connection.ops.quote_name
    columns = [*plan.encrypted, *plan.hashes]
    arrays = [f"%s::{plan.pk_type}[]"] + ["%s::text[]"] * (2 * len(columns))
    names = ["pk"] + [f"new_{i}" for i in range(len(columns))] + [f"old_{i}" for i in range(len(columns))]
    sets = ", ".join(f"{q(c)} = v.new_{i}" for i, c in enumerate(columns))
    same = " AND ".join(f"t.{q(c)} IS NOT DISTINCT FROM v.old_{i}" for i, c in enumerate(columns))
    sql = (f"UPDATE {q(plan.table)} AS t SET {sets} "
           f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) "
           f"WHERE t.{q(plan.pk)} = v.pk AND {same}")
    params: list[list[Any]] = [[r[0] for r in new_rows]]
    for i in range(len(columns)):
        params.append([r[1 + i] for r in new_rows])
    for i in range(len(columns)):
        params.append([r[1 + i] for r in old_rows])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def reencrypt_model(
    model: type[models.Model], *, rehash: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
    after: Any = None, progress: Callable[[TableReport], None] | None = None,
) -> TableReport:
    """Brings every row of `model` under the primary key (plaintext is encrypted, old-key
    tokens are re-encrypted) and fills its missing hashes (all of them with `rehash`)."""
    plan = _plan(model)
    ring = keyring()
    report = TableReport(label=model._meta.label, last_pk=after)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(plan.table)}")
        report.total = int(cursor.fetchone()[0])
    started = time.monotonic()
    n_enc = len(plan.encrypted)
    hash_columns = list(plan.hashes)
    for rows in _batches(plan, batch_size, after):
        old_rows: list[tuple[Any, ...]] = []
        new_rows: list[tuple[Any, ...]] = []
        for row in rows:
            stored = row[1:1 + n_enc]
            stored_hashes = row[1 + n_enc:]
            plain: dict[str, str] = {}
            new_values: list[str | None] = []
            changed = False
            for column, value in zip(plan.encrypted, stored, strict=True):
                text, stale = _decrypt(value)
                plain[column] = text
                if stale:
                    changed = True
                    new_values.append(ring.primary.encrypt(text.encode()).decode())
                else:
                    new_values.append(value)
            new_hashes: list[str | None] = []
            for column, current in zip(hash_columns, stored_hashes, strict=True):
                source, keep = plan.hashes[column]
                text = plain.get(source, "")
                wanted = current if (not text and keep) else ring.hash(text)
                if (rehash or not current or not text) and wanted != current:
                    changed = True
                    new_hashes.append(wanted)
                else:
                    new_hashes.append(current)
            if changed:
                old_rows.append(row)
                new_rows.append((row[0], *new_values, *new_hashes))
        if new_rows:
            written = _write(plan, old_rows, new_rows)
            report.rewritten += written
            report.skipped_changed += len(new_rows) - written
        report.scanned += len(rows)
        report.last_pk = rows[-1][0]
        report.seconds = time.monotonic() - started
        if progress is not None:
            progress(report)
    report.seconds = time.monotonic() - started
    return report


def decrypt_model(model: type[models.Model], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Writes every encrypted value of `model` back as plaintext and clears its hashes: the
    reverse of the migration that turned encryption on. Returns the rows rewritten."""
    plan = _plan(model)
    n_enc = len(plan.encrypted)
    rewritten = 0
    for rows in _batches(plan, batch_size, None):
        new_rows = [(row[0], *(_decrypt(v)[0] for v in row[1:1 + n_enc]), *([""] * len(plan.hashes)))
                    for row in rows]
        rewritten += _write(plan, rows, new_rows)
    return rewritten
