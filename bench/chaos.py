"""`python -m bench.chaos [--scale ci|full]` (`make chaos`): the fault scenarios of issue 9 on
the real stack, with a loss checker.

The stack is started the way `make run` starts it: the Procfile's web, workers and beat under
supervisord (the configuration from scripts/supervisord_conf.py), against a PostgreSQL cluster
and a Redis server of the harness's own (initialised in a temporary directory, on free ports)
that it can kill and start again, and the provider sandbox with provider latency. Setup (the
database, the tenant, the signing keys, the sandbox) is the benchmark's (bench/runner.py).

Scenarios (`--scenarios`, default all):

  workers    an email run; every KILL_INTERVAL s the bulk worker's pool children are SIGKILLed,
             and once its parent (supervisord must start it again)
  redis      single sends keep arriving; Redis is SIGKILLed and started again (empty, as
             `make run`'s: no persistence unless --redis-aof)
  postgres   single sends keep arriving; `pg_ctl stop -m immediate`, then started again
  failover   an email run while the SendGrid emulator is down (→ SMTP)
  outage     an email run while every email provider is down (→ wait, then delivered)

The loss checker compares every 202 (its deliveries) with what the sandbox received (its
messages API, by the delivery id every message carries) and with the statuses the API reports
(`GET /api/v1/notifications/{id}/status`) and the database holds: accepted, terminal
(delivered, bounced, failed, suppressed, cancelled; `sent` through SMTP, which has no
receipts), lost, duplicates at the provider, 5xx answers by status (500 must be 0; 503 is
allowed while a store is down), hangs (no answer within the client's timeout), and the seconds
from the recovery (the last kill, the store's or provider's return) until every accepted
delivery is terminal (`all`; single sends keep arriving for a few seconds after the recovery)
and until those accepted before the recovery are (`backlog`).

One JSON document goes to bench/results/chaos-<scale>-<time>.json (or --out), a summary table
to stdout, progress lines to stderr. Exit code 0 only when every scenario passed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .environment import BenchSetupError
from .processes import REPO_ROOT, ManagedProcess, ProcessError, http_ok, venv_tool

RESULTS_DIR = REPO_ROOT / "bench" / "results"
FINAL = ("delivered", "bounced", "failed", "suppressed", "cancelled")
# SMTP has no delivery receipts: `sent` is as far as a message sent through it ever gets.
NO_RECEIPTS = ("smtp",)
TERMINAL_SQL = "(status = ANY(%s) OR (status = 'sent' AND provider = ANY(%s)))"
TEMPLATE_KEY = "bench_welcome"  # created by bench.runner.Bench._create_tenant
VARIABLES = {"name": "Chaos"}
SCENARIOS = ("workers", "redis", "postgres", "failover", "outage")
CHUNK = 100  # recipients per POST in the email runs
STARTUP_TIMEOUT = 90.0


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scale:
    emails: int  # the workers scenario's email run
    kill_interval: float
    kills: int  # SIGKILLs of the bulk worker (the second one hits its parent)
    single_rate: float  # single sends per second in the redis/postgres scenarios
    before: float  # seconds of single sends before the store goes down
    outage: float  # seconds a store stays down
    after: float  # seconds of single sends after it came back
    provider_outage: float  # seconds a provider stays down (failover, outage)
    failover_emails: int
    outage_emails: int
    wait_timeout: float  # longest wait for every delivery to be terminal, per scenario


SCALES = {
    "ci": Scale(emails=600, kill_interval=5.0, kills=3, single_rate=8.0, before=5.0, outage=10.0,
                after=8.0, provider_outage=20.0, failover_emails=300, outage_emails=100,
                wait_timeout=240.0),
    "full": Scale(emails=3000, kill_interval=10.0, kills=6, single_rate=20.0, before=10.0,
                  outage=15.0, after=15.0, provider_outage=60.0, failover_emails=1000,
                  outage_emails=300, wait_timeout=600.0),
}


# -- the stores the harness owns ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: [int(x) if x.isdigit() else x for x in p.parts[-3].split(".")])
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise ProcessError("PostgreSQL server binaries (pg_ctl, initdb) not found; "
                       "`make run` installs them (package postgresql)")


class PrivatePostgres:
    """A throw-away cluster in `directory` on a free port (as `postgres` when run as root)."""

    def __init__(self, directory: Path) -> None:
        self.bin = _pg_bin()
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        result = subprocess.run(cmd, cwd="/", capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise ProcessError(f"{' '.join(argv[:2])} failed: {result.stdout[-500:]} {result.stderr[-1500:]}")
        return result

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.dir, self.user)
            os.chmod(self.dir, 0o700)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--encoding=UTF8", "--locale=C")

    def start(self) -> None:
        # fsync off: the machine does not crash here, only the server (the kernel keeps what
        # it was given). synchronous_commit stays ON, as in production: with it off a commit
        # is acknowledged before its WAL leaves the server, and an immediate stop loses
        # transactions the API already answered 202 for.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c max_connections=200 -c fsync=off -c synchronous_commit=on "
                "-c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "postgres.log"),
                  "-w", "-t", "60", "-o", opts, "start")

    def stop_immediate(self) -> None:
        """The postmaster and every backend end at once, no checkpoint: a crash, as far as
        the clients and the next start (crash recovery) can tell."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30",
                  "stop", check=False)


