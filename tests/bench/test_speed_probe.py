"""bench/speed.py: the machine-speed probe the bench reports beside its CPU figures."""

from __future__ import annotations

import time

from bench import speed


def test_the_probe_reports_the_median_cpu_milliseconds_of_its_fixed_work() -> None:
    start = time.process_time()
    probe = speed.speed_probe_ms(repeat=3)
    spent_ms = (time.process_time() - start) * 1000
    # Four runs (one untimed) took the CPU time measured around them: the median of the three
    # timed ones is a positive share of it, at most a third (plus rounding).
    assert 0 < probe <= spent_ms / 3 + 0.1

