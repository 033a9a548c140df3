"""The benchmark's command line and the SMS/push test data, without running anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
from bench.loadgen import body_for, percentile
from bench.procfile import parse, processes_for_queue, web_command, web_entry, worker_command

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


def test_issue_8_phases_default_to_all_but_big_and_can_be_chosen_or_skipped() -> None:
    args = parse_args([])
    assert args.phase_list == ("single", "ceiling", "fanout", "priorities", "streams")
    assert not args.big
    assert args.rate_list == (50.0, 150.0, 300.0) and args.rate_duration == 15.0
    assert (args.fanout, args.backlog) == (50_000, 100_000)

    args = parse_args(["--phases", "single,big", "--rates", "10,20", "--skip", "ceiling"])
    assert args.phase_list == ("single",) and args.big
    assert args.rate_list == (10.0, 20.0)
    assert parse_args(["--skip", "fanout,priorities,streams"]).phase_list == ("single", "ceiling")
    assert parse_args(["--channels-only"]).phase_list == ()


def test_smoke_makes_every_phase_small() -> None:
    args = parse_args(["--smoke"])
    assert args.phase_list == ("single", "ceiling", "fanout", "priorities", "streams") and not args.big
    assert args.deliveries <= 100 and args.fanout <= 300 and args.backlog <= 300
    assert args.streams <= 200 and args.stream_duration <= 3 and args.stream_api_duration <= 3
    assert args.rate_duration <= 3 and max(args.rate_list) <= 30


@pytest.mark.parametrize("argv", [["--phases", "nope"], ["--skip", "single,bogus"], ["--rates", "0"],
                                  ["--rates", "fast"]])
def test_bad_phase_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_the_procfile_is_read_for_the_process_layout(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "web: .venv/bin/gunicorn -c notifyhub/gunicorn.conf.py notifyhub.wsgi:application"
        " --bind 127.0.0.1:8000\n"
        "worker_urgent: .venv/bin/celery -A celery_app worker -Q critical,high -n urgent@%h --concurrency 2\n"
        "worker_bulk: .venv/bin/celery -A celery_app worker -Q normal,low,maintenance --concurrency=3\n"
        "beat: .venv/bin/celery -A celery_app beat --loglevel INFO\n"
        "sandbox: .venv/bin/python -m sandbox serve --port 8025\n"
    )
    entries = parse(procfile)
    assert [(e.name, e.kind) for e in entries] == [
        ("web", "web"), ("worker_urgent", "worker"), ("worker_bulk", "worker"), ("beat", "beat"),
        ("sandbox", "sandbox")]
    assert entries[1].queues == ("critical", "high") and entries[1].concurrency == 2
    assert entries[2].queues == ("normal", "low", "maintenance") and entries[2].concurrency == 3
    assert processes_for_queue(entries, "normal") == 3
    assert processes_for_queue(entries, "high") == 2

    web = web_command(web_entry(entries), port=9999)
    assert web[web.index("--bind") + 1] == "127.0.0.1:9999"
    assert "-c" in web and "notifyhub/gunicorn.conf.py" in web
    worker = worker_command(entries[1], tag="t")
    assert worker[worker.index("-n") + 1] == "worker_urgent-t@%h"
    assert worker[worker.index("-Q") + 1] == "critical,high"


def test_the_repo_procfile_has_a_web_process_and_an_email_worker() -> None:
    entries = parse()
    assert web_entry(entries).argv[0].endswith("gunicorn")
    assert processes_for_queue(entries, "normal") >= 1
    assert processes_for_queue(entries, "critical") >= 1


def test_loadgen_percentiles_and_bodies() -> None:
    assert percentile([], 0.5) is None
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    body = json.loads(body_for(7, prefix="x", template="t", priority="high"))
    assert body == {"recipients": [{"id": "x7", "email": "x7@example.com"}], "template_id": "t",
                    "variables": {"name": "Bench"}, "priority": "high"}


BIG_ONLY = ["--channels-only", "--skip-sms", "--skip-push", "--phases", "big"]


def test_big_reuse_only_when_nothing_else_empties_the_tables() -> None:
    args = parse_args([*BIG_ONLY, "--big-reuse"])
    assert args.big and args.big_reuse
    with pytest.raises(SystemExit):
        parse_args(["--phases", "single,big", "--big-reuse"])
    with pytest.raises(SystemExit):
        parse_args(["--channels-only", "--skip-push", "--phases", "big", "--big-reuse"])


def test_big_compare_root_must_be_a_checkout(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    assert parse_args([*BIG_ONLY, "--big-compare-root", str(root)]).big_compare_root == str(root)
    with pytest.raises(SystemExit):
        parse_args([*BIG_ONLY, "--big-compare-root", str(tmp_path)])