class PrivateRedis:
    def __init__(self, directory: Path, *, aof: bool) -> None:
        self.dir = directory
        self.port = free_port()
        self.aof = aof
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof
                       else ["--appendonly", "no"])
        cmd = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               *persistence, "--dir", str(self.dir), "--daemonize", "no"]
        self.proc = ManagedProcess("redis", cmd, os.environ).start()
        self.proc.wait_ready(lambda: " Ready to accept connections" in self.proc.log_text()
                             if self.proc else False, timeout=30)

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does (nothing written on the way out)."""
        if self.proc is not None and self.proc.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.proc.wait(timeout=10)
            self.proc.stop()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


# -- the supervised stack ---------------------------------------------------------------------


def _supervisord_conf_module() -> Any:
    path = REPO_ROOT / "scripts" / "supervisord_conf.py"
    spec = importlib.util.spec_from_file_location("supervisord_conf", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Supervised:
    """The Procfile's processes (web on the harness's port, its own beat schedule file; not
    the Procfile's sandbox) under supervisord, as `make run` runs them."""

    def __init__(self, workdir: Path, env: dict[str, str], *, web_port: int) -> None:
        from . import procfile

        self.run_dir = workdir / "supervisor"
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.web_port = web_port
        programs: list[tuple[str, list[str]]] = []
        tag = str(os.getpid())
        for entry in procfile.parse():
            if entry.kind == "web":
                programs.append((entry.name, procfile.web_command(entry, port=web_port)))
            elif entry.kind == "worker":
                programs.append((entry.name, procfile.worker_command(entry, tag=tag)))
            elif entry.kind == "beat":
                programs.append((entry.name, procfile.beat_command(entry, schedule_dir=self.run_dir)))
        self.names = [name for name, _ in programs]
        self.kinds = {e.name: e.kind for e in procfile.parse()}
        self.conf = self.run_dir / "supervisord.conf"
        self.conf.write_text(_supervisord_conf_module().render(
            programs, run_dir=self.run_dir, directory=REPO_ROOT, log_dir=self.log_dir,
            stop_wait_seconds=10))
        self.proc: ManagedProcess | None = None

    def start(self) -> None:
        cmd = [*venv_tool("supervisord"), "-c", str(self.conf)]
        self.proc = ManagedProcess("supervisord", cmd, self.env).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for name in self.names:
            if self.kinds.get(name) == "worker":
                self.wait_log(name, " ready.", count=1, deadline=deadline)
        self.proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{self.web_port}/api/v1/ready"),
                             timeout=max(deadline - time.monotonic(), 1.0))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=60)
            self.proc = None

    def log_text(self, name: str) -> str:
        try:
            return (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, name: str, marker: str, *, count: int, deadline: float) -> None:
        while self.log_text(name).count(marker) < count:
            if self.proc is None or not self.proc.alive():
                raise ProcessError(f"supervisord exited:\n{self.proc.log_tail() if self.proc else ''}")
            if time.monotonic() > deadline:
                raise ProcessError(f"{name}: no {marker!r} in its log:\n"
                                   + "\n".join(self.log_text(name).splitlines()[-30:]))
            time.sleep(0.2)

    def ctl(self, *args: str) -> str:
        result = subprocess.run([*venv_tool("supervisorctl"), "-c", str(self.conf), *args],
                                capture_output=True, text=True, timeout=30)
        return result.stdout

    def status(self) -> dict[str, str]:
        out = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
        return out

    def pid(self, name: str) -> int | None:
        text = self.ctl("pid", name).strip()
        return int(text) if text.isdigit() and int(text) > 0 else None

    def spawns(self) -> dict[str, int]:
        """How often supervisord started each program (1 = never restarted)."""
        text = self.log_text("supervisord")
        return {name: text.count(f"spawned: '{name}'") for name in self.names}

    def exits(self) -> list[str]:
        return [line.split(" ", 2)[-1] for line in self.log_text("supervisord").splitlines()
                if " exited: " in line]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# -- the client side: requests and what they got ------------------------------------------------


