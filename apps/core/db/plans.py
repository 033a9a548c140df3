"""`planned_per_run()`: statements run inside it are not prepared, so PostgreSQL plans each run
for its own values and the tables' current size.

Statements are prepared after DB_PREPARE_THRESHOLD runs on a connection (settings/base.py),
and after five runs of a prepared statement PostgreSQL may cache a generic plan, made once with
the statistics of that moment. For a point statement (one row by its key) that is what we want.
For a batch statement that joins a JSON batch to `notifications_delivery` (the dispatch's
outcome write, the receipts' update) it is not: planned while the table was small (a new
database, the first minute of a large send) the generic plan is a sequential scan with a hash
join, and the connection keeps it while the table grows to 50,000 rows and more: ~5 ms per
write of a few rows in the bench's 50,000-recipient sends (docs/operations.md, "Seventh round
of issue 8's work"). Planning such a statement costs a fraction of a millisecond per batch.

Planned per run is not enough on its own: PostgreSQL estimates any `jsonb_to_recordset(…)` at
100 rows, so a write of three outcomes against a table of a few thousand rows still looked
cheaper as a hash join over a sequential scan. Such statements also say `d.id = ANY(ids)` with
the batch's ids as an array, whose length the planner sees (docs/operations.md, "Eighth round
of issue 8's work").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def planned_per_run() -> Iterator[None]:
    connection.ensure_connection()
    raw = connection.connection
    before = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = before
