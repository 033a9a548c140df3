"""In-memory state shared by all providers: messages, request stats, failure injection."""

from __future__ import annotations

import random
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

PER_SECOND_WINDOW = 600  # seconds of per-second history kept in stats


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mask_email(address: str) -> str:
    """``dora@example.com`` -> ``d***@example.com``; safe to log."""
    local, sep, domain = address.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


@dataclass
class StoredMessage:
    """One accepted message for one recipient."""

    id: str
    provider: str
    message_id: str
    to: str
    from_: str
    subject: str | None
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    custom_args: dict[str, str] = field(default_factory=dict)
    received_at: str = field(default_factory=utc_now_iso)
    # Provider-specific extras (e.g. SendGrid sg_message_id, cc, bcc, template_id).
    extra: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return self.events[-1]["event"] if self.events else None

    def record_event(self, event: str, timestamp: int, event_id: str) -> None:
        self.events.append({"event": event, "timestamp": timestamp, "event_id": event_id})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "provider": self.provider,
            "message_id": self.message_id,
            "to": self.to,
            "from": self.from_,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "headers": dict(self.headers),
            "categories": list(self.categories),
            "custom_args": dict(self.custom_args),
            "received_at": self.received_at,
            "status": self.status,
        }
        for key, value in self.extra.items():
            data.setdefault(key, value)
        data["events"] = [dict(e) for e in self.events]
        return data


class MessageStore:
    def __init__(self) -> None:
        self._messages: OrderedDict[str, StoredMessage] = OrderedDict()

    def add(self, message: StoredMessage) -> None:
        self._messages[message.id] = message

    def get(self, message_id: str) -> StoredMessage | None:
        return self._messages.get(message_id)

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter(list(self._messages.values()))

    def clear(self) -> None:
        self._messages.clear()

    def filter(
        self,
        *,
        to: str | None = None,
        message_id: str | None = None,
        custom_args: Mapping[str, str] | None = None,
        provider: str | None = None,
    ) -> list[StoredMessage]:
        """Messages matching every given filter, oldest first."""
        result = []
        for msg in self._messages.values():
            if provider is not None and msg.provider != provider:
                continue
            if to is not None and msg.to.lower() != to.lower():
                continue
            if message_id is not None and message_id not in (
                msg.message_id,
                msg.extra.get("sg_message_id"),
                msg.id,
            ):
                continue
            if custom_args and any(msg.custom_args.get(k) != v for k, v in custom_args.items()):
                continue
            result.append(msg)
        return result


class RequestStats:
    """Counters for provider API requests (not control/inspection endpoints)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.accepted = 0
        self.rejected = 0
        self.aborted = 0
        self.by_status: Counter[str] = Counter()
        self._per_second: OrderedDict[int, int] = OrderedDict()

    def record_request(self) -> None:
        self.requests += 1

    def record_aborted(self) -> None:
        self.aborted += 1

    def record_response(self, status: int) -> None:
        self.by_status[str(status)] += 1
        if 200 <= status < 300:
            self.accepted += 1
            second = int(time.time())
            self._per_second[second] = self._per_second.get(second, 0) + 1
            self._trim(second)
        else:
            self.rejected += 1

    def _trim(self, now: int) -> None:
        cutoff = now - PER_SECOND_WINDOW
        while self._per_second:
            oldest = next(iter(self._per_second))
            if oldest > cutoff:
                break
            del self._per_second[oldest]

    def snapshot(self) -> dict[str, Any]:
        self._trim(int(time.time()))
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "aborted": self.aborted,
            "by_status": dict(sorted(self.by_status.items())),
            "per_second": {str(k): v for k, v in self._per_second.items()},
        }


class ControlError(ValueError):
    pass


@dataclass
class ControlState:
    """Failure injection and latency applied to provider API requests."""

    latency_ms: int = 0
    fail_next: int = 0
    fail_status: int = 500
    retry_after: int = 1
    fail_rate: float = 0.0

    def update(self, changes: Mapping[str, Any]) -> None:
        """Validate and merge ``changes``; nothing is applied if any key is invalid."""
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ControlError(f"unknown control key(s): {', '.join(sorted(unknown))}")
        validated: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "fail_rate":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ControlError("fail_rate must be a number between 0 and 1")
                if not 0.0 <= float(value) <= 1.0:
                    raise ControlError("fail_rate must be between 0 and 1")
                validated[key] = float(value)
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ControlError(f"{key} must be an integer")
            if key == "fail_status" and not 400 <= value <= 599:
                raise ControlError("fail_status must be an HTTP error status (400-599)")
            if value < 0:
                raise ControlError(f"{key} must be >= 0")
            validated[key] = value
        for key, value in validated.items():
            setattr(self, key, value)

    def take_failure(self) -> bool:
        """Decide (and consume) whether the current provider request should fail."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.fail_rate > 0 and random.random() < self.fail_rate

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