@dataclass
class Ledger:
    """Every request of a scenario and what it got."""

    accepted: dict[str, list[str]] = field(default_factory=dict)  # notification → deliveries
    accepted_at: dict[str, float] = field(default_factory=dict)  # notification → monotonic
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    hangs: int = 0
    connection_errors: int = 0
    slowest: float = 0.0
    timeline: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: str, body: Any, elapsed: float) -> None:
        with self.lock:
            self.answers[status] += 1
            self.slowest = max(self.slowest, elapsed)
            self.timeline.append((time.monotonic(), status))
            if status == "202" and isinstance(body, dict):
                self.accepted[str(body["id"])] = [str(d["id"]) for d in body.get("deliveries", [])]
                self.accepted_at[str(body["id"])] = time.monotonic()

    def deliveries(self) -> int:
        return sum(len(ids) for ids in self.accepted.values())


class Api:
    def __init__(self, port: int, key: str, *, timeout: float) -> None:
        self.port = port
        self.key = key
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | None = None,
                timeout: float | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.timeout)
        try:
            headers = {"Authorization": f"Bearer {self.key}"}
            if body is not None:
                headers |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw[:200].decode("utf-8", "replace")
            return response.status, data
        finally:
            conn.close()

    def send(self, ledger: Ledger, recipients: Sequence[dict[str, str]]) -> None:
        body = json.dumps({"recipients": list(recipients), "template_id": TEMPLATE_KEY,
                           "variables": VARIABLES, "priority": "normal"}).encode()
        started = time.monotonic()
        try:
            status, data = self.request("POST", "/api/v1/notifications", body)
        except TimeoutError:
            ledger.record("hang", None, time.monotonic() - started)
            with ledger.lock:
                ledger.hangs += 1
            return
        except OSError:
            ledger.record("connection_error", None, time.monotonic() - started)
            with ledger.lock:
                ledger.connection_errors += 1
            return
        ledger.record(str(status), data, time.monotonic() - started)
        if status >= 500 and status != 503:
            code = data.get("error", {}).get("code") if isinstance(data, dict) else data
            log(f"  HTTP {status} from POST /api/v1/notifications: {code}")


def recipients(prefix: str, count: int, start: int = 0) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"}
            for i in range(start, start + count)]


class SingleSends:
    """Open-loop single-recipient sends at `rate`/s (a slow answer does not slow the rate)."""

    def __init__(self, api: Api, ledger: Ledger, *, rate: float, prefix: str) -> None:
        self.api, self.ledger, self.rate, self.prefix = api, ledger, rate, prefix
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=32) as pool:
            start = time.monotonic()
            i = 0
            while not self.stopping.is_set():
                due = start + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    self.stopping.wait(delay)
                    continue
                pool.submit(self.api.send, self.ledger, recipients(self.prefix, 1, i))
                i += 1

    def __enter__(self) -> SingleSends:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()


def email_run(api: Api, ledger: Ledger, *, prefix: str, count: int) -> threading.Thread:
    """POSTs `count` emails in sends of CHUNK recipients, in a thread (two at a time)."""

    def run() -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(
                lambda start: api.send(ledger, recipients(prefix, min(CHUNK, count - start), start)),
                range(0, count, CHUNK)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- the loss checker --------------------------------------------------------------------------


def _db_query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def db_retry(fn: Callable[[], Any], *, attempts: int = 30) -> Any:
    """The harness's own reads survive a database restart: reconnect and try again."""
    from django.db import Error, connection

    for attempt in range(attempts):
        try:
            return fn()
        except Error:
            if attempt == attempts - 1:
                raise
            with contextlib.suppress(Exception):
                connection.close()
            time.sleep(1.0)
    return None


def terminal_counts(notification_ids: Iterable[str]) -> tuple[int, int]:
    total, final, _ = progress_counts(notification_ids)
    return total, final


def progress_counts(notification_ids: Iterable[str]) -> tuple[int, int, int]:
    """(deliveries, terminal, terminal or `sent`: handed to the provider, receipt to come)."""
    ids = [uuid.UUID(n) for n in notification_ids]
    if not ids:
        return 0, 0, 0
    rows = _db_query(
        f"SELECT count(*), count(*) FILTER (WHERE {TERMINAL_SQL}), "
        "count(*) FILTER (WHERE status = ANY(%s) OR status = 'sent') FROM notifications_delivery "
        "WHERE notification_id = ANY(%s)", [list(FINAL), list(NO_RECEIPTS), list(FINAL), ids])
    return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])


