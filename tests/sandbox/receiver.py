"""A tiny threaded HTTP server that records what the sandbox posts to it (webhooks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))


# (status, content type, body)
Answer = tuple[int, str, bytes]


class HttpReceiver:
    """Records every POST; ``responder(request)`` may choose the answer (default 200, empty)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.responder: Callable[[Request], Answer] | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(
                    "POST", self.path, receiver.base_url + self.path, dict(self.headers.items()), body
                )
                with receiver._lock:
                    receiver.requests.append(request)
                    responder = receiver.responder
                status, content_type, answer = responder(request) if responder else (200, "text/plain", b"")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sandbox abandoned the request (e.g. /sandbox/reset)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.responder = None

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def wait_for(
        self,
        count: int,
        where: Callable[[Request], bool] = lambda r: True,
        timeout: float = 5.0,
    ) -> list[Request]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.snapshot() if where(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} request(s), got {len(found)}: {found}")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
