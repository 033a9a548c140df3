"""Run the provider sandbox (``python -m sandbox``) as a subprocess in tests.

Stdlib only (no Django, no aiohttp; SDKs are imported lazily by the helpers that
need them), so it can be used from any test or script::

    with SandboxProcess(SANDBOX_SENDGRID_CALLBACK_URL="") as sandbox:
        sg = SendGridAPIClient(api_key="sandbox-sendgrid-key", host=sandbox.url)
        ...
        assert sandbox.messages(to="dora@example.com")

        client = sandbox.twilio_client()          # twilio SDK aimed at the sandbox
        smtplib.SMTP(sandbox.host, sandbox.smtp_port)
        FCMNotification(service_account_file=sandbox.fcm_service_account_file, ...)
"""

from __future__ import annotations

import json
import os
import shutil
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
DEFAULT_TWILIO_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_TWILIO_AUTH_TOKEN = "sandbox-twilio-token"
DEFAULT_FCM_PROJECT_ID = "notifyhub-sandbox"


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

    The SMTP server gets a free port too (``smtp_port``; pass ``smtp_port=0`` or
    ``SANDBOX_SMTP_PORT="0"`` to disable it).  Unless ``SANDBOX_FCM_SERVICE_ACCOUNT_FILE``
    is given, ``start()`` creates a service-account JSON (token_uri -> this sandbox)
    in a temporary directory with the sandbox's CLI, removed again by ``stop()``.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
        smtp_port: int | None = None,
        **overrides: str,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.env = dict(os.environ if env is None else env)
        self.env.update(overrides)
        self.env["SANDBOX_HOST"] = host
        self.env["SANDBOX_PORT"] = str(self.port)
        if smtp_port is not None:
            self.env["SANDBOX_SMTP_PORT"] = str(smtp_port)
        elif not overrides.get("SANDBOX_SMTP_PORT"):
            chosen = free_port(host)
            while chosen == self.port:
                chosen = free_port(host)
            self.env["SANDBOX_SMTP_PORT"] = str(chosen)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopped_log = ""
        self._tmpdir: str | None = None
        self._given_service_account = bool(self.env.get("SANDBOX_FCM_SERVICE_ACCOUNT_FILE"))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def smtp_port(self) -> int:
        """The SMTP server's port (0: disabled)."""
        return int(self.env.get("SANDBOX_SMTP_PORT") or 0)

    @property
    def twilio_account_sid(self) -> str:
        return self.env.get("SANDBOX_TWILIO_ACCOUNT_SID") or DEFAULT_TWILIO_ACCOUNT_SID

    @property
    def twilio_auth_token(self) -> str:
        return self.env.get("SANDBOX_TWILIO_AUTH_TOKEN") or DEFAULT_TWILIO_AUTH_TOKEN

    @property
    def fcm_service_account_file(self) -> str | None:
        """Service-account JSON the sandbox verifies FCM token requests with."""
        return self.env.get("SANDBOX_FCM_SERVICE_ACCOUNT_FILE") or None

    @property
    def fcm_project_id(self) -> str:
        path = self.fcm_service_account_file
        if path and os.path.exists(path):
            return str(json.loads(Path(path).read_text(encoding="utf-8")).get("project_id") or "")
        return DEFAULT_FCM_PROJECT_ID

    @property
    def fcm_endpoint_base(self) -> str:
        """Value for pyfcm's ``FCM_END_POINT_BASE``."""
        return f"{self.url}/v1/projects"

    def twilio_client(self, **http_client_kwargs: Any) -> Any:
        """A ``twilio.rest.Client`` with ``api.base_url`` aimed at this sandbox
        (``http_client_kwargs`` go to ``TwilioHttpClient``, e.g. ``timeout=5``)."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        client = Client(
            self.twilio_account_sid,
            self.twilio_auth_token,
            http_client=TwilioHttpClient(**http_client_kwargs),
        )
        client.api.base_url = self.url
        return client

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self.proc is not None:
            raise SandboxError("sandbox already started")
        if not self._given_service_account:
            self._create_service_account()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--host", self.host, "--port", str(self.port)],
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
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self.env.pop("SANDBOX_FCM_SERVICE_ACCOUNT_FILE", None)

    def _create_service_account(self) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix="sandbox-fcm-")
        path = os.path.join(self._tmpdir, "fcm-service-account.json")
        result = subprocess.run(
            [sys.executable, "-m", "sandbox", "fcm-service-account", "--out", path,
             "--token-uri", f"{self.url}/token"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            raise SandboxError(f"fcm-service-account failed:\n{result.stderr}")
        self.env["SANDBOX_FCM_SERVICE_ACCOUNT_FILE"] = path

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
        """Stored messages, oldest first; filters: ``to``, ``message_id``, ``provider``,
        ``channel`` and ``custom_args={"key": "value"}``."""
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
        """Merge ``changes`` (latency_ms, fail_next, fail_status, retry_after, fail_rate,
        down, timeout; ``provider="twilio"`` scopes them to one provider) into the
        control state; with no arguments just return it."""
        if not changes:
            return dict(self._request("GET", "/sandbox/control"))
        return dict(self._request("POST", "/sandbox/control", changes))

    def reset(self) -> None:
        self._request("POST", "/sandbox/reset", {})

    def inbound(
        self,
        from_: str,
        to: str,
        body: str,
        *,
        channel: str = "sms",
        url: str | None = None,
        timeout: float = 20.0,
        **extra: Any,
    ) -> dict:
        """Simulate a user texting ``to``: the sandbox posts a signed Twilio inbound
        webhook (to ``url`` or SANDBOX_TWILIO_INBOUND_URL) and returns NotifyHub's answer
        as ``{"status", "body", "content_type", "params", "url", "message_sid"}``."""
        payload: dict[str, Any] = {"from": from_, "to": to, "body": body, "channel": channel, **extra}
        if url is not None:
            payload["url"] = url
        return dict(self._request("POST", "/sandbox/twilio/inbound", payload, timeout=timeout))

    def vonage_inbound(self, from_: str, to: str, text: str, *, channel: str = "sms",
                       url: str | None = None, timeout: float = 20.0) -> dict:
        """Simulate a user texting ``to`` through Vonage: the sandbox posts a signed Vonage
        inbound webhook (to ``url`` or SANDBOX_VONAGE_INBOUND_URL) and returns NotifyHub's
        answer as ``{"status", "body", "payload", "url"}``."""
        payload: dict[str, Any] = {"from": from_, "to": to, "text": text, "channel": channel}
        if url is not None:
            payload["url"] = url
        return dict(self._request("POST", "/sandbox/vonage/inbound", payload, timeout=timeout))

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