def wait_terminal(ledger: Ledger, *, label: str, expected: int, recovered_at: float,
                  deadline: float) -> tuple[float | None, float | None, float | None]:
    """Monotonic times at which (every accepted delivery, those accepted before the recovery)
    were terminal, and every accepted delivery was at least sent; None for one not reached by
    the deadline."""
    last = 0.0
    backlog = [n for n, at in ledger.accepted_at.items() if at <= recovered_at]
    backlog_done: float | None = None
    handed_done: float | None = None
    while True:
        try:
            total, final, handed = progress_counts(ledger.accepted)
            if handed_done is None and total >= expected and handed == total:
                handed_done = time.monotonic()
            if backlog_done is None:
                b_total, b_final = terminal_counts(backlog)
                if b_final == b_total:
                    backlog_done = time.monotonic()
        except Exception as exc:  # the database may be restarting
            from django.db import connection

            with contextlib.suppress(Exception):
                connection.close()
            total, final = -1, -1
            if time.monotonic() - last >= 5:
                log(f"{label}: progress unknown ({type(exc).__name__})")
                last = time.monotonic()
        if total >= expected and final == total:
            now = time.monotonic()
            return now, backlog_done or now, handed_done or now
        if time.monotonic() > deadline:
            return None, backlog_done, handed_done
        if time.monotonic() - last >= 5:
            log(f"{label}: {final}/{expected} deliveries terminal")
            last = time.monotonic()
        time.sleep(0.5)


def check(ledger: Ledger, sandbox: Any, api: Api) -> dict[str, Any]:
    """Every 202 against the sandbox's messages, the database and the API."""
    accepted = {d: n for n, deliveries in ledger.accepted.items() for d in deliveries}
    ids = [uuid.UUID(n) for n in ledger.accepted]
    rows = db_retry(lambda: _db_query(
        "SELECT d.id::text, d.status, d.provider, d.error_code, d.attempts, d.sent_at IS NOT NULL, "
        "EXISTS (SELECT 1 FROM notifications_deliveryevent e WHERE e.delivery_id = d.id "
        "        AND e.event = 'sent') "
        "FROM notifications_delivery d WHERE d.notification_id = ANY(%s)", [ids])) if ids else []
    events = db_retry(lambda: _db_query(
        "SELECT e.event, count(*) FROM notifications_deliveryevent e JOIN notifications_delivery d "
        "ON d.id = e.delivery_id WHERE d.notification_id = ANY(%s) GROUP BY e.event", [ids])) if ids else []
    by_id = {r[0]: r for r in rows}
    callbacks = dict(sandbox.stats().get("callbacks", {}))
    messages = sandbox.messages()
    at_provider: collections.Counter[str] = collections.Counter()
    providers: collections.Counter[str] = collections.Counter()
    for message in messages:
        delivery = (message.get("custom_args") or {}).get("notifyhub_delivery_id")
        if delivery in accepted:
            at_provider[delivery] += 1
            providers[str(message.get("provider"))] += 1
    statuses = collections.Counter(r[1] for r in rows)
    not_terminal = [d for d in accepted if d not in by_id or not (
        by_id[d][1] in FINAL or (by_id[d][1] == "sent" and by_id[d][2] in NO_RECEIPTS))]
    # Delivered (or sent) according to us, but the provider never got it.
    claimed_but_missing = [d for d in accepted if d in by_id and by_id[d][1] in ("sent", "delivered")
                           and not at_provider[d]]
    missing_rows = [d for d in accepted if d not in by_id]
    api_counts: collections.Counter[str] = collections.Counter()
    api_errors = 0
    for notification in ledger.accepted:
        try:
            status, data = api.request("GET", f"/api/v1/notifications/{notification}/status")
        except OSError:
            status, data = 0, None
        if status == 200 and isinstance(data, dict):
            api_counts.update({k: int(v) for k, v in (data.get("counts") or {}).items()})
        else:
            api_errors += 1
    answers = dict(sorted(ledger.answers.items()))
    return {
        "requests": sum(ledger.answers.values()),
        "answers": answers,
        "http_500": sum(n for s, n in ledger.answers.items() if s.isdigit() and int(s) >= 500
                        and s != "503"),
        "http_503": ledger.answers.get("503", 0),
        "hangs": ledger.hangs,
        "connection_errors": ledger.connection_errors,
        "slowest_request_seconds": round(ledger.slowest, 2),
        "accepted_notifications": len(ledger.accepted),
        "accepted": len(accepted),
        "terminal": len(accepted) - len(not_terminal),
        "lost": len(set(not_terminal) | set(claimed_but_missing)),
        "not_terminal": len(not_terminal),
        "missing_rows": len(missing_rows),
        "delivered_but_not_at_provider": len(claimed_but_missing),
        "duplicates_at_provider": sum(n - 1 for n in at_provider.values() if n > 1),
        "deliveries_sent_twice": sum(1 for n in at_provider.values() if n > 1),
        "at_provider_by_provider": dict(providers),
        "statuses_db": dict(sorted(statuses.items())),
        "statuses_api": dict(sorted(api_counts.items())),
        "api_status_errors": api_errors,
        "failed_reasons": dict(collections.Counter(r[3] for r in rows if r[1] == "failed")),
        "delivered_without_sent_record": sum(1 for r in rows if r[1] == "delivered"
                                             and not (r[2] and r[5] and r[6])),
        "claims": sum(int(r[4]) for r in rows),
        # The sandbox's receipts: answers by class (a 5xx/refused callback is retried later).
        "provider_callbacks": callbacks,
        "events": dict(sorted((str(e), int(n)) for e, n in events)),
    }


