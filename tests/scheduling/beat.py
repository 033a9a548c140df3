"""celery beat with django-celery-beat's DatabaseScheduler (as `make run` / the Procfile run
it) in a child process: it reads the PeriodicTask rows the scheduling services write.

The worker fixture's embedded beat (`start_worker(beat=True)`) uses celery's
PersistentScheduler, which knows only `beat_schedule` from celery_app.py, not these rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import IO

from tests.support.processes import REPO_ROOT


class DatabaseBeatProcess:
    def __init__(self, env: Mapping[str, str], *, max_interval: int = 1) -> None:
        self.env = dict(env)
        self.max_interval = max_interval
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> DatabaseBeatProcess:
        cmd = [
            sys.executable, "-m", "celery", "-A", "celery_app", "beat",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            # Look at the schedule every second, so a tick leaves within ~1 s of its minute.
            "--max-interval", str(self.max_interval), "--loglevel", "INFO",
        ]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        if not self._log:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def __enter__(self) -> DatabaseBeatProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
