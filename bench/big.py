"""`--big`: reads with 10 million deliveries stored.

Loads notifications, recipients and deliveries with COPY straight into the bench database
(no API, no workers), then ANALYZE, then times GET /api/v1/notifications/{id}, …/status,
the list with filters, and …/{id}/deliveries (skipped when the endpoint answers 404).

Every row is rendered from a model instance (Django computes each column's database value
once: encrypted address, keyed hashes, defaults), so columns other helpers add are filled too;
only ids, foreign keys, status and times vary per row. All deliveries share one encrypted
address (a valid ciphertext: the reads decrypt it). The deliveries table's secondary indexes
are dropped during the load and rebuilt after it (much faster than maintaining them row by
row); foreign-key triggers are skipped for the session when the role may
(session_replication_role = replica): the rows are consistent by construction. Delivery
events (timelines) are not loaded. Progress on stderr.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from .processes import log

if TYPE_CHECKING:
    from .runner import Bench

BATCH = 200_000  # rows per COPY write


@dataclass(frozen=True)
class BigOptions:
    deliveries: int = 10_000_000
    per_notification: int = 50
    reads: int = 200
    recipients: int = 100_000


def _text(value: Any) -> str:
    """A value in COPY's text format."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "obj"):  # psycopg's Json/Jsonb wrapper
        value = value.obj
    if isinstance(value, dict | list):
        value = json.dumps(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _row_template(instance: Any) -> tuple[list[str], list[str]]:
    """(column names, COPY texts) of one model instance, as Django would insert it."""
    from django.db import connection

    columns, texts = [], []
    for field in instance._meta.concrete_fields:
        value = field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        columns.append(field.column)
        texts.append(_text(value))
    return columns, texts


def _uuid(kind: int, n: int) -> str:
    return str(uuid.UUID(int=(kind << 124) | (0x4000 << 64) | (0x8 << 60) | n))


class _Copy:
    def __init__(self, conn: psycopg.Connection[Any], table: str, columns: list[str]) -> None:
        self.conn, self.table, self.columns = conn, table, columns

    def load(self, rows: Any, total: int, label: str) -> None:
        started = time.monotonic()
        done = 0
        cols = ", ".join(f'"{c}"' for c in self.columns)
        with self.conn.cursor() as cur, cur.copy(f'COPY "{self.table}" ({cols}) FROM STDIN') as copy:
            buffer: list[str] = []
            for line in rows:
                buffer.append(line)
                if len(buffer) >= BATCH:
                    copy.write("".join(buffer))
                    done += len(buffer)
                    buffer.clear()
                    rate = done / max(time.monotonic() - started, 1e-6)
                    log(f"big: {label} {done:,}/{total:,} ({rate:,.0f} rows/s, "
                        f"~{(total - done) / rate:.0f} s left)")
            if buffer:
                copy.write("".join(buffer))
                done += len(buffer)
        log(f"big: {label} {done:,} rows in {time.monotonic() - started:.1f} s")


def load(bench: Bench, options: BigOptions) -> dict[str, Any]:
    from apps.notifications.models import Delivery, Notification
    from apps.recipients.models import Recipient
    from apps.templates.models import TemplateVersion

    client = bench.client
    version = TemplateVersion.objects.filter(template__client=client, template__key="bench_welcome").first()
    notifications = max(1, options.deliveries // options.per_notification)
    recipients = max(options.per_notification, min(options.recipients, options.deliveries))
    now = datetime.now(UTC)
    base = now - timedelta(days=30)

    r_cols, r_texts = _row_template(Recipient(client=client, external_id="x", email="big@example.com"))
    n_cols, n_texts = _row_template(Notification(
        client=client, template_version=version, variables={"name": "Bench"}, channels=["email"],
        priority="normal", status="completed", recipient_count=options.per_notification))
    d_cols, d_texts = _row_template(Delivery(
        notification_id=uuid.UUID(int=1), client=client, recipient_id=uuid.UUID(int=1),
        channel="email", priority="normal", status="delivered", template_version=version,
        address="big@example.com", attempts=1, provider="sendgrid", provider_message_id="x",
        sent_at=now, delivered_at=now, completed_at=now))

    def render(columns: list[str], texts: list[str], varying: dict[str, str]) -> str:
        return "\t".join(varying.get(c, t) for c, t in zip(columns, texts, strict=True)) + "\n"

    def fmt(columns: list[str], texts: list[str], names: tuple[str, ...]) -> str:
        # A %-template with named slots for the varying columns (literal % escaped).
        return "\t".join(f"%({c})s" if c in names else t.replace("%", "%%")
                         for c, t in zip(columns, texts, strict=True)) + "\n"

    def when(n: int) -> str:
        return (base + timedelta(seconds=n * 30 * 86_400 / notifications)).isoformat()

    statuses = ["delivered"] * 17 + ["sent", "failed", "bounced"]
    r_fmt = fmt(r_cols, r_texts, ("id", "external_id"))
    n_fmt = fmt(n_cols, n_texts, ("id", "created_at", "updated_at", "completed_at"))
    d_fmt = fmt(d_cols, d_texts, ("id", "notification_id", "recipient_id", "status", "created_at",
                                  "updated_at", "provider_message_id"))
    del render

    conn = psycopg.connect(bench.targets.database_url, autocommit=True)
    timings: dict[str, float] = {}
    try:
        replica = True
        try:
            conn.execute("SET session_replication_role = replica")
        except psycopg.Error:
            replica = False
        conn.execute("SET maintenance_work_mem = '1GB'")
        indexes = [row[0:2] for row in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'notifications_delivery' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()]
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        t0 = time.monotonic()
        _Copy(conn, "recipients_recipient", r_cols).load(
            (r_fmt % {"id": _uuid(1, i), "external_id": f"big{i}"} for i in range(recipients)),
            recipients, "recipients")
        _Copy(conn, "notifications_notification", n_cols).load(
            (n_fmt % {"id": _uuid(2, n), "created_at": (t := when(n)), "updated_at": t,
                      "completed_at": t} for n in range(notifications)),
            notifications, "notifications")
        timings["recipients_and_notifications"] = time.monotonic() - t0
        per = options.per_notification
        total = notifications * per

        def delivery_rows() -> Any:
            for n in range(notifications):
                nid = _uuid(2, n)
                created = when(n)
                first = (n * per) % recipients
                for i in range(per):
                    k = n * per + i
                    yield d_fmt % {"id": _uuid(3, k), "notification_id": nid,
                                   "recipient_id": _uuid(1, (first + i) % recipients),
                                   "status": statuses[k % 20], "created_at": created,
                                   "updated_at": created, "provider_message_id": f"big.{k}"}

        t1 = time.monotonic()
        _Copy(conn, "notifications_delivery", d_cols).load(delivery_rows(), total, "deliveries")
        timings["deliveries_copy"] = time.monotonic() - t1
        t2 = time.monotonic()
        for name, definition in indexes:
            log(f"big: rebuilding index {name}")
            conn.execute(definition)
        timings["deliveries_indexes"] = time.monotonic() - t2
        t3 = time.monotonic()
        log("big: ANALYZE")
        conn.execute("ANALYZE recipients_recipient, notifications_notification, notifications_delivery")
        timings["analyze"] = time.monotonic() - t3
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('notifications_delivery'))"
                            ).fetchone()[0]  # type: ignore[index]
    finally:
        conn.close()
    return {
        "deliveries": total, "notifications": notifications, "recipients": recipients,
        "per_notification": per, "fk_triggers_skipped": replica,
        "indexes_rebuilt": [name for name, _ in indexes], "deliveries_table_size": size,
        "load_seconds": {k: round(v, 1) for k, v in timings.items()} | {
            "total": round(sum(timings.values()), 1)},
        "sample_ids": [_uuid(2, n) for n in random.Random(8).sample(range(notifications),
                                                                     min(options.reads, notifications))],
    }


