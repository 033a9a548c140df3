"""In-memory state shared by all providers: messages, request stats, failure injection."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
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
    # email, sms, whatsapp or push
    channel: str = "email"
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
            "channel": self.channel,
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
        channel: str | None = None,
    ) -> list[StoredMessage]:
        """Messages matching every given filter, oldest first."""
        result = []
        for msg in self._messages.values():
            if provider is not None and msg.provider != provider:
                continue
            if channel is not None and msg.channel != channel:
                continue
            if to is not None and msg.to.lower() != to.lower():
                continue
            if message_id is not None and message_id not in (
                msg.message_id,
                msg.extra.get("sg_message_id"),
                msg.extra.get("name"),
                msg.id,
            ):
                continue
            if custom_args and any(msg.custom_args.get(k) != v for k, v in custom_args.items()):
                continue
            result.append(msg)
        return result


class _Counters:
    """Request counters for one scope (all providers, or one provider)."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted = 0
        self.rejected = 0
        self.aborted = 0
        self.resets = 0
        self.by_status: Counter[str] = Counter()
        self._per_second: OrderedDict[int, int] = OrderedDict()

    def record_response(self, status: int, second: int) -> None:
        self.by_status[str(status)] += 1
        if 200 <= status < 300:
            self.accepted += 1
            self._per_second[second] = self._per_second.get(second, 0) + 1
            self.trim(second)
        else:
            self.rejected += 1

    def trim(self, now: int) -> None:
        cutoff = now - PER_SECOND_WINDOW
        while self._per_second:
            oldest = next(iter(self._per_second))
            if oldest > cutoff:
                break
            del self._per_second[oldest]

    def snapshot(self, now: int) -> dict[str, Any]:
        self.trim(now)
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "aborted": self.aborted,
            "resets": self.resets,
            "by_status": dict(sorted(self.by_status.items())),
            "per_second": {str(k): v for k, v in self._per_second.items()},
        }


class RequestStats:
    """Counters for provider API requests (not control/inspection endpoints).

    Every ``record_*`` call counts globally and, when ``provider`` is given, for
    that provider too (``by_provider`` in the snapshot). SMTP records SMTP reply
    codes (250, 550, 451, 421) where HTTP providers record HTTP statuses.
    """

    def __init__(self, providers: tuple[str, ...] = ()) -> None:
        self.providers = tuple(providers)
        self.reset()

    def reset(self) -> None:
        self._all = _Counters()
        self._by_provider: dict[str, _Counters] = {name: _Counters() for name in self.providers}

    def _scopes(self, provider: str | None) -> list[_Counters]:
        scopes = [self._all]
        if provider is not None:
            scopes.append(self._by_provider.setdefault(provider, _Counters()))
        return scopes

    # Backwards-compatible read access to the global counters.
    @property
    def requests(self) -> int:
        return self._all.requests

    @property
    def accepted(self) -> int:
        return self._all.accepted

    @property
    def rejected(self) -> int:
        return self._all.rejected

    @property
    def aborted(self) -> int:
        return self._all.aborted

    def record_request(self, provider: str | None = None) -> None:
        for scope in self._scopes(provider):
            scope.requests += 1

    def record_aborted(self, provider: str | None = None) -> None:
        for scope in self._scopes(provider):
            scope.aborted += 1

    def record_reset(self, provider: str | None = None) -> None:
        """A request answered by resetting the connection (provider ``down``)."""
        for scope in self._scopes(provider):
            scope.resets += 1

    def record_response(self, status: int, provider: str | None = None) -> None:
        second = int(time.time())
        for scope in self._scopes(provider):
            scope.record_response(status, second)

    def snapshot(self) -> dict[str, Any]:
        now = int(time.time())
        data = self._all.snapshot(now)
        data["by_provider"] = {name: c.snapshot(now) for name, c in self._by_provider.items()}
        return data


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
    # The provider resets every API connection (SMTP: 421 greeting, then close).
    down: bool = False
    # The provider holds every API request (SANDBOX_TIMEOUT_HOLD_S, default 60 s).
    timeout: bool = False

    def update(self, changes: Mapping[str, Any]) -> None:
        """Validate and merge ``changes``; nothing is applied if any key is invalid."""
        for key, value in validate_control(changes).items():
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


