"""Server-Sent Events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html).

JSON never holds a raw line break (json.dumps escapes them), so every event's data is one
`data:` line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

HEARTBEAT = b": heartbeat\n\n"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def message_frame(seq: int, message: Mapping[str, Any]) -> bytes:
    """One inbox message: `id:` is its per-recipient sequence number, which the browser sends
    back as `Last-Event-ID` when it reconnects."""
    return f"id: {int(seq)}\nevent: message\ndata: {_json(message)}\n\n".encode()


def counts_frame(counts: Mapping[str, Any]) -> bytes:
    """The inbox's counts (`unread`, `unseen`, `total`). No `id:`: the browser's last event id
    stays the last message's."""
    body = {key: value for key, value in counts.items() if key != "type"}
    return f"event: counts\ndata: {_json(body)}\n\n".encode()


def retry_frame(milliseconds: int) -> bytes:
    """How long the browser waits before it reconnects."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def token_expired_frame() -> bytes:
    """The last event of a stream whose token expired: the stream closes after it. The client
    gets a fresh token and reconnects (with Last-Event-ID: nothing is lost)."""
    body = {"code": "token_expired",
            "message": "The token has expired: reconnect with a fresh token and Last-Event-ID."}
    return f"event: token_expired\ndata: {_json(body)}\n\n".encode()
