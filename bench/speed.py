"""How fast this machine runs Python at the moment of a measurement.

`speed_probe_ms()` times (CPU seconds, the median of five) a fixed piece of pure-Python work of
the kinds the service does: dicts, string formatting, method calls, JSON. The instructions
are the same every time; on this shared machine the CPU time they take swung about 2x between
hours (`python -m bench.micro 400` read 1.7-2.0 ms per send on 7 Dec in the evening, 2.9-4.6 ms
the next night for the same code), and every CPU-per-message figure of the bench swings with
it. The bench reports the probe beside those figures, before each single-send rate and for the
whole run (`machine.speed_probe_ms`), and never uses it to correct them: it says whether two
runs ran on an equally fast machine, which a difference between them needs."""

from __future__ import annotations

import json
import statistics
import time


def _work() -> int:
    counts: dict[str, int] = {}
    total = 0
    for i in range(80_000):
        key = f"recipient-{i % 700}"
        counts[key] = counts.get(key, 0) + 1
        total += len(key.upper())
    rows = [{"id": i, "email": f"user{i}@example.com", "tags": ["a", "b"]} for i in range(4_000)]
    return total + len(json.dumps(rows)) + sum(len(json.loads(json.dumps(r))) for r in rows[:500])


def speed_probe_ms(repeat: int = 5) -> float:
    """Milliseconds of CPU for the probe's fixed work (the median of `repeat` runs); higher is
    a slower machine. One untimed run first (allocations, caches)."""
    _work()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        _work()
        times.append(time.process_time() - start)
    return round(statistics.median(times) * 1000, 1)
