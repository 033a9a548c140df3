"""`--big`: reads with 10 million deliveries stored.

Loads notifications, recipients and deliveries with COPY straight into the bench database
(no API, no workers), then VACUUM ANALYZE, then times GET /api/v1/notifications/{id}, …/status,
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

import dataclasses
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
    # Keep a bench database that already holds this load (no drop, no COPY): --big-reuse.
    reuse: bool = False
    # Another checkout's code (a directory): its gunicorn is timed too, on the same rows,
    # in blocks interleaved with this tree's (--big-compare-root).
    compare_root: str | None = None

    @property
    def notifications(self) -> int:
        return max(1, self.deliveries // self.per_notification)


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
    notifications = options.notifications
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
    # The counts the status refresh stores on a finished notification (status.py), so the
    # reads find them as they would in production (no aggregate per request).
    n_fmt = fmt(n_cols, n_texts, ("id", "created_at", "updated_at", "completed_at", "counts",
                                  "counts_at"))
    per = options.per_notification

    def counts(n: int) -> str:
        tally: dict[str, int] = {}
        for k in range(n * per, n * per + per):
            tally[statuses[k % 20]] = tally.get(statuses[k % 20], 0) + 1
        return _text(dict(sorted(tally.items())))

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
                      "completed_at": t, "counts": counts(n), "counts_at": t}
             for n in range(notifications)),
            notifications, "notifications")
        timings["recipients_and_notifications"] = time.monotonic() - t0
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
        # VACUUM too: the visibility map autovacuum would set soon after such a load (index-only
        # scans read it), set now rather than by an autovacuum running during the timings.
        log("big: VACUUM ANALYZE")
        conn.execute("VACUUM (ANALYZE) recipients_recipient, notifications_notification, "
                     "notifications_delivery")
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
        "sample_ids": _sample_ids(options),
    }


def _sample_ids(options: BigOptions) -> list[str]:
    notifications = options.notifications
    return [_uuid(2, n) for n in random.Random(8).sample(range(notifications),
                                                         min(options.reads, notifications))]


def reusable(database_url: str, options: BigOptions) -> bool:
    """Whether the bench database already holds this load (its last notification and
    delivery exist, and as many deliveries as asked): then --big-reuse keeps it."""
    last_notification = _uuid(2, options.notifications - 1)
    last_delivery = _uuid(3, options.notifications * options.per_notification - 1)
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM notifications_notification WHERE id = %s), "
                "EXISTS (SELECT 1 FROM notifications_delivery WHERE id = %s), "
                "NOT EXISTS (SELECT 1 FROM notifications_delivery WHERE id = %s)",
                [last_notification, last_delivery,
                 _uuid(3, options.notifications * options.per_notification)]).fetchone()
    except psycopg.Error:
        return False
    return bool(row and all(row))


def reused(bench: Bench, options: BigOptions) -> dict[str, Any]:
    """What `load` reports, for a database kept from an earlier run."""
    conn = psycopg.connect(bench.targets.database_url, autocommit=True)
    try:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM notifications_notification "
                        "WHERE counts_at IS NULL)").fetchone()[0]:  # type: ignore[index]
            # Loaded before the loader wrote the counts the status refresh stores.
            log("big: storing the counts of the kept notifications (once)")
            conn.execute(
                "UPDATE notifications_notification n SET counts = c.counts, "
                "counts_at = n.completed_at FROM (SELECT notification_id, "
                "jsonb_object_agg(status, k) AS counts FROM (SELECT notification_id, status, "
                "count(*) AS k FROM notifications_delivery GROUP BY 1, 2) s GROUP BY 1) c "
                "WHERE c.notification_id = n.id AND n.counts_at IS NULL")
        # As the load leaves it (and as autovacuum would): the visibility map set.
        conn.execute("VACUUM (ANALYZE) recipients_recipient, notifications_notification, "
                     "notifications_delivery")
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('notifications_delivery'))"
                            ).fetchone()[0]  # type: ignore[index]
        recipients = conn.execute("SELECT count(*) FROM recipients_recipient").fetchone()[0]  # type: ignore[index]
    finally:
        conn.close()
    return {
        "deliveries": options.notifications * options.per_notification,
        "notifications": options.notifications, "recipients": recipients,
        "per_notification": options.per_notification, "reused": True,
        "deliveries_table_size": size, "sample_ids": _sample_ids(options),
    }


WARM_UP = 10  # untimed requests per server and endpoint (statements get prepared after 5)
BLOCK = 20  # timed requests per server in a row, servers alternating


@dataclass
class _Server:
    """A gunicorn the reads are timed against: this tree's, or --big-compare-root's."""

    label: str
    port: int
    root_pid: int | None
    times: list[float] = dataclasses.field(default_factory=list)
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    cpu_web: float = 0.0
    cpu_db: float = 0.0
    last_size: int = 0


def _get(conn: Any, path: str, api_key: str) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {api_key}"})
    response = conn.getresponse()
    body = response.read()
    return response.status, body, (time.perf_counter() - started) * 1000


def _timed_gets(bench: Bench, servers: list[_Server], paths: list[str]) -> dict[str, Any]:
    """Each path once per server (after WARM_UP untimed ones), in blocks of BLOCK requests
    alternating between the servers so that the machine's noise falls on both alike; the CPU
    of each server's process tree and of the bench database's PostgreSQL backends is taken
    around each block."""
    import http.client

    from .processes import CpuSnapshot

    conns = {s.label: http.client.HTTPConnection(bench.api_host, s.port, timeout=60)
             for s in servers}
    try:
        for server in servers:
            for path in (paths * WARM_UP)[:WARM_UP]:
                _get(conns[server.label], path, bench.api_key)
            server.times, server.statuses, server.cpu_web, server.cpu_db = [], {}, 0.0, 0.0
        for first in range(0, len(paths), BLOCK):
            for server in servers:
                # A fresh keep-alive connection per block (gunicorn closes one idle for 2 s,
                # as it may be while the other server's block runs on a busy machine), opened
                # by an untimed request.
                conns[server.label].close()
                conns[server.label] = http.client.HTTPConnection(bench.api_host, server.port,
                                                                 timeout=60)
                _get(conns[server.label], "/api/v1/ready", bench.api_key)
                before = CpuSnapshot.take()
                for path in paths[first:first + BLOCK]:
                    status, body, elapsed = _get(conns[server.label], path, bench.api_key)
                    server.times.append(elapsed)
                    server.statuses[str(status)] = server.statuses.get(str(status), 0) + 1
                    server.last_size = len(body)
                web, db = _cpu(bench, before, CpuSnapshot.take(), server.root_pid)
                server.cpu_web += web
                server.cpu_db += db
    finally:
        for conn in conns.values():
            conn.close()
    out: dict[str, Any] = {}
    for server in servers:
        ordered = sorted(server.times)
        count = len(ordered)
        out[server.label] = {
            "requests": count, "statuses": server.statuses,
            "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(count - 1, round(0.95 * (count - 1)))], 1),
            "max_ms": round(ordered[-1], 1), "last_response_bytes": server.last_size,
            # /proc's clock ticks are 10 ms: summed over the blocks, per request.
            "cpu_ms_per_request": {"web": round(server.cpu_web * 1000 / count, 2),
                                   "postgres": round(server.cpu_db * 1000 / count, 2)},
        }
    return out


def _cpu(bench: Bench, before: Any, after: Any, web_root: int | None) -> tuple[float, float]:
    """CPU seconds between two snapshots of the gunicorn tree at `web_root` and of the
    backends serving the bench database under the bench's own PostgreSQL server (not other
    servers' databases of the same name, nor its background processes)."""
    from .processes import _descendants

    def used(pids: set[int]) -> float:
        return sum(after.table[p].cpu - (before.table[p].cpu if p in before.table else 0.0)
                   for p in pids if p in after.table)

    web = used(_descendants(after.table, web_root)) if web_root is not None else 0.0
    marker = f" {bench.targets.db_name} "
    backends: set[int] = set()
    if bench.postmaster_pid is not None:
        backends = {p for p in _descendants(after.table, bench.postmaster_pid)
                    if marker in after.table[p].title}
    return web, used(backends)


