"""FastJSONRenderer writes the bytes DRF's JSONRenderer writes (orjson, with DRF's encoder for
the types orjson does not know, and JSONRenderer itself for what orjson cannot write)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer

from apps.core.renderers import FastJSONRenderer

SAME_BYTES: list[Any] = [
    {"id": str(uuid.uuid4()), "n": 3, "ok": True, "none": None, "list": [1, 2.5, "x"]},
    {"unicode": "Zoë — 東京 🎉", "controls": "a\x00b\x1fc\x7fd\"e\\f/g\n\t",
     "separators": "line\u2028para\u2029end"},
    {"nested": {"a": [{"b": [{"c": {}}]}]}, "empty": [], "zero": 0, "negative": -7},
    {"when": datetime(2026, 12, 7, 6, 1, 14, 123456, tzinfo=UTC), "day": date(2026, 12, 7),
     "at": time(6, 1), "span": timedelta(seconds=90), "money": Decimal("1.10"),
     "uuid": uuid.UUID(int=5)},
    {"error": [ErrorDetail("Bad value.", code="invalid")], "lazy": gettext_lazy("Not found.")},
    {7: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    {"big": 2**64, "deep": 0},  # beyond 64 bits: JSONRenderer writes it
    [1, 2, 3],
    "text",
]


@pytest.mark.parametrize("data", SAME_BYTES)
def test_the_same_bytes_as_jsonrenderer(data: Any) -> None:
    assert FastJSONRenderer().render(data) == JSONRenderer().render(data)


def test_nesting_orjson_refuses_falls_back() -> None:
    deep: Any = 0
    for _ in range(300):
        deep = [deep]
    assert FastJSONRenderer().render(deep) == JSONRenderer().render(deep)


def test_floats_are_the_same_numbers() -> None:
    data = {"values": [0.1, 1.0, 1e16, 1.5e-7, 123456789.125, -0.0]}
    fast = FastJSONRenderer().render(data)
    assert json.loads(fast) == json.loads(JSONRenderer().render(data)) == data


def test_indent_and_empty_are_jsonrenderers() -> None:
    data = {"a": [1, {"b": 2}]}
    media = "application/json; indent=4"
    assert FastJSONRenderer().render(data, media) == JSONRenderer().render(data, media)
    assert FastJSONRenderer().render(None) == b""


def test_what_drf_cannot_write_still_fails() -> None:
    @dataclasses.dataclass
    class Thing:
        x: int

    with pytest.raises(TypeError):
        JSONRenderer().render({"thing": Thing(1)})
    with pytest.raises(TypeError):
        FastJSONRenderer().render({"thing": Thing(1)})
