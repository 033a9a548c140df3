"""Log helpers: a request id and the ids of what is being worked on on every line, masking
for PII, and the JSON line format of production (`LOG_FORMAT=json`)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Anything shaped like an email address or an E.164 number (optionally "whatsapp:"-prefixed).
EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
E164_PATTERN = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}(?!\d)")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


# The ids a log line is about: bound for a block of work (`with log_context(client=…)`), or
# given per call (`logger.info(…, extra={"delivery_id": …})`, which wins).
CONTEXT_FIELDS = ("client", "notification_id", "delivery_id")
log_context_var: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "log_context", default={})  # noqa: B039 - never mutated: replaced by a new dict


@contextlib.contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every line logged inside the block carries these ids (client, notification_id,
    delivery_id); None leaves one out."""
    token = log_context_var.set({**log_context_var.get(),
                                 **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        log_context_var.reset(token)


def log_context_bind(**ids: object) -> None:
    """log_context() for the rest of this context (a request: RequestIdMiddleware starts each
    one with none bound)."""
    log_context_var.set({**log_context_var.get(),
                         **{k: str(v) for k, v in ids.items() if v is not None}})


def _current_task() -> Any:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency; the sandbox runs without
        return None
    return current_task if current_task else None


class ContextFilter(logging.Filter):
    """Adds `client`, `notification_id`, `delivery_id` (log_context / extra) and, in a Celery
    worker, the running task's name and queue (`task_name`, `queue`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = log_context_var.get()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, context.get(name))
        task = _current_task()
        if not hasattr(record, "task_name"):
            record.task_name = getattr(task, "name", None) if task is not None else None
        if not hasattr(record, "queue"):
            info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
            record.queue = info.get("routing_key") if isinstance(info, dict) else None
        return True


def configure_logging(config: dict[str, Any]) -> None:
    """settings.LOGGING_CONFIG: Django's dictConfig, and with JSON lines Python's warnings go
    through logging too (a library's warning would otherwise be a bare text line on stderr)."""
    import logging.config

    logging.config.dictConfig(config)
    console = config.get("handlers", {}).get("console", {})
    logging.captureWarnings(console.get("formatter") == "json")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line (python-json-logger): time, level, logger, message, request_id,
    client, notification_id, delivery_id, task, queue, and exc_info for an exception.

    Only these keys are written: a record's other attributes (Django's request logger attaches
    the request object, whose repr holds the URL) never reach the line, and every string value
    goes through redact_pii as the message does (RedactPIIFilter)."""

    FIELDS = ("time", "level", "logger", "message", "request_id", "client", "notification_id",
              "delivery_id", "task", "queue", "exc_info", "stack_info")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger",
                                            "task_name": "task"})
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s %(request_id)s %(client)s "
                                 "%(notification_id)s %(delivery_id)s %(task_name)s %(queue)s")
        super().__init__(*args, **kwargs)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        kept = {key: log_data[key] for key in self.FIELDS if key in log_data}
        for key, value in kept.items():
            if isinstance(value, str):
                kept[key] = redact_pii(value)
        if kept.get("request_id") == "-":
            kept["request_id"] = None
        return kept


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


# --- URLs in access logs ------------------------------------------------------------------------
#
# A URL can carry PII: an admin search (`?q=someone@example.com`), a list filter
# (`?recipient=aud_q1`), a recipient's external id in an API path (`/recipients/jane@x.com`), a
# pagination cursor (which encodes the last row's sort key). Access logs write URLs masked:
# every query value becomes `***` except short enumerations under a few known keys, and a path
# segment stays only if it is a fixed word of the URL configuration (`api`, `recipients`,
# `change` …), a UUID, or an integer primary key under /admin/; anything else is `***`.

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_INT = re.compile(r"^\d{1,18}$")
_LITERAL = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-\[\]]{1,40}$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_,.\-]{0,32}$")
# Query keys whose values are enumerations, numbers or sort orders, never an address or an id.
SAFE_QUERY_KEYS = frozenset({"status", "channel", "priority", "category", "page", "page_size",
                             "limit", "ordering", "o", "p", "all", "format", "e"})
MASK = "***"
_route_words: frozenset[str] | None = None


def _words_of(pattern: str) -> set[str]:
    """The fixed path segments of one URL pattern (`recipients/<str:external_id>/devices` →
    recipients, devices; a regex's literal alternatives `^(?P<app_label>auth|recipients)/$` →
    auth, recipients)."""
    words: set[str] = set()
    for segment in pattern.strip("^$").split("/"):
        segment = segment.strip("^$")
        if _LITERAL.match(segment):
            words.add(segment)
        else:
            alternatives = re.fullmatch(r"\(\?P<\w+>([A-Za-z0-9_.|\-]+)\)", segment)
            if alternatives:
                words.update(alternatives.group(1).split("|"))
    return words


def route_words() -> frozenset[str]:
    """Every fixed path segment of the Django URL configuration (empty outside Django)."""
    global _route_words
    if _route_words is None:
        words: set[str] = set()
        try:
            from django.urls import URLResolver, get_resolver

            def walk(patterns: list[object]) -> None:
                for pattern in patterns:
                    words.update(_words_of(str(pattern.pattern)))  # type: ignore[attr-defined]
                    if isinstance(pattern, URLResolver):
                        walk(list(pattern.url_patterns))

            walk(list(get_resolver().url_patterns))
        except Exception:  # noqa: BLE001 - no Django (the sandbox), or not configured yet
            return frozenset()
        _route_words = frozenset(words)
    return _route_words


def _mask_query(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not _SAFE_KEY.match(key):
            parts.append(MASK)
        elif key in SAFE_QUERY_KEYS and _SAFE_VALUE.match(value):
            parts.append(pair)
        else:
            parts.append(f"{key}{sep}{MASK if value else ''}")
    return "&".join(parts)


_ADDRESS_LIKE = re.compile(r"@|%40|\+|%2B|\d{7}", re.IGNORECASE)


def outside_django_segment(segment: str) -> bool:
    """For a process without Django's URLs (the sandbox): a segment is kept unless it could
    be an address (`@`, `+`, seven digits in a row, percent-encoded or not)."""
    return not _ADDRESS_LIKE.search(segment)


def mask_path(path: str, words: frozenset[str] | None = None,
              keep_segment: Callable[[str], bool] | None = None) -> str:
    words = route_words() if words is None else words
    if path.startswith("/static/"):
        return path
    admin = path.startswith("/admin/")
    out = []
    for segment in path.split("/"):
        keep = (not segment or segment in words or bool(_UUID.match(segment))
                or (admin and bool(_INT.match(segment)))
                or (keep_segment is not None and keep_segment(segment)))
        out.append(segment if keep else MASK)
    return "/".join(out)


def mask_url(url: str, words: frozenset[str] | None = None,
             keep_segment: Callable[[str], bool] | None = None) -> str:
    """A URL (absolute, or a path with its query string) fit for a log line."""
    if not url or url == "-":
        return url
    prefix = ""
    rest = url
    scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*", url)
    if scheme:
        prefix, rest = scheme.group(0), url[scheme.end():]
    rest = rest.split("#", 1)[0]
    path, sep, query = rest.partition("?")
    return (prefix + mask_path(path, words, keep_segment)
            + (f"?{_mask_query(query)}" if sep else ""))


def redact_url_text(text: str) -> str:
    """redact_pii after percent-decoding (`someone%40example.com`, `%2B14155550100`)."""
    if "%" in text:
        from urllib.parse import unquote

        text = unquote(text)
    return redact_pii(text)


class RedactPIIURLFilter(RedactPIIFilter):
    """RedactPIIFilter that also finds percent-encoded addresses (gunicorn's error log quotes
    request URIs: "Error handling request GET /admin/?q=someone%40example.com")."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        redacted = redact_url_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return super().filter(record)


class MaskRequestPathFilter(logging.Filter):
    """For Django's own request lines ("Not Found: /api/v1/recipients/aud_q1"): URL paths among
    the record's arguments are masked as the access log masks them (mask_url)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(mask_url(arg) if isinstance(arg, str) and arg.startswith("/")
                                else arg for arg in record.args)
        return True
