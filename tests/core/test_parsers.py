"""apps.core.parsers.loads: what PostgreSQL or Python cannot take is a JSONInputError naming
where it is; everything else (emoji sent as escaped surrogate pairs, a backslash followed by
text that looks like an escape) parses unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.parsers import JSONInputError, loads


@pytest.mark.parametrize(("raw", "value"), [
    (rb'{"a": "\ud83d\ude00"}', {"a": "\U0001f600"}),
    (rb'{"a": "\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash, then text
    (rb'{"a": "\\u0000"}', {"a": "\\u0000"}),
    (rb'{"a": "\\\ud83d\ude00"}', {"a": "\\\U0001f600"}),
    (rb'{"\ud83d\ude00": [1, {"b": null}]}', {"\U0001f600": [1, {"b": None}]}),
    ("{\"a\": \"caf\u00e9\"}".encode(), {"a": "caf\u00e9"}),
])
def test_legitimate_bodies_parse(raw: bytes, value: Any) -> None:
    assert loads(raw) == value


@pytest.mark.parametrize(("raw", "field"), [
    (rb'{"a": "\ud800"}', "a"),
    (rb'{"a": "x\udc00"}', "a"),
    (rb'{"a": ["ok", "\\ud800\udc00"]}', "a[1]"),  # text "\ud800", then a real lone low half
    (rb'{"a": "\ud800\\udc00"}', "a"),  # a real high half, then text
    (rb'{"a": "\ud83d\ud83d\ude00"}', "a"),
    (rb'{"a": {"b": [{"c": "\u0000"}]}}', "a.b[0].c"),
    (rb'{"a": {"k\ud800": 1}}', "a.k\\ud800"),
    (rb'"\ud800"', "body"),
])
def test_nul_and_lone_surrogates_are_refused_naming_the_path(raw: bytes, field: str) -> None:
    with pytest.raises(JSONInputError) as exc:
        loads(raw)

    assert exc.value.code == "invalid" and exc.value.status_code == 400
    assert list(exc.value.fields) == [field]


def test_depth_is_capped_at_the_setting(settings: Any) -> None:
    settings.API_JSON_MAX_DEPTH = 3
    assert loads(b'{"a": {"b": [1]}}') == {"a": {"b": [1]}}

    with pytest.raises(JSONInputError) as exc:
        loads(b'{"a": {"b": [[1]]}}')

    assert exc.value.code == "malformed_request"
    assert list(exc.value.fields) == ["a.b[0]"]


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a": "\xff"}', b"{", b"NaN"])
def test_unparseable_bodies_are_malformed_requests(raw: bytes) -> None:
    with pytest.raises(JSONInputError) as exc:
        loads(raw)

    assert exc.value.code == "malformed_request" and exc.value.status_code == 400


def test_a_large_body_leaves_the_garbage_collector_on_even_when_refused() -> None:
    import gc

    big = b'{"a": [' + b",".join(b'{"b": "x"}' for _ in range(20_000)) + b"]}"

    assert len(loads(big)["a"]) == 20_000
    assert gc.isenabled()
    with pytest.raises(JSONInputError):
        loads(big[:-2] + b', "\\ud800"]}')
    assert gc.isenabled()
