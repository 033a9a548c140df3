"""JSON request bodies checked once, before any view or serializer sees them.

What PostgreSQL or the Python runtime cannot take is refused as a 400 in the API's error format
here, instead of failing later as a 500:

* bytes that are not valid UTF-8 (`malformed_request`);
* nesting deeper than `API_JSON_MAX_DEPTH` (64): Python's decoder raises RecursionError near
  1,000 levels, and nothing NotifyHub accepts is more than a few levels deep
  (`malformed_request`, `fields` naming where the limit was passed);
* a lone UTF-16 surrogate (`"\\ud800"` without its pair) or a NUL (`"\\u0000"`) in any string,
  key or value: neither can be encoded for PostgreSQL text or jsonb (`invalid`, `fields`
  naming the path, e.g. `notifications[0].variables.name`).

`apps.core.middleware.RequestBodyGuardMiddleware` parses and checks every JSON body before
the view runs (DRF views and the provider callbacks alike, even a view that ignores its body)
and refuses oversized bodies (413) for every path; `GuardedJSONParser`, every DRF view's JSON
parser (REST_FRAMEWORK in settings), hands DRF the value it parsed (or parses and checks
itself when the middleware did not run).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.parsers import JSONParser

from .exceptions import ApplicationError

# A lone surrogate or a NUL can only come from a \u escape (raw bytes that would decode to
# one are not valid UTF-8, and a raw control character is not valid JSON): a body without
# such an escape skips the walk over its strings.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
_SURROGATE = re.compile("[\ud800-\udfff]")

DEFAULT_MAX_DEPTH = 64


class JSONInputError(ApplicationError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "malformed_request"


def max_depth() -> int:
    return int(getattr(settings, "API_JSON_MAX_DEPTH", DEFAULT_MAX_DEPTH))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters (\\u0000) are not allowed."
    if _SURROGATE.search(text):
        return "Lone UTF-16 surrogates (\\ud800-\\udfff without their pair) are not allowed."
    return None


def printable_key(key: str) -> str:
    """A key fit to name a field in an error (it may itself be the bad string)."""
    if _bad_text(key) is None:
        return key
    return json.dumps(key)[1:-1]


def _clean(value: Any, limit: int, check_strings: bool) -> bool:
    """The fast pass of check_value: no paths, containers only unless strings are suspect."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        current, depth = pop()
        if depth > limit:
            return False
        children = current.values() if type(current) is dict else current
        if check_strings:
            if type(current) is dict and any(_bad_text(key) for key in current):
                return False
            for item in children:
                kind = type(item)
                if kind is dict or kind is list:
                    push((item, depth + 1))
                elif kind is str and _bad_text(item):
                    return False
        else:
            for item in children:
                kind = type(item)
                if kind is dict or kind is list:
                    push((item, depth + 1))
    return True


def check_value(value: Any, *, check_strings: bool, limit: int | None = None) -> None:
    """Raises JSONInputError for nesting deeper than `limit`, and (when `check_strings`) for a
    NUL or a lone surrogate in any string or key. Iterative: safe on any depth."""
    limit = max_depth() if limit is None else limit
    if isinstance(value, str):
        problem = _bad_text(value) if check_strings else None
        if problem:
            raise JSONInputError(f"A value in the body is not allowed: {problem}",
                                 code="invalid", fields={"body": [problem]})
        return
    if not isinstance(value, dict | list) or _clean(value, limit, check_strings):
        return
    # Something is wrong: walk again, keeping paths, to name where.
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        current, path, depth = stack.pop()
        if isinstance(current, dict):
            if depth > limit:
                raise JSONInputError(
                    f"The JSON body is nested deeper than {limit} levels.",
                    fields={path or "body": [f"Nested deeper than {limit} levels."]})
            for key, item in current.items():
                if check_strings:
                    problem = _bad_text(key)
                    if problem:
                        where = _join(path, printable_key(key))
                        raise JSONInputError(f"A key in the body is not allowed: {problem}",
                                             code="invalid", fields={where: [problem]})
                if isinstance(item, dict | list) or (check_strings and isinstance(item, str)):
                    stack.append((item, _join(path, key), depth + 1))
        elif isinstance(current, list):
            if depth > limit:
                raise JSONInputError(
                    f"The JSON body is nested deeper than {limit} levels.",
                    fields={path or "body": [f"Nested deeper than {limit} levels."]})
            for index, item in enumerate(current):
                if isinstance(item, dict | list) or (check_strings and isinstance(item, str)):
                    stack.append((item, _join(path, index), depth + 1))
        elif isinstance(current, str):
            problem = _bad_text(current)
            if problem:
                raise JSONInputError(f"A value in the body is not allowed: {problem}",
                                     code="invalid", fields={path or "body": [problem]})


