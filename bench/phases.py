"""Issue 8's phases, run against the Procfile's process layout (bench/procfile.py):

- single      open-loop single-recipient sends at fixed rates from a separate load generator
              (bench/loadgen.py), then CPU per notification of every process, end to end
- ceiling     the SendGrid SDK alone, from as many threads as the pipeline sends with
- fanout      one bulk request of N items, one send to N inline recipients: 202, first
              message at the provider, all sent, all delivered
- priorities  critical/high single sends while a low/normal backlog drains
- big         (bench/big.py) reads with 10 million deliveries stored

Needs Django set up (imported by the runner after setup)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import OperationalError, connection, transaction

from apps.notifications.providers.conf import provider_setting

from . import procfile
from .processes import (
    REPO_ROOT,
    CpuSnapshot,
    ManagedProcess,
    ProcessError,
    cpu_breakdown,
    log,
)
from .speed import speed_probe_ms

if TYPE_CHECKING:
    from .runner import Bench

FINAL_SQL = "('delivered', 'bounced', 'failed', 'suppressed', 'cancelled')"
SENT_SQL = "('sent', 'delivered', 'bounced')"
# Process groups of the server side (the load generator and the bench itself are not).
STALL_SECONDS = 3.0


@dataclass(frozen=True)
class NewPhaseOptions:
    rates: tuple[float, ...] = (50.0, 150.0, 300.0)
    rate_duration: float = 15.0
    client_timeout: float = 30.0
    ceiling_sends: int = 2000
    fanout: int = 50_000
    backlog: int = 100_000
    priority_rate: float = 4.0  # critical + high sends per second (alternating)
    priority_duration: float = 30.0
    tracing_rate: float = 50.0  # tracing: requests per second of each of its three runs
    tracing_duration: float = 15.0
    timeout: float = 900.0  # per wait in these phases
    # streams (bench/streams.py)
    streams: int = 5000
    stream_rate: float = 100.0  # in-app messages per second
    stream_batch: int = 10  # recipients per in-app request
    stream_duration: float = 20.0
    stream_api_rate: float = 20.0  # single sends per second for the API latency comparison
    stream_api_duration: float = 15.0
    stream_connect_concurrency: int = 200


# -- the Procfile's workers ----------------------------------------------------------------


def _ready_check(proc: ManagedProcess) -> Callable[[], bool]:
    return lambda: " ready." in proc.log_text()


class Stack:
    """The Procfile's Celery workers and beat (gunicorn is the bench's, also from the Procfile)."""

    def __init__(self, env: dict[str, str], workdir: Path, entries: list[procfile.Entry]) -> None:
        self.env = env
        self.workdir = workdir
        self.entries = entries
        self.procs: dict[str, ManagedProcess] = {}

    def start(self, timeout: float) -> None:
        tag = str(os.getpid())
        for entry in self.entries:
            if entry.kind == "worker":
                cmd = procfile.worker_command(entry, tag=tag)
            elif entry.kind == "beat":
                cmd = procfile.beat_command(entry, schedule_dir=self.workdir)
            else:
                continue
            log(f"starting {entry.name}: {' '.join(cmd[2:])}")
            self.procs[entry.name] = ManagedProcess(entry.name, cmd, self.env).start()
        for entry in self.entries:
            proc = self.procs.get(entry.name)
            if proc is None:
                continue
            if entry.kind == "worker":
                proc.wait_ready(_ready_check(proc), timeout=timeout)
            else:
                time.sleep(0.5)
                if not proc.alive():
                    raise ProcessError(f"{entry.name} exited at start:\n{proc.log_tail()}")

    def stop(self) -> None:
        for name, proc in list(self.procs.items()):
            log(f"stopping {name}")
            proc.stop()
        self.procs.clear()

    def groups(self) -> dict[str, int | None]:
        return {name: proc.pid for name, proc in self.procs.items() if proc.alive()}

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": e.name, "kind": e.kind, "queues": list(e.queues),
                 "concurrency": e.concurrency} for e in self.entries if e.kind in ("worker", "beat")]


# -- database and sandbox helpers ------------------------------------------------------------


def truncate_notifications(attempts: int = 20) -> None:
    """Empties the notification tables between phases. The Procfile's workers and beat keep
    running (the sweeper reads these tables), so TRUNCATE's exclusive locks may lose a race:
    it waits at most 2 s for them and is tried again."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
                cursor.execute("TRUNCATE notifications_deliveryevent, notifications_delivery, "
                               "notifications_notification CASCADE")
            return
        except OperationalError as exc:  # lock timeout, or chosen as a deadlock's victim
            if attempt == attempts:
                raise
            log(f"truncate lost a lock race ({str(exc).splitlines()[0]}); trying again")
            time.sleep(0.5)


