"""Log helpers: a request id on every line, and masking for PII."""

from __future__ import annotations

import contextvars
import logging
import re

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Anything shaped like an email address or an E.164 number (optionally "whatsapp:"-prefixed).
EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
E164_PATTERN = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}(?!\d)")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def mask_email(value: str | None) -> str:
    """`jane.doe@example.com` → `j***@example.com`; logs never carry full addresses."""
    if not value or "@" not in value:
        return "***"
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str | None) -> str:
    """`+14155550100` → `+14***00`."""
    if not value:
        return "***"
    return f"{value[:3]}***{value[-2:]}"


def mask_address(value: str | None) -> str:
    """An email or a phone number, masked as its kind is."""
    return mask_email(value) if value and "@" in value else mask_phone(value)


def redact_pii(text: str) -> str:
    """The text with every email address and E.164 number in it masked: for provider error
    messages stored on deliveries ("The 'To' number +1… is not a valid phone number") and, as
    a safety net, every log line (RedactPIIFilter)."""
    if "@" in text:
        text = EMAIL_PATTERN.sub(lambda m: mask_email(m.group(0)), text)
    if "+" in text:
        text = E164_PATTERN.sub(lambda m: mask_phone(m.group(0)), text)
    return text


class RedactPIIFilter(logging.Filter):
    """Masks email addresses and E.164 numbers in a record's message, exception and stack
    text before any formatter sees them. On the root handlers (settings LOGGING): code should
    still mask what it logs (mask_email / mask_phone); this catches what slips through."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's to report
            return True
        redacted = redact_pii(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_pii(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_pii(record.stack_info)
        return True
