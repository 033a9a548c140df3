"""The benchmark's command line and the SMS/push test data, without running anything."""

from __future__ import annotations

import re

import pytest

from bench.__main__ import parse_args
from bench.channels import (
    FAILING_SUFFIXES,
    MAGIC_PREFIX,
    RESERVED_TOKEN_PREFIXES,
    device_token,
    phone_numbers,
    sms_recipients,
)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def test_phone_numbers_are_distinct_e164_numbers_the_sandbox_delivers() -> None:
    # Enough numbers to run through every trailing-digit pattern the sandbox fails on purpose.
    numbers = phone_numbers(120_000)
    assert len(set(numbers)) == len(numbers) == 120_000
    assert all(E164.match(n) for n in numbers)
    assert not [n for n in numbers if n.startswith(MAGIC_PREFIX) or n.endswith(FAILING_SUFFIXES)]


def test_sms_recipients_have_their_own_phone() -> None:
    recipients = sms_recipients("s", 3)
    assert [r["id"] for r in recipients] == ["s0", "s1", "s2"]
    assert len({r["phone"] for r in recipients}) == 3


def test_device_tokens_are_unique_and_not_reserved_by_the_sandbox() -> None:
    tokens = [device_token(i) for i in range(200)]
    assert len(set(tokens)) == 200
    assert not [t for t in tokens if t.lower().startswith(RESERVED_TOKEN_PREFIXES)]


def test_channel_options_default_to_both_phases_under_the_configured_rate_limits() -> None:
    args = parse_args([])
    assert (args.sms_deliveries, args.push_deliveries) == (1000, 1000)
    assert args.sms_rate is None and args.push_rate is None
    assert not (args.skip_sms or args.skip_push or args.channels_only)


def test_channel_options_are_parsed() -> None:
    args = parse_args(["--channels-only", "--skip-push", "--sms-deliveries", "5",
                       "--sms-rate", "100000", "--push-rate", "2.5"])
    assert args.channels_only and args.skip_push and not args.skip_sms
    assert args.sms_deliveries == 5
    assert (args.sms_rate, args.push_rate) == (100000.0, 2.5)


@pytest.mark.parametrize("argv", [
    ["--sms-rate", "0"],
    ["--push-rate", "-1"],
    ["--push-rate", "inf"],
    ["--sms-deliveries", "0"],
    ["--channels-only", "--skip-sms", "--skip-push"],
])
def test_bad_channel_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
