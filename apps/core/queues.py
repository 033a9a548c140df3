"""The one list of queue names: used by task routing, the Procfile, the sweeper and the docs."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    WEBHOOKS = "webhooks"
    MAINTENANCE = "maintenance"


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def queue(self) -> Queue:
        return Queue(self.value)

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(p.value, p.value.title()) for p in cls]