def loads(raw: bytes | str) -> Any:
    """The body parsed and checked (see the module docstring); JSONInputError otherwise.
    Bytes are UTF-8: JSON exchanged between systems is (RFC 8259 §8.1), whatever a charset
    parameter claims."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError("The body is not valid UTF-8 (JSON bodies must be UTF-8).",
                                 fields={"body": ["Not valid UTF-8."]}) from exc
    else:
        text = raw
    with _gc_paused(len(text) > GC_PAUSE_ABOVE_CHARS):
        try:
            value = json.loads(text, parse_constant=json_strict_constant)
        except RecursionError as exc:
            limit = max_depth()
            raise JSONInputError(f"The JSON body is nested deeper than {limit} levels.",
                                 fields={"body": [f"Nested deeper than {limit} levels."]}) from exc
        except ValueError as exc:
            raise JSONInputError(f"JSON parse error - {exc}") from exc
        check_value(value, check_strings=_suspect_escapes(text))
    return value


# Parsing a large body creates hundreds of thousands of objects, none of them garbage; the
# cyclic collector would traverse them again and again while they are made (a 10 MB bulk body:
# ~0.25 s to parse and check with it paused, ~1 s without). Paused for large bodies only.
GC_PAUSE_ABOVE_CHARS = 64 * 1024


@contextmanager
def _gc_paused(pause: bool) -> Iterator[None]:
    """The cyclic GC off for the block. Process-wide: a thread that finds it already paused
    (another request is parsing) leaves it to the thread that paused it to turn it back on."""
    enabled = pause and gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _suspect_escapes(text: str) -> bool:
    """Whether the body may hold a NUL or a lone surrogate: a real \\u0000 escape, or a
    surrogate escape that is not half of a pair. Proper pairs (emoji sent as escapes) do not
    cost a walk over every string."""
    if not _SUSPECT_ESCAPE.search(text):
        return False
    expect_low_at = -1
    for match in _SUSPECT_ESCAPE.finditer(text):
        start = match.start()
        backslashes = 0
        while start - backslashes > 0 and text[start - backslashes - 1] == "\\":
            backslashes += 1
        if backslashes % 2:
            continue  # "\\ud800": an escaped backslash, then text
        unit = match.group(0)[2:].lower()
        if unit == "0000":
            return True
        if unit[1] in "89ab":  # high: its low half must follow at once
            if expect_low_at != -1:
                return True
            expect_low_at = match.end()
        else:  # low: must come right after a high
            if expect_low_at != start:
                return True
            expect_low_at = -1
    return expect_low_at != -1


def json_strict_constant(name: str) -> Any:
    """NaN and ±Infinity are not JSON (PostgreSQL jsonb refuses them)."""
    raise ValueError(f"{name} is not valid JSON.")


class GuardedJSONParser(JSONParser):
    """DRF's JSONParser with the checks above (400 in the error format, never a 500)."""

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        request = parser_context.get("request")
        django_request = getattr(request, "_request", None)
        if hasattr(django_request, "guarded_json"):  # parsed by RequestBodyGuardMiddleware
            return django_request.guarded_json  # type: ignore[union-attr]
        raw = stream.read() if stream is not None else b""
        return loads(raw)  # UTF-8 whatever the charset parameter says (RFC 8259 §8.1)