def _timed_gets(bench: Bench, paths: list[str]) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection(bench.api_host, bench.api_port, timeout=60)
    headers = {"Authorization": f"Bearer {bench.api_key}"}
    times: list[float] = []
    statuses: dict[str, int] = {}
    try:
        for i, path in enumerate([paths[0], *paths]):  # the first one warms up
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if i:
                times.append(elapsed)
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
            last_size = len(body)
    finally:
        conn.close()
    ordered = sorted(times)
    return {"requests": len(times), "statuses": statuses,
            "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
            "max_ms": round(ordered[-1], 1), "last_response_bytes": last_size}


def big_phase(bench: Bench, options: BigOptions) -> dict[str, Any]:
    log(f"big: loading {options.deliveries:,} deliveries "
        f"({options.per_notification} per notification) with COPY")
    loaded = load(bench, options)
    ids = loaded.pop("sample_ids")
    reads: dict[str, Any] = {}
    probe = _timed_gets(bench, [f"/api/v1/notifications/{ids[0]}/deliveries"])
    endpoints = {
        "detail": [f"/api/v1/notifications/{i}" for i in ids],
        "status": [f"/api/v1/notifications/{i}/status" for i in ids],
        "list_filtered": [f"/api/v1/notifications?status={s}&channel=email"
                          for s in ("completed", "failed", "pending", "completed") * (len(ids) // 4 + 1)
                          ][: len(ids)],
    }
    if probe["statuses"].get("404"):
        reads["deliveries"] = {"skipped": "GET /api/v1/notifications/{id}/deliveries answered 404"}
    else:
        endpoints["deliveries"] = [f"/api/v1/notifications/{i}/deliveries" for i in ids]
    for name, paths in endpoints.items():
        log(f"big: timing {len(paths)} GET {name}")
        reads[name] = _timed_gets(bench, paths)
        log(f"big: {name} p50 {reads[name]['p50_ms']} ms, p95 {reads[name]['p95_ms']} ms")
    return {**loaded, "reads": reads}
