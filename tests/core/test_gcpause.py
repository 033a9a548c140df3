"""apps/core/gcpause.py: the collector is off while a large request runs, and back on after."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from apps.core.gcpause import LARGE_BODY_BYTES, gc_paused, paused_for_large_bodies


class _Request:
    def __init__(self, length: Any) -> None:
        self.META = {"CONTENT_LENGTH": length}


def _seen(length: Any) -> bool:
    """Whether the collector was on inside a handler for a body of this length."""

    @paused_for_large_bodies
    def handler(view: Any, request: Any) -> bool:
        return gc.isenabled()

    return handler(None, _Request(length))


def test_a_large_body_runs_with_the_collector_paused_and_resumes_it() -> None:
    assert gc.isenabled()
    assert _seen(str(LARGE_BODY_BYTES)) is False
    assert gc.isenabled()


def test_a_small_or_unknown_body_leaves_the_collector_alone() -> None:
    assert _seen(str(LARGE_BODY_BYTES - 1)) is True
    assert _seen("") is True and _seen("not a number") is True


def test_the_collector_resumes_when_the_last_of_overlapping_pauses_ends() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    entered.wait(5)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread still holds its pause
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_resumes_when_the_handler_raises() -> None:
    @paused_for_large_bodies
    def handler(view: Any, request: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler(None, _Request(str(10 * LARGE_BODY_BYTES)))
    assert gc.isenabled()
