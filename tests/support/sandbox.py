"""Run the provider sandbox (``python -m apps.sandbox``) as a subprocess in tests.

Stdlib only (no Django, no aiohttp), so it can be used from any test or script::

    with SandboxProcess(SANDBOX_SENDGRID_CALLBACK_URL="") as sandbox:
        sg = SendGridAPIClient(api_key="sandbox-sendgrid-key", host=sandbox.url)
        ...
        assert sandbox.messages(to="dora@example.com")
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_API_KEY = "sandbox-sendgrid-key"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SandboxError(RuntimeError):
    pass


class SandboxProcess:
    """The sandbox server in a child process.

    ``env`` is the base environment (default: ``os.environ``); keyword
    ``overrides`` (e.g. ``SANDBOX_SENDGRID_CALLBACK_URL=""``) are applied on top.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
        **overrides: str,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.env = dict(os.environ if env is None else env)
        self.env.update(overrides)
        self.env["SANDBOX_HOST"] = host
        self.env["SANDBOX_PORT"] = str(self.port)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopped_log = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self.proc is not None:
            raise SandboxError("sandbox already started")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apps.sandbox", "serve", "--host", self.host, "--port", str(self.port)],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                log = self.log_text()
                self.stop()
                raise SandboxError(f"sandbox exited with code {code} during startup:\n{log}")
            try:
                if self._request("GET", "/healthz", timeout=1.0) == {"status": "ok"}:
                    return self
            except (OSError, SandboxError):
                pass
            if time.monotonic() > deadline:
                log = self.log_text()
                self.stop()
                raise SandboxError(f"sandbox not healthy after {self.startup_timeout:.0f} s:\n{log}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._stopped_log = self.log_text()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        """Everything the sandbox wrote to stdout/stderr so far."""
        if self._log is None:
            return self._stopped_log
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    # -- HTTP helpers ------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 10.0,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise SandboxError(f"{method} {path} -> HTTP {exc.code}: {detail}") from exc
        return json.loads(raw) if raw else None

    def messages(self, custom_args: Mapping[str, str] | None = None, **filters: str) -> list[dict]:
        """Stored messages, oldest first; filters: ``to``, ``message_id``, ``provider``
        and ``custom_args={"key": "value"}``."""
        query: dict[str, str] = dict(filters)
        for key, value in (custom_args or {}).items():
            query[f"custom_arg.{key}"] = value
        path = "/sandbox/messages"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return list(self._request("GET", path)["messages"])

    def message(self, sandbox_id: str) -> dict:
        return dict(self._request("GET", f"/sandbox/messages/{urllib.parse.quote(sandbox_id)}"))

    def wait_for_messages(
        self,
        count: int = 1,
        *,
        timeout: float = 10.0,
        custom_args: Mapping[str, str] | None = None,
        **filters: str,
    ) -> list[dict]:
        """Poll until at least ``count`` matching messages exist."""

        def enough() -> list[dict] | None:
            found = self.messages(custom_args, **filters)
            return found if len(found) >= count else None

        return list(
            self.wait_until(
                enough,
                timeout=timeout,
                what=f"{count} message(s) matching {filters} {custom_args or {}}",
            )
        )

    def stats(self) -> dict:
        return dict(self._request("GET", "/sandbox/stats"))

    def control(self, **changes: Any) -> dict:
        """Merge ``changes`` (latency_ms, fail_next, fail_status, retry_after, fail_rate)
        into the control state; with no arguments just return it."""
        if not changes:
            return dict(self._request("GET", "/sandbox/control"))
        return dict(self._request("POST", "/sandbox/control", changes))

    def reset(self) -> None:
        self._request("POST", "/sandbox/reset", {})

    def public_key(self) -> str:
        """SendGrid-style verification key of the running sandbox (also for ephemeral keys)."""
        return str(self._request("GET", "/sandbox/sendgrid/public_key")["public_key"])

    @staticmethod
    def wait_until(
        predicate: Callable[[], Any],
        *,
        timeout: float = 10.0,
        interval: float = 0.05,
        what: str = "condition",
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)