def _compare_gunicorn(bench: Bench, root: str) -> Any:
    """The Procfile's gunicorn run from another checkout's directory (its code, this
    environment), on a free port."""
    from tests.support.sandbox import free_port

    from . import procfile
    from .processes import ManagedProcess, http_ok

    port = free_port()
    cmd = procfile.web_command(procfile.web_entry(bench.procfile), port=port)
    log(f"big: starting a second gunicorn from {root} on 127.0.0.1:{port}")
    process = ManagedProcess("gunicorn-compare", cmd, bench.child_env, cwd=root).start()
    process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/api/v1/ready"), timeout=60)
    return process, port


def big_phase(bench: Bench, options: BigOptions) -> dict[str, Any]:
    if getattr(bench, "big_reused", False):
        log(f"big: reusing the {options.deliveries:,} deliveries already loaded (--big-reuse)")
        loaded = reused(bench, options)
    else:
        log(f"big: loading {options.deliveries:,} deliveries "
            f"({options.per_notification} per notification) with COPY")
        loaded = load(bench, options)
    ids = loaded.pop("sample_ids")
    assert bench.gunicorn is not None
    servers = [_Server("this", bench.api_port, bench.gunicorn.pid)]
    compare = None
    if options.compare_root:
        compare, port = _compare_gunicorn(bench, options.compare_root)
        servers.append(_Server("compare", port, compare.pid))
    reads: dict[str, Any] = {}
    compared: dict[str, Any] = {}
    try:
        probe = _timed_gets(bench, servers[:1], [f"/api/v1/notifications/{ids[0]}/deliveries"])
        endpoints = {
            "detail": [f"/api/v1/notifications/{i}" for i in ids],
            "status": [f"/api/v1/notifications/{i}/status" for i in ids],
            "list_filtered": [f"/api/v1/notifications?status={s}&channel=email"
                              for s in ("completed", "failed", "pending", "completed")
                              * (len(ids) // 4 + 1)][: len(ids)],
        }
        if probe["this"]["statuses"].get("404"):
            reads["deliveries"] = {"skipped": "GET /api/v1/notifications/{id}/deliveries answered 404"}
        else:
            endpoints["deliveries"] = [f"/api/v1/notifications/{i}/deliveries" for i in ids]
        for name, paths in endpoints.items():
            log(f"big: timing {len(paths)} GET {name}" + (" on both servers" if compare else ""))
            timed = _timed_gets(bench, servers, paths)
            reads[name] = timed["this"]
            if compare is not None:
                compared[name] = timed["compare"]
            log(f"big: {name} p50 {reads[name]['p50_ms']} ms, p95 {reads[name]['p95_ms']} ms, "
                f"CPU/request {reads[name]['cpu_ms_per_request']}" + (
                    f"; compared tree p50 {compared[name]['p50_ms']} ms, p95 "
                    f"{compared[name]['p95_ms']} ms, CPU/request "
                    f"{compared[name]['cpu_ms_per_request']}" if compare else ""))
    finally:
        if compare is not None:
            compare.stop()
    result = {**loaded, "reads": reads}
    if compare is not None:
        result["compare"] = {"root": options.compare_root, "reads": compared}
    return result