# -- the scenarios ----------------------------------------------------------------------------


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.scale: Scale = SCALES[args.scale]
        self.workdir = workdir
        self.pg = PrivatePostgres(workdir / "pg")
        self.redis = PrivateRedis(workdir / "redis", aof=args.redis_aof)
        self.bench: Any = None
        self.stack: Supervised | None = None
        self.api: Api | None = None
        self.settings: dict[str, Any] = {}

    # lifecycle

    def setup(self) -> None:
        from .environment import targets_from
        from .runner import Bench, Options

        log(f"initialising a private PostgreSQL cluster (port {self.pg.port}) and Redis "
            f"(port {self.redis.port}, {'AOF' if self.redis.aof else 'no persistence'})")
        self.pg.init()
        self.pg.start()
        self.redis.start()
        os.environ["DJANGO_SETTINGS_MODULE"] = "notifyhub.settings.local"
        targets = targets_from(self.pg.url, self.redis.url, db_name="notifyhub_chaos", redis_db=1)
        options = Options(deliveries=1, accept_runs=1, latency_ms=self.args.latency_ms,
                          timeout=60, skip_naive=True)
        self.bench = Bench(options, targets, self.workdir)
        self.bench.setup()  # database, tenant, keys, sandbox, gunicorn (replaced below)
        port = self.bench.api_port
        self.bench.gunicorn.stop()
        self.bench.gunicorn = None
        env = {**self.bench.child_env, "DEBUG": "0"}
        self.stack = Supervised(self.workdir, env, web_port=port)
        log("starting the Procfile's processes under supervisord: " + ", ".join(self.stack.names))
        self.stack.start()
        self.api = Api(port, self.bench.api_key, timeout=self.args.request_timeout)
        from django.conf import settings

        self.settings = {
            "DELIVERY_LEASE_SECONDS": settings.DELIVERY_LEASE_SECONDS,
            "RELAY_REQUEUE_AFTER_SECONDS": settings.RELAY_REQUEUE_AFTER_SECONDS,
            "RELAY_SWEEP_INTERVAL_SECONDS": settings.RELAY_SWEEP_INTERVAL_SECONDS,
            "BREAKER_OPEN_SECONDS": settings.CIRCUIT_BREAKER.get("open_seconds"),
            "DB_CONNECT_TIMEOUT": settings.DATABASES["default"].get("OPTIONS", {}).get("connect_timeout"),
            "EMAIL_PROVIDERS": settings.CHANNEL_PROVIDERS.get("email"),
        }

    def close(self) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.stack is not None:
                log("stopping supervisord and its processes")
                self.stack.stop()
                self.stack = None
            if self.bench is not None:
                self.bench.close()
            self.redis.stop()
            with contextlib.suppress(ProcessError):
                self.pg.stop()
        finally:
            signal.signal(signal.SIGINT, previous)

    # helpers

    def quiet_sandbox(self) -> None:
        """No callback left over from the last scenario; no messages; the provider latency."""
        sandbox = self.bench.sandbox
        deadline = time.monotonic() + 30
        while sandbox.stats()["callbacks"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.5)
        sandbox.reset()
        sandbox.control(latency_ms=self.args.latency_ms)

    def bound(self, name: str) -> float:
        bound = float(self.args.recovery_bound)
        if name == "outage":  # the breaker's probe comes after its open time
            bound += float(self.settings.get("BREAKER_OPEN_SECONDS") or 30)
        return bound

    def scenario(self, name: str, drive: Callable[[Ledger], dict[str, Any]]) -> dict[str, Any]:
        assert self.api is not None and self.stack is not None
        log(f"=== {name} ===")
        self.quiet_sandbox()
        spawns_before = self.stack.spawns()
        ledger = Ledger()
        started = time.monotonic()
        extra = drive(ledger)
        recovered_at = float(extra.pop("recovered_at"))
        expected = ledger.deliveries()
        done_at, backlog_done_at, sent_at = wait_terminal(
            ledger, label=name, expected=expected, recovered_at=recovered_at,
            deadline=recovered_at + self.scale.wait_timeout)
        # Late receipts settle before the sandbox is read.
        time.sleep(1.0)
        result = check(ledger, self.bench.sandbox, self.api)
        spawns_after = self.stack.spawns()
        status = self.stack.status()
        result.update(extra)
        result["scenario"] = name
        result["seconds"] = round(time.monotonic() - started, 1)
        result["all_terminal_seconds_after_recovery"] = (
            round(max(done_at - recovered_at, 0.0), 1) if done_at is not None else None)
        # Only what was accepted before the recovery moment (the backlog the fault held up).
        result["backlog_terminal_seconds_after_recovery"] = (
            round(max(backlog_done_at - recovered_at, 0.0), 1) if backlog_done_at is not None else None)
        # Every accepted delivery at the provider (its receipt may still be on its way).
        result["all_sent_seconds_after_recovery"] = (
            round(max(sent_at - recovered_at, 0.0), 1) if sent_at is not None else None)
        result["last_accept_seconds_after_recovery"] = round(max(
            [at - recovered_at for at in ledger.accepted_at.values()] or [0.0]), 1)
        result["recovery_bound_seconds"] = self.bound(name)
        result["restarts"] = {k: spawns_after[k] - spawns_before.get(k, 0)
                              for k in spawns_after if spawns_after[k] - spawns_before.get(k, 0)}
        result["processes_running"] = all(status.get(n) == "RUNNING" for n in self.stack.names)
        result["processes"] = status
        failures = []
        if result["lost"]:
            failures.append(f"{result['lost']} lost")
        failed = result["statuses_db"].get("failed", 0)
        if failed:
            # Nothing permanent is injected: a fault may cost time, never a message.
            failures.append(f"{failed} deliveries ended failed ({result['failed_reasons']})")
        if result["http_500"]:
            failures.append(f"{result['http_500']} answers 5xx other than 503")
        if result["hangs"]:
            failures.append(f"{result['hangs']} hangs")
        if done_at is None:
            failures.append(f"not all terminal {self.scale.wait_timeout:.0f} s after recovery")
        elif result["all_terminal_seconds_after_recovery"] > result["recovery_bound_seconds"]:
            failures.append(f"all terminal only {result['all_terminal_seconds_after_recovery']} s "
                            f"after recovery (bound {result['recovery_bound_seconds']:.0f} s)")
        if not result["processes_running"]:
            failures.append(f"processes not running: {status}")
        if extra.get("parent_restart") and not extra["parent_restart"].get("restarted"):
            failures.append("the bulk worker's parent was not restarted")
        if expected == 0:
            failures.append("nothing was accepted")
        result["failures"] = failures
        result["passed"] = not failures
        log(f"{name}: {'PASS' if not failures else 'FAIL: ' + '; '.join(failures)}")
        return result

    # 1. workers

    def workers(self, ledger: Ledger) -> dict[str, Any]:
        assert self.api is not None and self.stack is not None
        scale = self.scale
        run = email_run(self.api, ledger, prefix="w", count=scale.emails)
        kills: list[dict[str, Any]] = []
        parent_restart: dict[str, Any] = {}
        last_kill = time.monotonic()
        for index in range(scale.kills):
            time.sleep(scale.kill_interval)
            parent = self.stack.pid("worker_bulk")
            if parent is None:
                log("worker_bulk has no pid (being restarted); skipping this kill")
                continue
            if index == 1:
                ready_before = self.stack.log_text("worker_bulk").count(" ready.")
                os.kill(parent, signal.SIGKILL)
                killed_at = last_kill = time.monotonic()
                log(f"SIGKILL worker_bulk's parent (pid {parent})")
                restarted, new_pid = False, None
                while time.monotonic() - killed_at < 60:
                    new_pid = self.stack.pid("worker_bulk")
                    if new_pid and new_pid != parent and self.stack.log_text(
                            "worker_bulk").count(" ready.") > ready_before:
                        restarted = True
                        break
                    time.sleep(0.2)
                parent_restart = {"old_pid": parent, "new_pid": new_pid, "restarted": restarted,
                                  "ready_after_seconds": round(time.monotonic() - killed_at, 1)}
                log(f"  supervisord restarted worker_bulk: {parent_restart}")
                kills.append({"target": "parent", "pid": parent})
            else:
                children = _children(parent)
                for child in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                last_kill = time.monotonic()
                log(f"SIGKILL worker_bulk's pool children {children}")
                kills.append({"target": "pool", "pids": children})
            total, final = db_retry(lambda: terminal_counts(ledger.accepted))
            log(f"  {final}/{total} terminal, {sum(ledger.answers.values())} sends answered")
        run.join()
        return {"recovered_at": last_kill, "kills": kills, "parent_restart": parent_restart,
                "emails": scale.emails}

    # 2./3. a store down while single sends arrive

    def _store_outage(self, ledger: Ledger, *, prefix: str, down: Callable[[], None],
                      up: Callable[[], None], what: str) -> dict[str, Any]:
        assert self.api is not None
        scale = self.scale
        with SingleSends(self.api, ledger, rate=scale.single_rate, prefix=prefix):
            time.sleep(scale.before)
            before = dict(ledger.answers)
            down()
            went_down = time.monotonic()
            log(f"{what} is down; {sum(before.values())} sends answered so far")
            time.sleep(scale.outage)
            up()
            recovered_at = time.monotonic()
            log(f"{what} is back after {recovered_at - went_down:.1f} s")
            during = dict(ledger.answers - collections.Counter(before))
            time.sleep(scale.after)
        return {"recovered_at": recovered_at, "outage_seconds": round(recovered_at - went_down, 1),
                "answers_during_outage": during, "single_rate": scale.single_rate}

    def redis_scenario(self, ledger: Ledger) -> dict[str, Any]:
        def up() -> None:
            self.redis.start()

        return self._store_outage(ledger, prefix="r", down=self.redis.kill, up=up,
                                  what=f"Redis ({'AOF' if self.redis.aof else 'no persistence'})")

    def postgres_scenario(self, ledger: Ledger) -> dict[str, Any]:
        return self._store_outage(ledger, prefix="p", down=self.pg.stop_immediate,
                                  up=self.pg.start, what="PostgreSQL")

    # 4. providers down

    def _provider_outage(self, ledger: Ledger, *, prefix: str, providers: Sequence[str],
                         count: int) -> dict[str, Any]:
        assert self.api is not None
        sandbox = self.bench.sandbox
        for provider in providers:
            sandbox.control(down=True, provider=provider)
        went_down = time.monotonic()
        log(f"{', '.join(providers)} down for {self.scale.provider_outage:.0f} s; sending {count} emails")
        run = email_run(self.api, ledger, prefix=prefix, count=count)
        while time.monotonic() - went_down < self.scale.provider_outage:
            time.sleep(5)
            with contextlib.suppress(Exception):
                total, final = terminal_counts(ledger.accepted)
                log(f"  {final}/{total} terminal while {', '.join(providers)} down")
        run.join()
        for provider in providers:
            sandbox.control(down=False, provider=provider)
        recovered_at = time.monotonic()
        log(f"{', '.join(providers)} back")
        return {"recovered_at": recovered_at, "providers_down": list(providers),
                "outage_seconds": round(recovered_at - went_down, 1), "emails": count}

    def failover(self, ledger: Ledger) -> dict[str, Any]:
        return self._provider_outage(ledger, prefix="f", providers=("sendgrid",),
                                     count=self.scale.failover_emails)

    def outage(self, ledger: Ledger) -> dict[str, Any]:
        return self._provider_outage(ledger, prefix="o", providers=("sendgrid", "smtp"),
                                     count=self.scale.outage_emails)

    def run(self) -> dict[str, Any]:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        t0 = time.monotonic()
        self.setup()
        setup_seconds = round(time.monotonic() - t0, 1)
        drives = {"workers": self.workers, "redis": self.redis_scenario,
                  "postgres": self.postgres_scenario, "failover": self.failover,
                  "outage": self.outage}
        results = []
        for name in self.args.scenario_list:
            try:
                results.append(self.scenario(name, drives[name]))
            except (ProcessError, RuntimeError, OSError) as exc:
                log(f"{name}: ERROR {type(exc).__name__}: {exc}")
                results.append({"scenario": name, "passed": False,
                                "failures": [f"{type(exc).__name__}: {exc}"[:2000]]})
        assert self.stack is not None
        return {
            "harness": "notifyhub chaos",
            "started_at": started,
            "scale": self.args.scale,
            "params": {**asdict(self.scale), "latency_ms": self.args.latency_ms,
                       "request_timeout": self.args.request_timeout,
                       "recovery_bound": self.args.recovery_bound, "redis_aof": self.redis.aof},
            "settings": self.settings,
            "git": _git_head(),
            "setup_seconds": setup_seconds,
            "scenarios": results,
            "process_spawns": self.stack.spawns(),
            "process_exits": self.stack.exits()[-50:],
            "wall_seconds": round(time.monotonic() - t0, 1),
            "passed": all(r.get("passed") for r in results),
        }


