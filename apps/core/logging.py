"""Log helpers: a request id on every line, and masking for PII."""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


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
    if not value:
        return "***"
    return f"{value[:3]}***{value[-2:]}"