CONTROL_KEYS = frozenset(f.name for f in fields(ControlState))


def validate_control(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Checked copy of ``changes`` (ControlState keys only); raises ControlError."""
    unknown = set(changes) - CONTROL_KEYS
    if unknown:
        raise ControlError(f"unknown control key(s): {', '.join(sorted(unknown))}")
    validated: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("down", "timeout"):
            if not isinstance(value, bool):
                raise ControlError(f"{key} must be true or false")
            validated[key] = value
            continue
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
    return validated


class ControlBoard:
    """Global control state plus per-provider overrides.

    ``POST /sandbox/control`` without ``provider`` changes the global state, which
    every provider follows (``fail_next`` is one counter shared by all, as before
    per-provider scoping existed). With ``"provider": NAME`` the given keys become
    overrides for that provider only; an overridden key shadows the global one for
    that provider (an overridden ``fail_next`` is that provider's own counter)
    until ``POST /sandbox/reset``.

    Requests held by ``timeout`` are released by any control change or reset.
    """

    def __init__(self, providers: tuple[str, ...] = ()) -> None:
        self.providers = tuple(providers)
        self.globals = ControlState()
        self.overrides: dict[str, dict[str, Any]] = {name: {} for name in self.providers}
        self._release: asyncio.Event | None = None

    # -- changes -------------------------------------------------------------

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (optionally scoped by ``"provider"``); all or nothing."""
        changes = dict(changes)
        provider = changes.pop("provider", None)
        if provider is not None and provider not in self.providers:
            allowed = ", ".join(self.providers)
            raise ControlError(f"unknown provider {provider!r}; allowed: {allowed}")
        validated = validate_control(changes)
        if provider is None:
            for key, value in validated.items():
                setattr(self.globals, key, value)
        else:
            self.overrides[provider].update(validated)
        self.release_held()

    def reset(self) -> None:
        self.globals.reset()
        for overrides in self.overrides.values():
            overrides.clear()
        self.release_held()

    # -- reading -------------------------------------------------------------

    def effective(self, provider: str | None) -> ControlState:
        """The values that apply to ``provider`` (a copy)."""
        values = self.globals.to_dict()
        if provider is not None:
            values.update(self.overrides.get(provider, {}))
        return ControlState(**values)

    def take_failure(self, provider: str | None) -> bool:
        """Decide (and consume) whether ``provider``'s current request should fail."""
        overrides = self.overrides.get(provider, {}) if provider is not None else {}
        if "fail_next" in overrides:
            if overrides["fail_next"] > 0:
                overrides["fail_next"] -= 1
                return True
        elif self.globals.fail_next > 0:
            self.globals.fail_next -= 1
            return True
        rate = overrides.get("fail_rate", self.globals.fail_rate)
        return rate > 0 and random.random() < rate

    # Backwards compatibility: attribute reads give the global values.
    @property
    def latency_ms(self) -> int:
        return self.globals.latency_ms

    @property
    def fail_status(self) -> int:
        return self.globals.fail_status

    @property
    def retry_after(self) -> int:
        return self.globals.retry_after

    def to_dict(self) -> dict[str, Any]:
        """Global values at the top level (as before), plus ``providers``: each
        provider's effective values and its ``overrides``."""
        data = self.globals.to_dict()
        data["providers"] = {
            name: {**self.effective(name).to_dict(), "overrides": dict(self.overrides[name])}
            for name in self.providers
        }
        return data

    # -- holding requests (``timeout``) ---------------------------------------

    def _event(self) -> asyncio.Event:
        if self._release is None:
            self._release = asyncio.Event()
        return self._release

    def release_held(self) -> None:
        if self._release is not None:
            self._release.set()
            self._release = None

    async def hold(self, seconds: float, gone: Callable[[], bool] | None = None) -> bool:
        """Wait ``seconds`` or until the next control change/reset; True if released early.

        ``gone`` is polled so a request whose client gave up stops waiting soon."""
        event = self._event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 0.25))
            except TimeoutError:
                if gone is not None and gone():
                    return False
                continue
            return True