def _git_head() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    return None


def summary(report: dict[str, Any]) -> str:
    head = ("scenario", "accepted", "terminal", "lost", "dup@provider", "500", "503", "hangs",
            "all terminal s after recovery", "backlog s", "all sent s", "restarts", "result")
    rows = [head]
    for r in report["scenarios"]:
        rows.append((
            r["scenario"], str(r.get("accepted", "-")), str(r.get("terminal", "-")),
            str(r.get("lost", "-")), str(r.get("duplicates_at_provider", "-")),
            str(r.get("http_500", "-")), str(r.get("http_503", "-")), str(r.get("hangs", "-")),
            str(r.get("all_terminal_seconds_after_recovery", "-")),
            str(r.get("backlog_terminal_seconds_after_recovery", "-")),
            str(r.get("all_sent_seconds_after_recovery", "-")),
            ",".join(f"{k}x{v}" for k, v in (r.get("restarts") or {}).items()) or "-",
            "PASS" if r.get("passed") else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in report["scenarios"]:
        for failure in r.get("failures", []):
            lines.append(f"{r['scenario']}: {failure}")
    lines.append(f"wall time {report['wall_seconds']} s (setup {report['setup_seconds']} s); "
                 f"{'PASSED' if report['passed'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default=os.environ.get("CHAOS_SCALE", "full"),
                        help="ci: a few hundred messages, short outages (~5 min); full: the issue's "
                             "3,000 emails and 60 s provider outages (default: $CHAOS_SCALE or full)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--latency-ms", type=int, default=600, help="sandbox provider latency (600)")
    parser.add_argument("--request-timeout", type=float, default=10.0,
                        help="client timeout per request; no answer within it is a hang (10)")
    parser.add_argument("--recovery-bound", type=float, default=60.0,
                        help="seconds after recovery by which every delivery must be terminal "
                             "(60: four sweeper intervals; the outage scenario adds the breaker's "
                             "open time)")
    parser.add_argument("--redis-aof", action="store_true",
                        help="run Redis with appendonly yes (as production should)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (PostgreSQL cluster, supervisord logs) for "
                             "a post-mortem; its path is logged")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON result path (default bench/results/chaos-<scale>-<time>.json)")
    args = parser.parse_args(argv)
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenario_list) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from .runner import install_sigterm_handler

    install_sigterm_handler()
    workdir = Path(tempfile.mkdtemp(prefix="notifyhub-chaos-"))
    os.chmod(workdir, 0o755)  # the cluster's directory inside must be reachable for `postgres`
    chaos = Chaos(args, workdir)
    real_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            try:
                report = chaos.run()
            finally:
                chaos.close()
    except KeyboardInterrupt:
        log("interrupted; processes stopped")
        return 130
    except (BenchSetupError, ProcessError, RuntimeError, OSError) as exc:
        log(f"setup failed: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if args.keep:
            log(f"kept the work directory {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or RESULTS_DIR / f"chaos-{args.scale}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(summary(report), file=real_stdout, flush=True)
    print(f"result: {out}", file=real_stdout, flush=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
