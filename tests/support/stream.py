"""The inbox stream process (`python -m apps.stream`) in a child process, and a small SSE
reader over a raw socket (what a browser's EventSource does, minus the reconnects)."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.processes import ChildProcess
from tests.support.sandbox import free_port


class StreamProcess(ChildProcess):
    def __init__(self, env: Mapping[str, str], *, port: int | None = None) -> None:
        super().__init__(env)
        self.port = port or free_port()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "apps.stream", "--port", str(self.port)]

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/inbox/stream/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.load(response))

    def wait_ready(self, timeout: float = 30.0) -> StreamProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the stream process exited:\n{self.log_text()[-3000:]}")
            try:
                if self.health()["subscribed"]:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the stream process did not become ready:\n{self.log_text()[-3000:]}")


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comment: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    sock: socket.socket | None = None
    buffer: bytes = b""
    events: list[SseEvent] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    def next_event(self, timeout: float = 5.0) -> SseEvent:
        """The next event, comment or retry hint (each block ended by a blank line)."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no event within {timeout} s (buffer {self.buffer[:200]!r})")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the stream ended")
            self.buffer += chunk
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        out = SseEvent()
        data: list[str] = []
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                out.comment = value
            elif name == "data":
                data.append(value)
            elif name == "event":
                out.event = value
            elif name == "id":
                out.id = value
            elif name == "retry":
                out.retry = int(value)
        out.data = "\n".join(data)
        return out

    def next_named(self, timeout: float = 5.0) -> SseEvent:
        """The next event that is neither a comment nor a retry hint."""
        while True:
            event = self.next_event(timeout)
            if event.comment is None and event.retry is None:
                return event

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def open_stream(port: int, path: str = "/api/v1/inbox/stream", *, method: str = "GET",
                headers: Mapping[str, str] | None = None, rcvbuf: int | None = None,
                timeout: float = 10.0) -> Response:
    """Sends the request and reads the response head (and, unless it is a stream, the body)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response head: {raw!r}")
        raw += chunk
    head, rest = raw.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    response = Response(int(status_line.split(" ")[1]), response_headers)
    if response_headers.get("content-type", "").startswith("text/event-stream"):
        response.sock, response.buffer = sock, rest
        return response
    body = rest
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    sock.close()
    response.body = body
    return response
