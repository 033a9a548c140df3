"""Python's cyclic garbage collector paused while a large request is handled.

A 50,000-item bulk allocates a few hundred thousand objects that all stay alive until the
202 (parsed items, notification rows, their COPY text), so the collector runs again and
again over a young generation that only grows: ~1.5 s of the ~3.5 s of CPU that request
took (`python -m bench.micro 0 --bulk 50000` with and without `gc.disable()`). Reference
counting still frees everything that is not in a cycle; cycles made meanwhile are collected
by the first collection after the pause. Only requests with a large body pause it (a stream
of small sends would otherwise keep it off), and the pause is counted, so concurrent large
requests in one process's threads turn it back on when the last one ends."""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

# Bodies from this size on (a 1,000-recipient send is ~50 KiB, 50,000 ~2.5 MiB).
LARGE_BODY_BYTES = 256 * 1024

_lock = threading.Lock()
_holders = 0
_resume = False

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic collection inside (in this process) unless it was off already."""
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                gc.enable()


def paused_for_large_bodies(method: F) -> F:
    """Decorates an APIView handler: runs it in `gc_paused` when the request's body is at
    least LARGE_BODY_BYTES (by its Content-Length)."""

    @functools.wraps(method)
    def wrapper(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length < LARGE_BODY_BYTES:
            return method(view, request, *args, **kwargs)
        with gc_paused():
            return method(view, request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
