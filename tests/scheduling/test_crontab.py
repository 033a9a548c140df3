"""Crontab fields: celery's parser decides what is valid; fire times are computed in the
schedule's time zone, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.scheduling.crontab import Cron, schedule_errors

EVERY_DAY = {"day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}


def cron(minute: str, hour: str, tz: str = "UTC", **fields: str) -> Cron:
    return Cron.parse(minute=minute, hour=hour, timezone=tz, **{**EVERY_DAY, **fields})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("fields", "field"), [
    ({"minute": "61"}, "minute"),
    ({"minute": ""}, "minute"),
    ({"hour": "25"}, "hour"),
    ({"hour": "nine"}, "hour"),
    ({"day_of_week": "8"}, "day_of_week"),
    ({"day_of_month": "0"}, "day_of_month"),
    ({"month_of_year": "13"}, "month_of_year"),
    ({"day_of_month": "31", "month_of_year": "2"}, "day_of_month"),  # never occurs
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": ""}, "timezone"),
])
def test_invalid_fields_are_named(fields: dict[str, str], field: str) -> None:
    values = {"minute": "0", "hour": "9", "timezone": "UTC", **EVERY_DAY, **fields}
    assert field in schedule_errors(**values)


def test_valid_crontabs() -> None:
    for minute, hour, dow in [("*/15", "8-18", "mon-fri"), ("0", "*", "0,6"), ("5", "9", "*")]:
        assert schedule_errors(minute=minute, hour=hour, day_of_week=dow, day_of_month="*",
                               month_of_year="*", timezone="Europe/Paris") == {}


def test_previous_and_next_in_the_schedules_time_zone() -> None:
    weekdays_9 = cron("0", "9", "Europe/Paris", day_of_week="mon-fri")
    friday_11_paris = utc(2026, 3, 6, 10, 0)
    assert weekdays_9.previous(friday_11_paris) == utc(2026, 3, 6, 8, 0)
    assert weekdays_9.next(friday_11_paris) == utc(2026, 3, 9, 8, 0)  # Monday
    # Paris moves to summer time on Sunday 29 March 2026: 09:00 is then 07:00 UTC.
    assert weekdays_9.next(utc(2026, 3, 27, 9, 0)) == utc(2026, 3, 30, 7, 0)
    assert weekdays_9.previous(utc(2026, 3, 30, 6, 59)) == utc(2026, 3, 27, 8, 0)


def test_a_late_run_belongs_to_the_time_it_was_fired_for() -> None:
    every_minute = cron("*", "*")
    assert every_minute.previous(utc(2026, 1, 1, 10, 0, 59)) == utc(2026, 1, 1, 10, 0)
    assert every_minute.next(utc(2026, 1, 1, 10, 0, 0)) == utc(2026, 1, 1, 10, 1)
    daily = cron("30", "6")
    assert daily.previous(utc(2026, 1, 1, 6, 30)) == utc(2026, 1, 1, 6, 30)
    assert daily.previous(utc(2026, 1, 1, 17, 0)) == utc(2026, 1, 1, 6, 30)
    assert daily.previous(utc(2026, 1, 1, 6, 29)) == utc(2025, 12, 31, 6, 30)


def test_rare_dates_are_found() -> None:
    leap_day = cron("0", "0", day_of_month="29", month_of_year="2")
    assert leap_day.next(utc(2026, 1, 1)) == utc(2028, 2, 29, 0, 0)
    assert leap_day.previous(utc(2026, 1, 1)) == utc(2024, 2, 29, 0, 0)
