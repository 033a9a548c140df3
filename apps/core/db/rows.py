"""Model instances from plain SQL rows, for the hot paths that run the same read on every
request: the column list is built once per (model, fields, alias) and each row goes through
the same database converters a queryset applies (decryption of encrypted fields, JSON), then
`Model.from_db` — the instances a queryset with `.only(...)` would give, without compiling
the ORM query each time (~0.3-0.5 ms per query on the send path)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, models
from django.db.models import signals
from django.db.models.base import ModelState
from django.db.models.fields import AutoFieldMixin

from apps.core import ids


class ModelColumns:
    """A model's selected concrete fields (all, or those named), in the model's field order:
    `sql` is their column list for FROM … `alias`; `instance(values)` builds one instance
    from the matching slice of a row; the fields not selected are deferred."""

    def __init__(self, model: type[models.Model], alias: str,
                 names: frozenset[str] | None = None) -> None:
        fields = [f for f in model._meta.concrete_fields
                  if names is None or f.name in names or f.attname in names]
        self.model = model
        self.attnames = [f.attname for f in fields]
        self.sql = ", ".join(f"{alias}.{connection.ops.quote_name(str(f.column))}" for f in fields)
        # Model.from_db runs Model.__init__ (every field, every descriptor: ~10-20 µs per
        # row); a model no pre_init/post_init receiver listens to gets the same instance
        # from its values directly, as `unsaved` builds one.
        self._plain = not (signals.pre_init.has_listeners(model)
                           or signals.post_init.has_listeners(model))
        self._converters: list[tuple[int, list[Callable[..., Any]], Any]] = []
        for i, f in enumerate(fields):
            col = f.get_col(alias)
            converters = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
            if converters:
                self._converters.append((i, converters, col))

    def __len__(self) -> int:
        return len(self.attnames)

    def convert(self, values: Sequence[Any]) -> list[Any]:
        """A row's values as the model's fields read them (decrypted, JSON decoded …)."""
        values = list(values)
        for i, converters, col in self._converters:
            for convert in converters:
                values[i] = convert(values[i], col, connection)
        return values

    def instance(self, values: Sequence[Any]) -> Any:
        values = self.convert(values)
        # `connection` is the default alias's (reading `connection.alias` would cost a
        # thread-local lookup per row: ~2 ms for a page of 50 deliveries).
        if not self._plain:
            return self.model.from_db(DEFAULT_DB_ALIAS, self.attnames, values)
        instance = self.model.__new__(self.model)
        state = instance._state = ModelState()
        state.adding, state.db = False, DEFAULT_DB_ALIAS
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        return instance


@functools.cache
def model_columns(model: type[models.Model], alias: str,
                  names: frozenset[str] | None = None) -> ModelColumns:
    """The ModelColumns of (model, alias, names), built once per process."""
    return ModelColumns(model, alias, names)


def all_but(model: type[models.Model], excluded: Iterable[str]) -> frozenset[str] | None:
    """The names of a model's concrete fields without `excluded` (None: all of them)."""
    excluded = set(excluded)
    if not excluded:
        return None
    return frozenset(f.name for f in model._meta.concrete_fields if f.name not in excluded)


@functools.cache
def _defaults(model: type[models.Model]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """A model's constant defaults (values; mutable ones are copied per instance, so they are
    computed) and its computed ones (callables), by attname."""
    constant: dict[str, Any] = {}
    computed: list[tuple[str, Any]] = []
    for f in model._meta.concrete_fields:
        if isinstance(f, AutoFieldMixin):
            continue
        if f.has_default() and callable(f.default):
            # uuid.uuid4 (every primary key): the same ids, built without UUID.__init__.
            computed.append((f.attname, ids.uuid4 if f.default is uuid.uuid4 else f.get_default))
            continue
        value = f.get_default()
        if isinstance(value, list | dict | set):
            computed.append((f.attname, f.get_default))
        else:
            constant[f.attname] = value
    return constant, computed


def unsaved(model: type[models.Model], values: Mapping[str, Any],
            related: Mapping[str, models.Model] | None = None) -> Any:
    """An unsaved instance from attname values (the rest get their defaults), with `related`
    objects cached on their foreign keys: what `model(**kwargs)` builds, for a fraction of its
    cost (Model.__init__ walks every field and descriptor: ~90 µs per notification, seconds
    for a 50,000-item bulk). The model must have no pre_init/post_init receivers."""
    instance = model.__new__(model)
    instance._state = ModelState()
    constant, computed = _defaults(model)
    state = instance.__dict__
    state.update(constant)
    for attname, default in computed:
        if attname not in values:
            state[attname] = default()
    state.update(values)
    for name, obj in (related or {}).items():
        instance._state.fields_cache[name] = obj
    return instance
