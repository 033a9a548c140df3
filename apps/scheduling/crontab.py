"""Crontab fields (celery syntax) in a time zone: validation with celery's own parser, and the
fire times around a moment, computed the way celery's crontab decides them (a day must match
month, day of month AND day of week; Sunday is 0)."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from celery.schedules import ParseException, crontab

FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
# The column sizes of django-celery-beat's CrontabSchedule.
MAX_LENGTHS = {"minute": 240, "hour": 96, "day_of_week": 64, "day_of_month": 124,
               "month_of_year": 64}
# Far enough to reach the next 29 February from anywhere (8 years around 2100).
SEARCH_DAYS = 366 * 9


def field_error(name: str, value: object) -> str | None:
    """Why one crontab field is invalid for celery, or None."""
    if not isinstance(value, str) or not value.strip():
        return "Required: a crontab field such as '*', '0', '*/15', '1-5' or 'mon-fri'."
    if len(value) > MAX_LENGTHS[name]:
        return f"At most {MAX_LENGTHS[name]} characters."
    try:
        crontab(**{name: value})
    except (ValueError, ParseException) as exc:
        return f"Invalid {name.replace('_', ' ')}: {exc}"
    return None


def timezone_error(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "Required: an IANA time zone such as 'Europe/Paris' or 'UTC'."
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "Unknown IANA time zone."
    return None


def schedule_errors(*, timezone: object, **fields: object) -> dict[str, list[str]]:
    """Field name → problems of a crontab (FIELDS as keyword arguments) and its time zone."""
    errors = {name: [message] for name in FIELDS
              if (message := field_error(name, fields.get(name))) is not None}
    if (message := timezone_error(timezone)) is not None:
        errors["timezone"] = [message]
    if not errors:
        try:  # celery refuses combinations that never occur, e.g. 31 February
            crontab(**{name: str(fields[name]) for name in FIELDS})
        except ValueError as exc:
            errors["day_of_month"] = [str(exc)]
    return errors


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_week: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    tz: zoneinfo.ZoneInfo

    @classmethod
    def parse(cls, *, timezone: str, **fields: str) -> Cron:
        """A schedule that `schedule_errors` accepted."""
        c = crontab(**{name: fields[name] for name in FIELDS})
        return cls(minutes=tuple(sorted(c.minute)), hours=tuple(sorted(c.hour)),
                   days_of_week=frozenset(c.day_of_week), days_of_month=frozenset(c.day_of_month),
                   months=frozenset(c.month_of_year), tz=zoneinfo.ZoneInfo(timezone))

    def _runs_on(self, day: date) -> bool:
        return (day.month in self.months and day.day in self.days_of_month
                and day.isoweekday() % 7 in self.days_of_week)

    def _at(self, day: date, hour: int, minute: int, fold: int = 0) -> datetime:
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz, fold=fold)
        return local.astimezone(UTC)

    def previous(self, now: datetime) -> datetime | None:
        """The latest fire time at or before `now` (UTC), or None within SEARCH_DAYS.

        A run that starts late (a busy queue, a retried task) still belongs to the time beat
        fired it for, until the next fire time comes."""
        local = now.astimezone(self.tz)
        today = local.date()
        for offset in range(SEARCH_DAYS):
            day = today - timedelta(days=offset)
            if not self._runs_on(day):
                continue
            if offset:
                return self._at(day, self.hours[-1], self.minutes[-1])
            for hour in reversed(self.hours):
                if hour > local.hour:
                    continue
                minutes = [m for m in self.minutes if hour < local.hour or m <= local.minute]
                if minutes:
                    # In the hour a DST change repeats, keep which of the two it is.
                    return self._at(day, hour, minutes[-1], local.fold if hour == local.hour else 0)
        return None

    def next(self, now: datetime) -> datetime | None:
        """The first fire time after `now` (UTC), or None within SEARCH_DAYS."""
        start = (now.astimezone(self.tz).replace(second=0, microsecond=0, tzinfo=None)
                 + timedelta(minutes=1))
        for offset in range(SEARCH_DAYS):
            day = start.date() + timedelta(days=offset)
            if not self._runs_on(day):
                continue
            if offset:
                return self._at(day, self.hours[0], self.minutes[0])
            for hour in self.hours:
                if hour < start.hour:
                    continue
                minutes = [m for m in self.minutes if hour > start.hour or m >= start.minute]
                if minutes:
                    return self._at(day, hour, minutes[0])
        return None