def delivery_totals(where: str = "TRUE", params: list[Any] | None = None) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status IN {SENT_SQL}), "
            f"count(*) FILTER (WHERE status IN {FINAL_SQL}), "
            "count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'failed') "
            f"FROM notifications_delivery WHERE {where}", params or [])
        total, sent, final, delivered, failed = cursor.fetchone()
    return {"total": int(total), "sent": int(sent), "final": int(final),
            "delivered": int(delivered), "failed": int(failed)}


def notification_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_notification")
        return int(cursor.fetchone()[0])


def status_counts(where: str = "TRUE", params: list[Any] | None = None) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status, count(*) FROM notifications_delivery WHERE {where} "
                       "GROUP BY status ORDER BY status", params or [])
        return {str(s): int(n) for s, n in cursor.fetchall()}


def callback_answers(stats: dict[str, Any]) -> dict[str, int]:
    callbacks = stats.get("callbacks", {})
    return {key.removeprefix("answers_"): int(value) for key, value in callbacks.items()
            if key.startswith("answers_")}


def wait_all_final(bench: Bench, *, label: str, deadline: float, minimum: int = 0) -> dict[str, Any]:
    """Until every delivery in the table is final and the table stopped growing (requests a
    client timed out on may still be accepted meanwhile). Gives up on receipts when only
    `sent` deliveries are left and the sandbox has had no callback to send for a while."""
    last_total = -1
    stable_since: float | None = None
    idle_since: float | None = None
    last_log = 0.0
    while True:
        now = time.monotonic()
        totals = delivery_totals()
        if totals["total"] >= minimum and totals["final"] == totals["total"]:
            if totals["total"] == last_total:
                stable_since = stable_since or now
                if now - stable_since >= 1.0:
                    return {**totals, "without_final_receipt": 0, "seen_at": now}
            else:
                stable_since = None
        else:
            stable_since = None
        if totals["total"] >= minimum and totals["sent"] + totals["failed"] >= totals["total"]:
            pending = int(bench.sandbox.stats()["callbacks"]["pending"])
            if pending:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= STALL_SECONDS:
                log(f"{label}: {totals['total'] - totals['final']} deliveries wait for a receipt "
                    "the sandbox no longer has to send; giving up on them")
                return {**totals, "without_final_receipt": totals["total"] - totals["final"],
                        "seen_at": now}
        last_total = totals["total"]
        if now - last_log >= 3.0:
            log(f"{label}: {totals['sent']}/{totals['total']} sent, "
                f"{totals['delivered']} delivered, {totals['failed']} failed")
            last_log = now
        if now > deadline:
            raise RuntimeError(f"{label}: timed out waiting for deliveries: {status_counts()}")
        time.sleep(0.25)


SERVER_KINDS = ("api", "workers", "beat", "postgres", "redis", "sandbox")


