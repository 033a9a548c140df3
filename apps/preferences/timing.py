"""Wall-clock arithmetic for quiet hours and frequency-cap windows (pure functions).

Times are the recipient's local wall-clock times; every instant returned is aware UTC. Daylight
saving is handled by zoneinfo: a window end that does not exist that day (spring forward) ends
at the transition, one that exists twice (fall back) at its first occurrence.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

WINDOW_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
_WINDOW = re.compile(WINDOW_PATTERN)

# Counters outlive their window a little, so a clock skew between workers cannot reset them.
CAP_TTL_MARGIN_SECONDS = 3600


@dataclass(frozen=True)
class Window:
    """Quiet hours from `start` (inclusive) to `end` (exclusive), local wall-clock times;
    `start > end` crosses midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window:
        """"22:00-08:00" → Window. Raises ValueError."""
        if not _WINDOW.match(text or ""):
            raise ValueError("Use HH:MM-HH:MM, e.g. 22:00-08:00.")
        start, end = text.split("-")
        window = cls(time.fromisoformat(start), time.fromisoformat(end))
        if window.start == window.end:
            raise ValueError("Start and end must differ.")
        return window

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone, or UTC for a blank or unknown name (recipients are validated on input;
    this only guards rows written some other way)."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def localize(day: date, at: time, tz: zoneinfo.ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `day at` in `tz`: the first occurrence when the time
    exists twice; the moment the clocks jump when it does not exist."""
    naive = datetime.combine(day, at)
    later = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if later.astimezone(tz).replace(tzinfo=None) == naive:
        return later
    # In a gap: fold=1 applies the offset after the jump (an earlier instant), fold=0 the one
    # before (a later instant); the transition lies between them. Find it to the second.
    earlier = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(earlier, later), max(earlier, later)
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def quiet_until(*, window: Window, tz: zoneinfo.ZoneInfo, now: datetime) -> datetime | None:
    """When the quiet window `now` falls in ends (UTC), or None when `now` is outside it."""
    local = now.astimezone(tz)
    wall = local.time()
    start, end = window.start, window.end
    if start == end:
        return None
    if start < end:
        inside = start <= wall < end
        end_day = local.date()
    else:  # crosses midnight: 22:00-07:00
        inside = wall >= start or wall < end
        end_day = local.date() if wall < end else local.date() + timedelta(days=1)
    if not inside:
        return None
    return localize(end_day, end, tz)


def cap_window(*, period: str, tz: zoneinfo.ZoneInfo, now: datetime) -> tuple[str, int]:
    """The fixed local window `now` falls in for a cap period (hour, day, ISO week from
    Monday): its label and a TTL in seconds that outlives it."""
    local = now.astimezone(tz)
    if period == "hour":
        label = local.strftime("%Y-%m-%dT%H")
        start = local.replace(minute=0, second=0, microsecond=0)
        ends = (start + timedelta(hours=1)).astimezone(UTC)
    elif period == "week":
        iso = local.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
        monday = local.date() - timedelta(days=local.weekday())
        ends = localize(monday + timedelta(days=7), time(0, 0), tz)
    else:  # day
        label = local.date().isoformat()
        ends = localize(local.date() + timedelta(days=1), time(0, 0), tz)
    seconds = max((ends - now.astimezone(UTC)).total_seconds(), 1.0)
    return label, math.ceil(seconds) + CAP_TTL_MARGIN_SECONDS
