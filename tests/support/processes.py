"""A real Celery worker (and beat) in a child process, for end-to-end and chaos tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Self

REPO_ROOT = Path(__file__).resolve().parents[2]


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """The URL of the database Django is using now (the test database inside a test)."""
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class ChildProcess:
    """A celery command in its own process group, with its output kept for failure messages.

    `kill()` SIGKILLs the whole group (main process and pool children) as a crashed machine
    would; `stop()` asks politely first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO_ROOT, env=self.env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the process group: no cleanup, no acknowledgements."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        if not self._log:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess(ChildProcess):
    """`celery -A celery_app worker` on the given queues, optionally with embedded beat
    (celery's PersistentScheduler: it knows celery_app.py's beat_schedule only)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        queues: str = "critical,high,normal,low,maintenance",
        concurrency: int = 2,
        beat: bool = False,
        name: str = "e2e",
        loglevel: str = "INFO",
    ) -> None:
        super().__init__(env)
        self.loglevel = loglevel
        self.queues = queues
        self.concurrency = concurrency
        self.beat = beat
        self.name = name
        self._schedule = tempfile.NamedTemporaryFile(suffix=".beat", delete=False)  # noqa: SIM115
        self._schedule.close()

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "celery", "-A", "celery_app", "worker",
            "-Q", self.queues, "-c", str(self.concurrency), "-n", f"{self.name}-{os.getpid()}@%h",
            "--loglevel", self.loglevel, "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        if self.beat:
            cmd += ["-B", "--scheduler", "celery.beat:PersistentScheduler", "-s", self._schedule.name]
        return cmd

    def stop(self) -> None:
        super().stop()
        if os.path.exists(self._schedule.name):
            os.unlink(self._schedule.name)


class QuietWorker(WorkerProcess):
    """The worker without celery's startup banner (printed, not logged)."""

    def command(self) -> list[str]:
        cmd = super().command()
        return [*cmd[:3], "--quiet", *cmd[3:]]


class DatabaseBeatProcess(ChildProcess):
    """celery beat with django-celery-beat's DatabaseScheduler, as `make run` runs it: it reads
    the PeriodicTask rows the scheduling services write."""

    def __init__(self, env: Mapping[str, str], *, max_interval: int = 1) -> None:
        super().__init__(env)
        self.max_interval = max_interval

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "celery_app", "beat",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            # Look at the schedule every second, so a tick leaves within ~1 s of its minute.
            "--max-interval", str(self.max_interval), "--loglevel", "INFO",
        ]


def wait_for(predicate: Any, *, timeout: float, interval: float = 0.2, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(interval)


class GunicornProcess(ChildProcess):
    """The web process as the Procfile runs it (gunicorn with notifyhub/gunicorn.conf.py)."""

    def __init__(self, env: Mapping[str, str], *, port: int, workers: int = 2) -> None:
        super().__init__(env)
        self.port = port
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", "notifyhub/gunicorn.conf.py",
                "notifyhub.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers)]


def web_is_up(url: str) -> bool:
    """Whether the web process at `url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False
