"""The provider plugin contract.

A provider turns one OutboundMessage into one SendResult. The base class owns the shared flow
(build → call → classify, and turning unexpected exceptions into a classified result); a
provider module only builds its payload, makes its SDK call and maps its errors.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    SENT = "sent"  # the provider accepted it; a receipt may follow
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
    # Push data payload; provider-side template (WhatsApp Content SID) and its variables.
    data: dict[str, str] = field(default_factory=dict)
    provider_template_id: str = ""
    template_variables: dict[str, Any] = field(default_factory=dict)
    # Email: extra headers (List-Unsubscribe, List-Unsubscribe-Post …).
    headers: dict[str, str] = field(default_factory=dict)


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
    segments: int | None = None  # SMS segments billed
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def counts_against_provider(self) -> bool:
        """Whether this result says the provider is unhealthy (for the circuit breaker):
        retryable errors do; a rejected address or message does not."""
        return self.outcome == Outcome.RETRYABLE

    @classmethod
    def sent(cls, provider: str, message_id: str, **extra: Any) -> SendResult:
        return cls(Outcome.SENT, provider, provider_message_id=message_id, **extra)

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
    """One provider account for one channel. Instances must be safe to share across threads."""

    name: ClassVar[str]
    channel: ClassVar[str]

    def is_configured(self) -> bool:
        """False when the settings this provider needs are missing (the channel is then not
        offered to senders)."""
        return True

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

    @abstractmethod
    def build_payload(self, message: OutboundMessage) -> Any:
        """The provider's request for this message (raise ValueError if it cannot be built)."""

    @abstractmethod
    def call(self, payload: Any, message: OutboundMessage) -> SendResult:
        """Calls the provider's SDK and classifies its answer."""

    def classify_exception(self, exc: Exception) -> SendResult:
        """Anything the SDK raised that `call` did not map: network trouble is retryable."""
        return SendResult.retryable(self.name, "provider_error", f"{type(exc).__name__}: {exc}")