def cpu_report(bench: Bench, stack: Stack, start: CpuSnapshot, end: CpuSnapshot, *,
               notifications: int, sends: int, extra_groups: dict[str, int] | None = None,
               extra_cpu: dict[str, float] | None = None) -> dict[str, Any]:
    """CPU seconds of every process between the snapshots, per notification (ms), the
    server total, `api_cpu_ms_per_send` and `server_cpu_ms_per_notification`."""
    assert bench.gunicorn is not None
    groups: dict[str, int | None] = {"api": bench.gunicorn.pid, **stack.groups(),
                                     "sandbox": bench.sandbox.proc.pid if bench.sandbox.proc else None}
    groups.update(extra_groups or {})
    seconds = cpu_breakdown(start, end, groups, {"bench_process": os.getpid()},
                            db_name=bench.targets.db_name, postmaster=bench.postmaster_pid,
                            redis_url=bench.targets.redis_url)
    seconds.update(extra_cpu or {})
    worker_names = [e.name for e in stack.entries if e.kind == "worker"]
    beat_names = [e.name for e in stack.entries if e.kind == "beat"]
    server = {
        "api": seconds.get("api", 0.0),
        **{name: seconds.get(name, 0.0) for name in worker_names + beat_names},
        "postgres": seconds.get("postgres_bench_db", 0.0),
        "redis": seconds.get("redis_server", 0.0),
        "sandbox": seconds.get("sandbox", 0.0),
    }
    total = sum(server.values())
    n = max(notifications, 1)
    per_notification = {name: round(value * 1000 / n, 2) for name, value in server.items()}
    per_notification["total"] = round(total * 1000 / n, 2)
    return {
        "cpu_seconds": seconds,
        "server_cpu_seconds": round(total, 2),
        "cpu_ms_per_notification": per_notification,
        "api_cpu_ms_per_send": round(server["api"] * 1000 / max(sends, 1), 2) if sends else None,
        "server_cpu_ms_per_notification": round(total * 1000 / n, 2) if notifications else None,
    }


def _run_loadgen(bench: Bench, *, rate: float, duration: float, timeout: float, prefix: str,
                 priorities: str = "normal", records: bool = False) -> tuple[dict[str, Any], float, int]:
    """Runs the load generator in its own process; returns its JSON, its CPU seconds (from
    wait4's rusage) and its pid."""
    cmd = [sys.executable, "-m", "bench.loadgen", "--url", bench.api_base_url, "--key", bench.api_key,
           "--rate", str(rate), "--duration", str(duration), "--timeout", str(timeout),
           "--prefix", prefix, "--priorities", priorities]
    if records:
        cmd.append("--records")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): "
                           f"{b''.join(err_chunks).decode()[-2000:]}")
    return json.loads(b"".join(out_chunks)), usage.ru_utime + usage.ru_stime, proc.pid


# -- phases ----------------------------------------------------------------------------------


def single_phase(bench: Bench, stack: Stack, opts: NewPhaseOptions) -> dict[str, Any]:
    rates = [_single_rate(bench, stack, opts, rate=rate, prefix=f"s{index}-")
             for index, rate in enumerate(opts.rates)]
    first = rates[0] if rates else {}
    return {
        "rates": rates,
        # From the lowest rate (the server is not saturated there).
        "api_cpu_ms_per_send": first.get("api_cpu_ms_per_send"),
        "server_cpu_ms_per_notification": first.get("server_cpu_ms_per_notification"),
        "callback_answers_5xx": sum(r["callback_answers_5xx"] for r in rates),
    }


def _single_rate(bench: Bench, stack: Stack, opts: NewPhaseOptions, *, rate: float,
                 prefix: str, duration: float | None = None) -> dict[str, Any]:
    """Open-loop single-recipient sends at `rate` for `duration` (opts.rate_duration), until
    every delivery is final; latency, and CPU of every process per notification."""
    duration = opts.rate_duration if duration is None else duration
    speed = speed_probe_ms()  # how fast the machine is right now (bench/speed.py)
    bench.sandbox.reset()
    before_notifications = notification_count()
    before = delivery_totals()
    cpu_before = CpuSnapshot.take()
    log(f"single: {rate:g} req/s for {duration:g} s (open loop, timeout "
        f"{opts.client_timeout:g} s)")
    load, loadgen_cpu, _ = _run_loadgen(bench, rate=rate, duration=duration,
                                        timeout=opts.client_timeout, prefix=prefix)
    log(f"single {rate:g}/s: p50 {load['latency_ms']['p50']} ms, p95 {load['latency_ms']['p95']} "
        f"ms, p99 {load['latency_ms']['p99']} ms, errors {load['errors']}")
    waited = wait_all_final(bench, label=f"single {rate:g}/s",
                            deadline=time.monotonic() + opts.timeout)
    cpu_after = CpuSnapshot.take()
    notifications = notification_count() - before_notifications
    # Per send the server handled: a request the client timed out on was still accepted.
    cpu = cpu_report(bench, stack, cpu_before, cpu_after, notifications=notifications,
                     sends=notifications, extra_cpu={"loadgen": round(loadgen_cpu, 2)})
    stats = bench.sandbox.stats()
    answers = callback_answers(stats)
    result = {
        **{k: load[k] for k in ("rate", "duration_s", "sent", "accepted", "achieved_rate",
                                "scheduler_max_lag_ms", "latency_ms", "errors", "error_count")},
        "notifications_created": notifications,
        "deliveries": waited["total"] - before["total"],
        "deliveries_final": waited["final"] - before["final"],
        "delivered": waited["delivered"] - before["delivered"],
        "without_final_receipt": waited["without_final_receipt"],
        "seconds_until_all_delivered": round(waited["seen_at"] - cpu_before.wall, 2),
        "speed_probe_ms": speed,
        **cpu,
        "callback_answers": answers,
        "callback_answers_5xx": answers.get("5xx", 0),
    }
    log(f"single {rate:g}/s: API {cpu['api_cpu_ms_per_send']} ms CPU per send, server "
        f"{cpu['server_cpu_ms_per_notification']} ms CPU per notification")
    return result


