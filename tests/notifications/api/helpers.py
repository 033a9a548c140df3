"""Helpers for the client-platform API tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from rest_framework.test import APIClient


def api_with_key(raw_key: str) -> APIClient:
    """A new API client (one per thread: APIClient is not thread-safe)."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return api


def concurrently(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Runs call(i) in `count` threads released together; returns results in order (an
    exception is returned as the result)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = call(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results
