"""Model fields for PII at rest (apps/core/crypto.py holds the keys and the primitives).

- `EncryptedCharField` / `EncryptedEmailField`: the column (text) holds a Fernet token, Python
  sees the plaintext: encrypted in `get_prep_value` (save, bulk_create, update, bulk_update),
  decrypted in `from_db_value` (instances, values(), values_list()). "" stays "". The only
  lookups allowed are `isnull` and `exact` against "" (a token is random, so `email=x` could
  never match): look an address up through its hash field instead.
- `PIIHashField(source=...)`: the keyed hash of another field, computed on save and
  bulk_create (like auto_now). `PIIQuerySet` keeps it in step on `update()`, `bulk_update()`
  and `bulk_create(update_conflicts=True)` too. A `save(update_fields=[...])` that names the
  source field must name the hash field as well.
- Raw SQL (COPY in apps/notifications/bulk.py) must call `get_prep_value` / `hash_of` itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, TypeVar

from django.core.exceptions import FieldError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import Exact, IsNull

from .crypto import decrypt, encrypt, pii_hash

_M = TypeVar("_M", bound=models.Model)


class _EmptyOnlyExact(Exact):
    """`field=""` (no address) is the only equality an encrypted column can answer."""

    def get_prep_lookup(self) -> Any:
        if not hasattr(self.rhs, "resolve_expression") and self.rhs not in ("", None):
            field = self.lhs.output_field
            raise FieldError(
                f"{field.model.__name__}.{field.name} is encrypted and cannot be compared with a "
                f"value; filter on its hash field with apps.core.crypto.pii_hash(value)."
            )
        return super().get_prep_lookup()


class EncryptedMixin:
    """Stored as a Fernet token in a text column; the Python value is the plaintext."""

    model: type[models.Model]
    name: str

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "text"  # a token is ~1.4 x the plaintext + 73 characters: no length bound here

    def from_db_value(self, value: str | None, expression: Any,
                      connection: BaseDatabaseWrapper) -> str | None:
        return decrypt(value) if value else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)  # type: ignore[misc]
        return encrypt(value) if value else value

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "exact":
            return _EmptyOnlyExact
        if lookup_name == "isnull":
            return IsNull
        return None  # contains, in, startswith … cannot work on ciphertext


class EncryptedCharField(EncryptedMixin, models.CharField):  # type: ignore[type-arg]
    """A CharField (max_length validates the plaintext) stored encrypted."""


class EncryptedEmailField(EncryptedMixin, models.EmailField):  # type: ignore[type-arg]
    """An EmailField (validation, form and serializer fields as usual) stored encrypted."""


class PIIHashField(models.CharField):  # type: ignore[type-arg]
    """HMAC-SHA256 (hex) of the normalised value of `source`, "" when it is empty.

    `keep_when_cleared`: emptying the source keeps the stored hash (a suppression whose address
    was erased still blocks that address, known by its hash only)."""

    def __init__(self, *args: Any, source: str = "", keep_when_cleared: bool = False,
                 **kwargs: Any) -> None:
        self.source = source
        self.keep_when_cleared = keep_when_cleared
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        if self.keep_when_cleared:
            kwargs["keep_when_cleared"] = True
        return name, path, args, kwargs

    def hash_of(self, source_value: Any, current: str = "") -> str:
        if not source_value and self.keep_when_cleared:
            return current
        return pii_hash(source_value or "")

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        value = self.hash_of(getattr(model_instance, self.source),
                             getattr(model_instance, self.attname) or "")
        setattr(model_instance, self.attname, value)
        return value


class PIIQuerySet(models.QuerySet[_M]):
    """Keeps `PIIHashField`s in step on the bulk write paths that skip `pre_save`."""

    def _hash_fields(self) -> list[PIIHashField]:
        return [f for f in self.model._meta.concrete_fields if isinstance(f, PIIHashField)]

    def update(self, **kwargs: Any) -> int:
        for field in self._hash_fields():
            if field.source not in kwargs or field.name in kwargs or field.attname in kwargs:
                continue
            value = kwargs[field.source]
            if value is not None and not isinstance(value, str):
                raise FieldError(f"{field.source} is encrypted: update it with a plain value, "
                                 f"not an expression.")
            if value or not field.keep_when_cleared:
                kwargs[field.name] = pii_hash(value)
        return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def _with_hashes(self, fields: Collection[str], objs: Sequence[_M]) -> list[str]:
        fields = list(fields)
        for field in self._hash_fields():
            if field.source in fields and field.name not in fields:
                fields.append(field.name)
                for obj in objs:
                    field.pre_save(obj, add=False)
        return fields

    def bulk_update(self, objs: Iterable[_M], fields: Iterable[str],
                    batch_size: int | None = None) -> int:
        objs = list(objs)
        return super().bulk_update(objs, self._with_hashes(list(fields), objs),
                                   batch_size=batch_size)

    bulk_update.alters_data = True  # type: ignore[attr-defined]

    def bulk_create(self, objs: Iterable[_M], batch_size: int | None = None,
                    ignore_conflicts: bool = False, update_conflicts: bool = False,
                    update_fields: Collection[str] | None = None,
                    unique_fields: Collection[str] | None = None) -> list[_M]:
        # Inserted rows get their hashes from pre_save; rows updated on conflict need the hash
        # columns among the updated ones.
        if update_fields is not None:
            update_fields = self._with_hashes(update_fields, ())
        return super().bulk_create(objs, batch_size=batch_size, ignore_conflicts=ignore_conflicts,
                                   update_conflicts=update_conflicts, update_fields=update_fields,
                                   unique_fields=unique_fields)

    bulk_create.alters_data = True  # type: ignore[attr-defined]


# `objects = PIIManager()` on models with PIIHashFields.
PIIManager = models.Manager.from_queryset(PIIQuerySet)