class OtlpSink:
    """A local OTLP/HTTP collector that takes every export (200) and counts it: the spans are
    built, batched, encoded and posted, as they would be to a real collector."""

    def __init__(self) -> None:
        import http.server
        import threading

        sink = self
        self.requests = 0
        self.bytes = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sink.bytes += len(self.rfile.read(length))
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="otlp-sink").start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# (label, OTEL_* variables) of the tracing phase's runs; the endpoint is the sink's.
TRACING_RUNS: tuple[tuple[str, dict[str, str]], ...] = (
    ("off", {}),
    ("on_100", {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}),
    ("on_10", {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
)


def tracing_phase(bench: Bench, stack: Stack, opts: NewPhaseOptions) -> dict[str, Any]:
    """The single-send phase at one rate, three times in one run: tracing off, on with every
    trace sampled, on at 10 % (`parentbased_traceidratio`); gunicorn and the Procfile's
    workers restarted with the OTEL_* variables of each, exporting OTLP/HTTP to a local sink.
    CPU per message of every process, and the differences to `off`."""
    sink = OtlpSink()
    base_env = dict(stack.env)
    out: dict[str, Any] = {"rate": opts.tracing_rate, "duration_s": opts.tracing_duration,
                           "runs": {}}
    try:
        for label, variables in TRACING_RUNS:
            env = dict(base_env)
            if label != "off":
                env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
                            "OTEL_BSP_SCHEDULE_DELAY": "1000", **variables})
            log(f"tracing: {label}: restarting gunicorn and the workers")
            stack.stop()
            bench.restart_gunicorn(env)
            stack.env = env
            stack.start(timeout=opts.timeout)
            exports_before = sink.requests
            result = _single_rate(bench, stack, opts, rate=opts.tracing_rate,
                                  duration=opts.tracing_duration, prefix=f"t{label}-")
            result["otlp_exports"] = sink.requests - exports_before
            out["runs"][label] = result
    finally:
        stack.stop()
        bench.restart_gunicorn(base_env)
        stack.env = base_env
        stack.start(timeout=opts.timeout)
        sink.close()
    off = out["runs"].get("off", {})
    for label, result in out["runs"].items():
        if label == "off":
            continue
        out[f"{label}_extra_ms"] = {
            key: round(result[key] - off[key], 2)
            for key in ("api_cpu_ms_per_send", "server_cpu_ms_per_notification")
            if result.get(key) is not None and off.get(key) is not None}
        per = result.get("cpu_ms_per_notification", {})
        base = off.get("cpu_ms_per_notification", {})
        out[f"{label}_extra_ms"]["by_process"] = {
            name: round(per[name] - base.get(name, 0.0), 2) for name in per}
    return out


