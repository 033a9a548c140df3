"""Child processes of the benchmark (gunicorn, Celery worker) and where their CPU time goes.

Each child runs in its own session/process group, so stopping it stops its workers too (a
gunicorn arbiter and its workers, a Celery worker and its prefork pool), and a Ctrl-C in the
terminal reaches only the benchmark, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]


class ProcessError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def venv_tool(name: str) -> list[str]:
    """`.venv/bin/<name>` next to this interpreter, else `python -m <name>`."""
    candidate = Path(sys.executable).parent / name
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", name]


class ManagedProcess:
    """One child process (group) with its output in a temporary log file."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str],
                 cwd: str | Path = REPO_ROOT) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> ManagedProcess:
        if self.proc is not None:
            raise ProcessError(f"{self.name} already started")
        self._log = tempfile.TemporaryFile(prefix=f"bench-{self.name}-")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.seek(0, os.SEEK_END)
        return text

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, ready: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ProcessError(
                    f"{self.name} exited with code {code} during startup:\n{self.log_tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `timeout` s. Safe to call twice."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log(f"{self.name} did not stop within {timeout:.0f} s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            # Pool children left behind by a parent that died first.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (OSError, urllib.error.URLError):
        return False


def start_gunicorn(env: Mapping[str, str], *, port: int, workers: int, timeout: float) -> ManagedProcess:
    cmd = [
        *venv_tool("gunicorn"), "notifyhub.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
    ]
    server = ManagedProcess("gunicorn", cmd, env).start()
    server.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/api/v1/ready"), timeout=timeout)
    return server


WORKER_QUEUES = "critical,high,normal,low,maintenance"


def worker_command(*, concurrency: int, name: str) -> list[str]:
    """The Procfile's bulk worker (all queues here), knowing the naive task as well."""
    return [
        sys.executable, "-m", "celery", "-A", "celery_app", "worker",
        "-Q", WORKER_QUEUES, "-c", str(concurrency), "--include", "bench.naive",
        "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO",
        # Faster start-up only; none of these is on the send path.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]


def start_worker(
    env: Mapping[str, str], *, concurrency: int, name: str, timeout: float
) -> ManagedProcess:
    worker = ManagedProcess(name, worker_command(concurrency=concurrency, name=name), env).start()
    worker.wait_ready(lambda: " ready." in worker.log_text(), timeout=timeout)
    return worker


# -- CPU accounting -------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class _Proc:
    ppid: int
    comm: str
    cpu: float  # user + system seconds
    # PostgreSQL and Redis servers only: "postgres: user dbname host(port) state",
    # "/usr/bin/redis-server 127.0.0.1:63799"
    title: str = ""


def _proc_table() -> dict[int, _Proc]:
    table: dict[int, _Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        head, _, rest = raw.rpartition(")")
        comm = head.partition("(")[2]
        fields = rest.split()
        # fields[0] is state (field 3 of stat), so utime/stime (14/15) are fields[11]/[12].
        title = ""
        if comm in ("postgres", "redis-server"):
            with contextlib.suppress(OSError):
                title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    "utf-8", "replace")
        cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        table[int(entry)] = _Proc(int(fields[1]), comm, cpu, title)
    return table


def _machine_times() -> tuple[float, float]:
    """(user + nice + system, irq + softirq + steal) CPU seconds of the whole machine."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system) / _CLOCK_TICKS, (irq + softirq + steal) / _CLOCK_TICKS


@dataclass
class CpuSnapshot:
    table: dict[int, _Proc]
    machine: tuple[float, float]
    wall: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        return cls(_proc_table(), _machine_times(), time.monotonic())


def _descendants(table: Mapping[int, _Proc], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _is_client_backend(title: str) -> bool:
    """`postgres: user db 127.0.0.1(5432) idle` or `postgres: user db [local] idle`."""
    return "(" in title or "[local]" in title


def cpu_breakdown(
    start: CpuSnapshot,
    end: CpuSnapshot,
    groups: Mapping[str, int | None],
    singles: Mapping[str, int] | None = None,
    *,
    db_name: str = "",
    postmaster: int | None = None,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """CPU seconds spent between two snapshots by each process tree in `groups` (name → root
    pid), by each single process in `singles`, by the PostgreSQL backends (and their server)
    serving database `db_name` (of the server of `postmaster` when given), by the Redis server
    of `redis_url` (every `redis-server` of the machine without it), and by the machine as a
    whole (busy, and capacity = cores * wall).
    `other_processes` is the rest of the machine's process time (other jobs), `other_top` the
    biggest of those still running, by command name. Processes that ended in between are not
    seen individually."""

    def used(pids: set[int]) -> float:
        return sum(
            end.table[p].cpu - (start.table[p].cpu if p in start.table else 0.0)
            for p in pids if p in end.table
        )

    out: dict[str, Any] = {}
    ours: set[int] = set()
    for name, root in groups.items():
        if root is not None:
            tree = _descendants(end.table, root)
            ours |= tree
            out[name] = round(used(tree), 2)
    for name, pid in (singles or {}).items():
        ours.add(pid)
        out[name] = round(used({pid}), 2)
    marker = f" {db_name} "
    if postmaster is not None and postmaster in end.table:
        # The bench database's server only: its postmaster, its background processes (WAL
        # writer, checkpointer, autovacuum …: no client address in their title) and the
        # backends serving the bench database (not those of other databases on the same
        # server, nor other servers' processes: another checkout's bench on this machine).
        postgres = {pid for pid in _descendants(end.table, postmaster)
                    if pid == postmaster or marker in end.table[pid].title
                    or not _is_client_backend(end.table[pid].title)}
    else:
        postgres = {p for p, proc in end.table.items() if proc.comm == "postgres"
                    and (marker in proc.title or "postgres: " not in proc.title)}
    # The bench's Redis server when its port is known (its title names it), else every one.
    port = f":{urlsplit(redis_url).port or 6379}" if redis_url else ""
    redis_server = {p for p, proc in end.table.items()
                    if proc.comm == "redis-server"
                    and any(word.endswith(port) for word in proc.title.split() or [""])}
    ours |= postgres | redis_server
    out["postgres_bench_db"] = round(used(postgres), 2)
    out["redis_server"] = round(used(redis_server), 2)
    by_comm: dict[str, float] = {}
    for pid in end.table.keys() - ours:
        comm = end.table[pid].comm
        by_comm[comm] = by_comm.get(comm, 0.0) + used({pid})
    top = sorted(by_comm.items(), key=lambda item: -item[1])[:3]
    wall = end.wall - start.wall
    process_time = end.machine[0] - start.machine[0]
    interrupts = end.machine[1] - start.machine[1]
    # Everything else on the machine (other users' jobs, also ones that started and ended
    # within the phase); large values mean this phase ran on a busy machine.
    out["other_processes"] = round(max(process_time - sum(out.values()), 0.0), 2)
    out["other_top"] = {comm: round(cpu, 2) for comm, cpu in top if cpu >= 0.01}
    out["irq_softirq_steal"] = round(interrupts, 2)
    out["machine_busy"] = round(process_time + interrupts, 2)
    out["machine_capacity"] = round(wall * (os.cpu_count() or 1), 2)
    return out
