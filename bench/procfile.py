"""The repo's Procfile, read (not hard-coded) so the bench runs the same process layout as
production: the web command's gunicorn config, each Celery worker's queues and concurrency,
beat if present. The sandbox entry is ignored (the bench runs its own on free ports)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .processes import REPO_ROOT

PROCFILE = REPO_ROOT / "Procfile"
_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass(frozen=True)
class Entry:
    name: str
    argv: list[str]
    kind: str  # web | worker | beat | stream | sandbox | other
    queues: tuple[str, ...] = ()
    concurrency: int | None = None
    options: dict[str, str] = field(default_factory=dict)


def _option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def parse(path: Path = PROCFILE) -> list[Entry]:
    entries = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, command = match.groups()
        argv = shlex.split(command)
        program = Path(argv[0]).name if argv else ""
        if program == "gunicorn":
            entries.append(Entry(name, argv, "web"))
        elif program == "celery" and "worker" in argv:
            queues = tuple(q for q in (_option(argv, "-Q", "--queues") or "").split(",") if q)
            concurrency = _option(argv, "-c", "--concurrency")
            entries.append(Entry(name, argv, "worker", queues,
                                 int(concurrency) if concurrency else None))
        elif program == "celery" and "beat" in argv:
            entries.append(Entry(name, argv, "beat"))
        elif "apps.stream" in argv:
            entries.append(Entry(name, argv, "stream"))
        elif "sandbox" in argv:
            entries.append(Entry(name, argv, "sandbox"))
        else:
            entries.append(Entry(name, argv, "other"))
    return entries


def _python_tool(argv: list[str]) -> list[str]:
    """`.venv/bin/celery …` → this interpreter's celery (the venv the bench runs in)."""
    program = Path(argv[0]).name
    return [sys.executable, "-m", program, *argv[1:]]


def _replace_option(argv: list[str], names: tuple[str, ...], value: str) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in names and i + 1 < len(out):
            out[i + 1] = value
            return out
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                out[i] = f"{name}={value}"
                return out
    return [*out, names[0], value]


def web_command(entry: Entry, *, port: int) -> list[str]:
    """The Procfile's gunicorn command (its -c config: workers, threads) bound to `port`,
    without the access log (one line per request would cost the bench's CPU numbers)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    argv = [str(gunicorn) if gunicorn.exists() else "gunicorn", *entry.argv[1:]]
    argv = _replace_option(argv, ("--bind", "-b"), f"127.0.0.1:{port}")
    return [*argv, "--access-logfile", "/dev/null"]


def stream_command(entry: Entry, *, port: int) -> list[str]:
    """The Procfile's inbox stream process (`python -m apps.stream`) on `port`."""
    argv = [sys.executable, *entry.argv[1:]]
    return _replace_option(argv, ("--port",), str(port))


def stream_entry(entries: list[Entry]) -> Entry | None:
    return next((entry for entry in entries if entry.kind == "stream"), None)


def worker_command(entry: Entry, *, tag: str) -> list[str]:
    """The Procfile's worker, named uniquely for this run, at INFO level (the bench waits for
    " ready." in its log); knows the naive task as well."""
    argv = _python_tool(entry.argv)
    argv = _replace_option(argv, ("-n", "--hostname"), f"{entry.name}-{tag}@%h")
    argv = _replace_option(argv, ("--loglevel", "-l"), "INFO")
    return [*argv, "--include", "bench.naive", "--without-gossip", "--without-mingle"]


def beat_command(entry: Entry, *, schedule_dir: Path) -> list[str]:
    argv = _python_tool(entry.argv)
    return [*argv, "--pidfile", str(schedule_dir / "beat.pid"),
            "--schedule", str(schedule_dir / "beat-schedule")]


def workers(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.kind == "worker"]


def processes_for_queue(entries: list[Entry], queue: str) -> int:
    """Worker processes (pool size) that consume `queue`."""
    return sum(e.concurrency or os.cpu_count() or 1 for e in workers(entries) if queue in e.queues)


def web_entry(entries: list[Entry]) -> Entry:
    for entry in entries:
        if entry.kind == "web":
            return entry
    raise RuntimeError("the Procfile has no gunicorn web entry")
