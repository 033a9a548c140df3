"""`field__any=[…]`: `field = ANY(%s)` with the values as one array parameter.

Django's `__in` writes one placeholder per value (`IN (%s, %s, …)`), so a statement's text
changes with the number of values: psycopg parses each new text again (client-side binding,
its parsed-text cache holds 128 texts of at most 500 parameters) and PostgreSQL plans it
anew. A receipts callback of a few hundred events spent more CPU converting its two `IN`
lists than applying the receipts. `__any` keeps one text whatever the count, and the index
on the column is used as for `IN`. An empty list matches nothing.

`field__filled=True`: `field <> ''` with the empty string in the statement's text, not a
parameter. A partial index `WHERE field <> ''` (Django's `condition=~Q(field="")`) is only
used when the planner can prove its condition from the query's; with `~Q(field="")` the ''
travels as a parameter, and once PostgreSQL caches a generic plan for a prepared statement
(DB_PREPARE_THRESHOLD) it cannot, and scans the whole table instead."""

from __future__ import annotations

from typing import Any

from django.db.models import Field, Lookup


@Field.register_lookup
class AnyOf(Lookup):  # type: ignore[type-arg]
    lookup_name = "any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        field = self.lhs.output_field
        return "%s", ([field.get_db_prep_value(v, connection, prepared=False) for v in value],)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        db_type = self.lhs.output_field.db_type(connection)
        return f"{lhs} = ANY({rhs}::{db_type}[])", (*lhs_params, *rhs_params)


@Field.register_lookup
class Filled(Lookup):  # type: ignore[type-arg]
    lookup_name = "filled"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        if self.rhs is not True:
            raise ValueError("__filled takes True only")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} <> ''", tuple(lhs_params)