def ceiling_phase(bench: Bench, stack: Stack, opts: NewPhaseOptions) -> dict[str, Any]:
    from django.conf import settings

    from .ceiling import measure_ceiling

    processes = procfile.processes_for_queue(stack.entries, "normal") or 1
    threads = int(settings.DISPATCH_CONCURRENCY)
    bench.sandbox.reset()
    log(f"ceiling: {opts.ceiling_sends} SendGrid SDK calls from {processes} process(es) x "
        f"{threads} thread(s), nothing else")
    result = measure_ceiling(host=bench.sandbox.url, api_key=str(provider_setting("SENDGRID_API_KEY")),
                             processes=processes, threads=threads, total=opts.ceiling_sends)
    stats = bench.sandbox.stats()
    result["sandbox_accepted"] = stats.get("accepted")
    result["threads_source"] = ("DISPATCH_CONCURRENCY x pool size of the Procfile workers "
                                "consuming the `normal` queue")
    log(f"ceiling: {result['sends_per_second']} sends/s")
    bench.sandbox.reset()  # its receipts are for no delivery of ours
    return result


def _post(bench: Bench, path: str, body: bytes, timeout: float) -> tuple[int, bytes, float, float]:
    """(status, body, seconds, epoch when the answer arrived)."""
    conn = http.client.HTTPConnection(bench.api_host, bench.api_port, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request("POST", path, body=body, headers={
            "Authorization": f"Bearer {bench.api_key}", "Content-Type": "application/json",
            "Content-Length": str(len(body))})
        response = conn.getresponse()
        raw = response.read()
        return response.status, raw, time.perf_counter() - started, time.time()
    finally:
        conn.close()


def server_errors(bench: Bench, lines: int = 40) -> list[str]:
    """The end of gunicorn's log from its last traceback or error line on (no request bodies
    are logged there; error messages name no addresses)."""
    text = bench.gunicorn.log_text().splitlines() if bench.gunicorn else []
    starts = [i for i, line in enumerate(text) if "Traceback" in line or " ERROR " in line]
    return text[starts[-1]:][:lines] if starts else text[-10:]


def _sandbox_accepted(bench: Bench) -> int:
    return int(bench.sandbox.stats().get("by_provider", {}).get("sendgrid", {}).get("accepted", 0))


def _fanout_one(bench: Bench, *, label: str, path: str, body: bytes, count: int,
                deadline: float) -> dict[str, Any]:
    bench.sandbox.reset()
    base_accepted = _sandbox_accepted(bench)
    answer: dict[str, Any] = {}

    def post() -> None:
        try:
            status, raw, seconds, _ = _post(bench, path, body, timeout=max(deadline - time.monotonic(), 1))
            answer.update(status=status, raw=raw, seconds=seconds, at=time.monotonic())
        except Exception as exc:
            answer.update(error=repr(exc), at=time.monotonic())

    log(f"{label}: POST {path} with {count} recipients ({len(body) / 1e6:.1f} MB)")
    t0 = time.monotonic()
    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    first_seen = all_sent = None
    last_log = 0.0
    while True:
        now = time.monotonic()
        accepted = _sandbox_accepted(bench) - base_accepted
        if first_seen is None and accepted > 0:
            first_seen = now
        if all_sent is None and accepted >= count:
            all_sent = now
            break
        if "error" in answer or ("status" in answer and answer["status"] != 202):
            break
        if now - last_log >= 3.0:
            answered = f"202 after {answer['seconds']:.2f} s, " if "seconds" in answer else ""
            log(f"{label}: {answered}{accepted}/{count} at the provider")
            last_log = now
        if now > deadline:
            raise RuntimeError(f"{label}: timed out with {accepted}/{count} at the provider")
        time.sleep(0.02 if first_seen is None else 0.25)
    thread.join()
    if "error" in answer or answer.get("status") != 202:
        # Reported, not raised: what the failed request left behind is measured too (a client
        # would retry a 5xx; were its deliveries sent anyway?).
        problem = answer.get("error") or f"HTTP {answer.get('status')}: {(answer.get('raw') or b'')[:300]!r}"
        log(f"{label}: POST failed after {answer['at'] - t0:.1f} s: {problem}")
        waited = wait_all_final(bench, label=label, deadline=deadline)
        sent = _sandbox_accepted(bench) - base_accepted
        return {"recipients": count, "error": problem,
                "seconds_to_answer": round(answer["at"] - t0, 3),
                "deliveries_written": waited["total"], "sent_anyway": sent,
                "delivered_anyway": waited["delivered"],
                "server_log": server_errors(bench),
                "callback_answers_5xx": callback_answers(bench.sandbox.stats()).get("5xx", 0)}
    waited = wait_all_final(bench, label=label, deadline=deadline, minimum=count)
    t202 = answer["at"]
    answers = callback_answers(bench.sandbox.stats())
    assert first_seen is not None and all_sent is not None
    return {
        "recipients": count,
        "request_mb": round(len(body) / 1e6, 2),
        "seconds_to_202": round(answer["seconds"], 3),
        # Polled from the sandbox every 20 ms (negative: sent before the 202 reached us).
        "seconds_202_to_first_at_provider": round(first_seen - t202, 3),
        "seconds_202_to_all_sent": round(all_sent - t202, 3),
        "seconds_202_to_all_delivered": round(waited["seen_at"] - t202, 3),
        "seconds_request_to_all_sent": round(all_sent - t0, 3),
        "sent_per_second_after_202": round(count / (all_sent - t202), 1) if all_sent > t202 else None,
        # From the first message at the provider (which may precede the 202) to the last.
        "sent_per_second": round(count / (all_sent - first_seen), 1) if all_sent > first_seen else None,
        "delivered": waited["delivered"],
        "failed": waited["failed"],
        "without_final_receipt": waited["without_final_receipt"],
        "callback_answers": answers,
        "callback_answers_5xx": answers.get("5xx", 0),
    }


def fanout_phase(bench: Bench, stack: Stack, opts: NewPhaseOptions) -> dict[str, Any]:
    from .runner import TEMPLATE_KEY, VARIABLES

    count = opts.fanout
    truncate_notifications()
    items = [{"recipients": [{"id": f"fb{i}", "email": f"fb{i}@example.com"}],
              "template_id": TEMPLATE_KEY, "variables": VARIABLES} for i in range(count)]
    bulk = _fanout_one(bench, label=f"fanout bulk {count}", path="/api/v1/notifications/bulk",
                       body=json.dumps({"notifications": items}).encode(), count=count,
                       deadline=time.monotonic() + opts.timeout)
    truncate_notifications()
    recipients = [{"id": f"fs{i}", "email": f"fs{i}@example.com"} for i in range(count)]
    send = _fanout_one(bench, label=f"fanout send {count}", path="/api/v1/notifications",
                       body=json.dumps({"recipients": recipients, "template_id": TEMPLATE_KEY,
                                        "variables": VARIABLES, "priority": "normal"}).encode(),
                       count=count, deadline=time.monotonic() + opts.timeout)
    truncate_notifications()
    return {"recipients": count, "bulk": bulk, "send": send,
            "callback_answers_5xx": bulk["callback_answers_5xx"] + send["callback_answers_5xx"]}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 1)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def priorities_phase(bench: Bench, stack: Stack, opts: NewPhaseOptions) -> dict[str, Any]:
    from django.conf import settings

    from .runner import TEMPLATE_KEY, VARIABLES

    truncate_notifications()
    bench.sandbox.reset()
    # At least two requests (one normal, one low), at most 50,000 recipients each.
    per_request = max(1, min(int(settings.MAX_RECIPIENTS_PER_REQUEST), 50_000, -(-opts.backlog // 2)))
    log(f"priorities: accepting a {opts.backlog}-delivery low/normal backlog through "
        f"POST /api/v1/notifications ({per_request} inline recipients per request)")
    t0 = time.monotonic()
    accepted = 0
    part = 0
    while accepted < opts.backlog:
        n = min(per_request, opts.backlog - accepted)
        priority = ("normal", "low")[part % 2]
        keys = range(accepted, accepted + n)
        body = json.dumps({"recipients": [{"id": f"pb{k}", "email": f"pb{k}@example.com"} for k in keys],
                           "template_id": TEMPLATE_KEY, "variables": VARIABLES,
                           "priority": priority}).encode()
        status, raw, seconds, _ = _post(bench, "/api/v1/notifications", body, timeout=600)
        if status != 202:
            raise RuntimeError(f"priorities: backlog send -> HTTP {status}: {raw[:300]!r}")
        log(f"priorities: {n} {priority} accepted in {seconds:.1f} s")
        accepted += n
        part += 1
    accept_seconds = time.monotonic() - t0
    backlog_where = "priority IN ('low', 'normal')"
    at_start = delivery_totals(backlog_where)
    cpu_t0 = time.monotonic()
    log(f"priorities: critical/high sends at {opts.priority_rate:g}/s for "
        f"{opts.priority_duration:g} s while the backlog drains ({at_start['sent']} sent so far)")
    load, _, _ = _run_loadgen(bench, rate=opts.priority_rate, duration=opts.priority_duration,
                              timeout=30.0, prefix="pr", priorities="critical,high", records=True)
    ids = [r["id"] for r in load["records"]]
    deadline = time.monotonic() + min(opts.timeout, 120)
    urgent_where = "notification_id = ANY(%s::uuid[])"
    while True:
        urgent = delivery_totals(urgent_where, [ids])
        if urgent["sent"] + urgent["failed"] >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    at_end = delivery_totals(backlog_where)
    window = time.monotonic() - cpu_t0
    # The sandbox's receive time of each message (sent = handed to the provider); the
    # delivery's sent_at where the sandbox has none.
    with connection.cursor() as cursor:
        cursor.execute("SELECT notification_id::text, extract(epoch FROM sent_at) "
                       "FROM notifications_delivery WHERE notification_id = ANY(%s::uuid[])", [ids])
        sent_at = {nid: float(ts) if ts is not None else None for nid, ts in cursor.fetchall()}
    latencies: dict[str, list[float]] = {"critical": [], "high": []}
    sources = {"sandbox": 0, "sent_at": 0, "missing": 0}
    for record in load["records"]:
        found = bench.sandbox.messages(custom_args={"notifyhub_notification_id": record["id"]})
        if found:
            sent = _epoch(found[0]["received_at"])
            sources["sandbox"] += 1
        elif sent_at.get(record["id"]) is not None:
            sent = sent_at[record["id"]]  # type: ignore[assignment]
            sources["sent_at"] += 1
        else:
            sources["missing"] += 1
            continue
        latencies[record["priority"]].append((sent - record["accepted_at"]) * 1000)
    answers = callback_answers(bench.sandbox.stats())
    result = {
        "backlog": opts.backlog,
        "backlog_method": f"api: POST /api/v1/notifications with {per_request} inline recipients "
                          "per request, alternating normal/low",
        "backlog_accept_seconds": round(accept_seconds, 2),
        "backlog_sent_at_window_start": at_start["sent"],
        "backlog_sent_at_window_end": at_end["sent"],
        "backlog_drained_in_window": at_end["sent"] - at_start["sent"],
        "window_seconds": round(window, 2),
        "backlog_sent_per_second_in_window": round((at_end["sent"] - at_start["sent"]) / window, 1)
        if window > 0 else None,
        "urgent_rate": opts.priority_rate,
        "urgent_sends": load["sent"],
        "urgent_accepted": load["accepted"],
        "urgent_accept_latency_ms": load["latency_ms"],
        "urgent_errors": load["errors"],
        "urgent_not_sent": len(ids) - sum(len(v) for v in latencies.values()),
        "sent_time_source": sources,
        "critical": {"sends": len(latencies["critical"]),
                     "accept_to_sent_ms": {"p50": _percentile(latencies["critical"], 0.5),
                                           "p95": _percentile(latencies["critical"], 0.95),
                                           "p99": _percentile(latencies["critical"], 0.99)}},
        "high": {"sends": len(latencies["high"]),
                 "accept_to_sent_ms": {"p50": _percentile(latencies["high"], 0.5),
                                       "p95": _percentile(latencies["high"], 0.95),
                                       "p99": _percentile(latencies["high"], 0.99)}},
        "callback_answers": answers,
        "callback_answers_5xx": answers.get("5xx", 0),
    }
    log(f"priorities: critical p50/p99 {result['critical']['accept_to_sent_ms']['p50']}/"
        f"{result['critical']['accept_to_sent_ms']['p99']} ms, high p50/p95 "
        f"{result['high']['accept_to_sent_ms']['p50']}/{result['high']['accept_to_sent_ms']['p95']} ms; "
        f"{result['backlog_drained_in_window']} of the backlog sent meanwhile")
    return result


PhaseFn = Callable[["Bench", Stack, NewPhaseOptions], dict[str, Any]]
