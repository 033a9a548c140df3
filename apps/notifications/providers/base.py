"""The provider plugin contract.

A provider turns one OutboundMessage into one SendResult. The base class owns the shared flow
(build → call → classify, and turning unexpected exceptions into a classified result); a
provider module only builds its payload, makes its SDK call and maps its errors.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from .conf import TEST_MODE_PREFIX, provider_setting

logger = logging.getLogger(__name__)

LIVE = "live"
TEST = "test"
# Test-mode instances read their account settings under this prefix (TEST_MODE_SENDGRID_API_HOST …).


# Retryable error codes that say the provider could not be reached (classify_exception).
UNREACHABLE_CODES = frozenset({"connection_error", "timeout"})


class Outcome(StrEnum):
    SENT = "sent"  # the provider accepted it; a receipt may follow
    DELIVERED = "delivered"  # stored where the recipient reads it (in-app): final, no receipt
    RETRYABLE = "retryable"  # try again later (timeouts, 5xx, 429)
    PERMANENT = "permanent"  # never retry (invalid address, rejected content, 4xx)


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: str
    notification_id: str
    client_id: str
    channel: str
    to: str
    subject: str = ""
    text: str = ""
    html: str = ""
    from_address: str = ""
    category: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # Push: the recipient's active device tokens (one message is fanned out to each).
    tokens: tuple[str, ...] = ()
    # Push data payload (string values); in-app data (any JSON); provider-side template
    # (WhatsApp Content SID) and its variables.
    data: dict[str, Any] = field(default_factory=dict)
    provider_template_id: str = ""
    template_variables: dict[str, Any] = field(default_factory=dict)
    # Email: extra headers (List-Unsubscribe, List-Unsubscribe-Post …).
    headers: dict[str, str] = field(default_factory=dict)
    # In-app: whose inbox (Recipient.id), and where the message leads when clicked.
    recipient_id: str = ""
    action_url: str = ""
    # The request id of the work that sends it (apps/core/correlation.py): handed to the
    # provider where it echoes it back on the receipt (SendGrid custom_args, Vonage
    # client_ref, Twilio's status-callback URL, FCM data).
    request_id: str = ""


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider: str
    provider_message_id: str = ""
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None  # seconds, when the provider said
    suppress_address: bool = False  # permanent and the address itself is bad
    # Push: tokens the provider reported dead (deactivated at once).
    invalid_tokens: tuple[str, ...] = ()
    # Why each of `invalid_tokens` is dead (token → e.g. `unregistered`, `invalid_argument`);
    # a token missing here takes `detail["deactivation_reason"]`, then `error_code`.
    invalid_token_reasons: dict[str, str] = field(default_factory=dict)
    segments: int | None = None  # SMS segments billed
    detail: dict[str, Any] = field(default_factory=dict)

    def token_reason(self, token: str) -> str:
        """Why this dead token is dead (its own reason, not the batch's first one)."""
        return (self.invalid_token_reasons.get(token) or self.detail.get("deactivation_reason")
                or self.error_code or "invalid_token")

    @property
    def counts_against_provider(self) -> bool:
        """Whether this result says the provider is unhealthy (for the circuit breaker):
        retryable errors do; a rejected address or message does not."""
        return self.outcome == Outcome.RETRYABLE

    @property
    def unreachable(self) -> bool:
        """The provider could not be reached at all (refused, reset, timed out): after a few
        in a row its breaker opens whatever the volume, and the channel fails over or waits."""
        return self.outcome == Outcome.RETRYABLE and self.error_code in UNREACHABLE_CODES

    @classmethod
    def sent(cls, provider: str, message_id: str, **extra: Any) -> SendResult:
        return cls(Outcome.SENT, provider, provider_message_id=message_id, **extra)

    @classmethod
    def delivered(cls, provider: str, message_id: str, **extra: Any) -> SendResult:
        """Stored at its destination (the in-app inbox): the delivery is `delivered` at once."""
        return cls(Outcome.DELIVERED, provider, provider_message_id=message_id, **extra)

    @classmethod
    def retryable(
        cls, provider: str, code: str, message: str, retry_after: float | None = None
    ) -> SendResult:
        return cls(Outcome.RETRYABLE, provider, error_code=code, error_message=message,
                   retry_after=retry_after)

    @classmethod
    def permanent(
        cls, provider: str, code: str, message: str, *, suppress: bool = False, **extra: Any
    ) -> SendResult:
        return cls(Outcome.PERMANENT, provider, error_code=code, error_message=message,
                   suppress_address=suppress, **extra)


class Provider(ABC):
    """One provider account for one channel. Instances must be safe to share across threads.

    An instance is built for a mode. Live reads the settings as they are; test (for
    notifications accepted with a test API key) reads every one of `account_settings` — where
    the calls go and with which credentials — from `TEST_MODE_<NAME>` instead, and never falls
    back to the live value: a missing test-mode setting leaves the provider unconfigured. Other
    settings (timeouts, default senders, PUBLIC_BASE_URL) are shared. Read settings through
    `self.setting(name)`, at call time."""

    name: ClassVar[str]
    channel: ClassVar[str]
    # Where calls go and with which credentials: TEST_MODE_<NAME> in test mode.
    account_settings: ClassVar[tuple[str, ...]] = ()
    # Must be non-empty for the provider to be offered at all.
    required_settings: ClassVar[tuple[str, ...]] = ()
    # Where an empty value means "the SDK's default", i.e. the real provider: test mode
    # requires them too, so a test-mode provider never falls through to a real host.
    endpoint_settings: ClassVar[tuple[str, ...]] = ()
    # A provider that stores instead of calling out (in-app): dispatch gives it a chunk's
    # messages in one `send_many` call, in the transaction that records their outcomes, and
    # asks no breaker or rate limit.
    batched: ClassVar[bool] = False

    def __init__(self, mode: str = LIVE) -> None:
        if mode not in (LIVE, TEST):
            raise ValueError(f"Unknown provider mode {mode!r}.")
        self.mode = mode

    @property
    def account(self) -> str:
        """The provider account this instance sends with (breakers and rate limits are kept
        per account): "default", or "test" for the sandbox account of test mode."""
        return "test" if self.mode == TEST else "default"

    def setting(self, name: str) -> Any:
        """A setting by its name, resolved as its folder declares it (providers/conf.py)."""
        if self.mode == TEST and name in self.account_settings:
            return provider_setting(TEST_MODE_PREFIX + name, "")
        return provider_setting(name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.mode})>"

    def is_configured(self) -> bool:
        """False when the settings this provider needs are missing (the channel is then not
        offered to senders of this mode)."""
        needed = self.required_settings + (self.endpoint_settings if self.mode == TEST else ())
        return all(self.setting(name) for name in needed)

    def cannot_send(self, message: OutboundMessage) -> str:
        """Why this provider can never send this message (empty: it can). Failover skips such
        a provider for the message instead of failing it there (e.g. a WhatsApp template
        approved at Twilio, named by its Content SID, that Vonage does not have)."""
        return ""

    def send(self, message: OutboundMessage) -> SendResult:
        try:
            payload = self.build_payload(message)
        except Exception as exc:  # noqa: BLE001 - a message we cannot build is never sendable
            return SendResult.permanent(self.name, "invalid_message", f"{type(exc).__name__}: {exc}")
        try:
            return self.call(payload, message)
        except Exception as exc:  # noqa: BLE001 - classify, never swallow
            logger.warning("provider %s raised %s for delivery %s", self.name,
                           type(exc).__name__, message.delivery_id)
            return self.classify_exception(exc)

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """One result per message, in order (a batched provider does it in one go)."""
        return [self.send(m) for m in messages]

    @abstractmethod
    def build_payload(self, message: OutboundMessage) -> Any:
        """The provider's request for this message (raise ValueError if it cannot be built)."""

    @abstractmethod
    def call(self, payload: Any, message: OutboundMessage) -> SendResult:
        """Calls the provider's SDK and classifies its answer."""

    def classify_exception(self, exc: Exception) -> SendResult:
        """Anything the SDK raised that `call` did not map: retryable. A provider that could not
        be reached (refused, reset, unreachable, a dropped keep-alive connection) is
        `connection_error` whatever the SDK wrapped it in; a timeout is `timeout`; anything
        else `provider_error`."""
        text = f"{type(exc).__name__}: {exc}"[:300]
        if _is_timeout(exc):
            return SendResult.retryable(self.name, "timeout", text)
        if _is_connection_error(exc):
            return SendResult.retryable(self.name, "connection_error", text)
        return SendResult.retryable(self.name, "provider_error", text)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (`__cause__`/`__context__`, urllib's `reason`)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        reason = getattr(current, "reason", None)
        current = (current.__cause__ or current.__context__
                   or (reason if isinstance(reason, BaseException) else None))
    return seen


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(e, TimeoutError) or type(e).__name__ in ("Timeout", "ReadTimeout",
               "ConnectTimeout", "ReadTimeoutError", "ConnectTimeoutError") for e in _causes(exc))


def _is_connection_error(exc: BaseException) -> bool:
    import http.client

    return any(isinstance(e, (ConnectionError, http.client.RemoteDisconnected,
                              http.client.IncompleteRead))
               or type(e).__name__ in ("ConnectionError", "ProtocolError", "NewConnectionError",
                                       "MaxRetryError", "TransportError")
               for e in _causes(exc))
