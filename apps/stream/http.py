"""The one HTTP/1.1 request a stream connection carries, and the answers that end one.

A stream connection is one GET whose response never ends, so the process speaks just enough
HTTP for it: the request head (request line and headers, at most `MAX_HEAD_BYTES`, no body)
and a response head; the stream's body runs until the connection closes (`Connection:
close`, no length: RFC 9112 §6.3). Every error answer closes the connection."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apps.core.exceptions import error_body

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100


class BadRequest(Exception):
    """The head is not a request this server can read (answered 400, or 431 when too big)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def parse_head(raw: bytes) -> Request:
    """`raw`: the bytes before the blank line that ends the head."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("Malformed request line.")
    method, target = parts[0].decode("ascii", "replace"), parts[1].decode("latin-1")
    if not target.startswith("/"):
        raise BadRequest("The request target must be a path.")
    headers: dict[str, str] = {}
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest("Too many headers.", status=431)
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest("Malformed header line.")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        # Repeated headers are joined as RFC 9110 §5.3 allows (none that matters here repeats).
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    if headers.get("transfer-encoding") or headers.get("content-length", "0") not in ("", "0"):
        raise BadRequest("A stream request has no body.")
    url = urlsplit(target)
    return Request(method=method, path=url.path, query=parse_qs(url.query), headers=headers)


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> bytes:
    payload = json.dumps(body).encode()
    return response_head(status, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
        *(headers or []),
    ]) + payload


def error_response(status: int, code: str, message: str, fields: dict[str, Any] | None = None,
                   headers: list[tuple[str, str]] | None = None) -> bytes:
    """The API's error body (`{"error": {"code", "message", "fields"}}`)."""
    return json_response(status, error_body(code, message, fields), headers)
