"""`FastJSONRenderer`: DRF's JSONRenderer output, written by orjson.

A page of 50 deliveries (~20 KB) costs ~0.37 ms through `json.dumps` with DRF's encoder and
~0.05 ms through orjson (docs/operations.md "Fifth round of issue 8's work"). The bytes are
JSONRenderer's: compact separators, UTF-8 (UNICODE_JSON), U+2028 and U+2029 escaped, dates,
times, decimals and anything else orjson does not know written by DRF's encoder (`default`) —
except a float written with an exponent, which has no "+" (`1e16`, where json writes `1e+16`:
the same number). Whenever they could differ otherwise, JSONRenderer itself renders: an
`indent` asked in the Accept header, ASCII or non-compact output configured, and anything
orjson refuses (an integer beyond 64 bits, nesting deeper than 254 levels, a type DRF's encoder
refuses too — which then fails as it did).
"""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS)
_default = JSONEncoder().default


class FastJSONRenderer(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        if (self.ensure_ascii or not self.compact
                or self.get_indent(accepted_media_type or "", renderer_context or {}) is not None):
            return bytes(super().render(data, accepted_media_type, renderer_context))
        try:
            out = orjson.dumps(data, default=_default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError included
            return bytes(super().render(data, accepted_media_type, renderer_context))
        # JSONRenderer escapes these two (JSON that is also a JavaScript subset).
        if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:
            out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        return out
