"""`python -m bench --smoke` runs every phase (but `big`) end to end on a small scale: exit
code 0, one JSON document on stdout, every email of both pipelines and every SMS counted as
delivered (the SMS through Twilio's signed status callbacks), every push as sent (FCM has no
receipts), and issue 8's phases (single sends at fixed rates, the SDK ceiling, the fan-out,
priorities under a backlog) each reporting its numbers. The numbers themselves are not
asserted: timing belongs in the benchmark, not in a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from bench.environment import targets_from
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.e2e

# What --smoke runs (bench/__main__.py).
DELIVERIES = 100
SMS_DELIVERIES = 50
PUSH_DELIVERIES = 50
SMOKE_RATES = [10.0, 30.0]
SMOKE_FANOUT = 300
SMOKE_BACKLOG = 300
SMOKE_STREAMS = 200
# The top-level keys of the report (the SMS and push phases added `sms` and `push`, issue 8
# the rest from `single` on).
REPORT_KEYS = {
    "benchmark", "started_at", "params", "accept_1000_recipients_ms",
    "accept_1000_recipients_in_process_ms", "optimized", "naive", "ratio", "sms", "push",
    "single", "api_cpu_ms_per_send", "server_cpu_ms_per_notification", "ceiling", "fanout",
    "priorities", "streams", "tracing", "big", "callback_answers_5xx", "smoke", "machine",
    "warnings",
}
CALLBACK_CLASSES = {"2xx", "3xx", "4xx", "5xx", "none"}
# Its own database and Redis DB, so a `make bench` running at the same time is not disturbed.
SMOKE_DB = "notifyhub_bench_smoke"
SMOKE_REDIS_DB = "13"
TIMEOUT = 420  # --smoke takes about 2-3 minutes on a 2-core machine


@pytest.fixture
def _drop_smoke_db_afterwards() -> Iterator[None]:
    yield
    targets = targets_from(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"),
                           db_name=SMOKE_DB, redis_db=int(SMOKE_REDIS_DB))
    with psycopg.connect(targets.maintenance_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SMOKE_DB)))
    redis.Redis.from_url(targets.redis_url).flushdb()


@pytest.mark.usefixtures("_drop_smoke_db_afterwards")
def test_bench_runs_and_every_delivery_of_every_phase_is_delivered_or_sent() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "notifyhub.settings.local"}
    cmd = [sys.executable, "-m", "bench", "--smoke", "--db-name", SMOKE_DB, "--redis-db", SMOKE_REDIS_DB]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the benchmark stop its gunicorn, worker and sandbox first.
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"python -m bench did not finish within {TIMEOUT} s:\n{stderr[-4000:]}")

    assert proc.returncode == 0, stderr[-4000:]
    result = json.loads(stdout)
    assert set(result) == REPORT_KEYS
    for mode in ("optimized", "naive"):
        phase = result[mode]
        assert phase["deliveries"] == DELIVERIES
        assert phase["delivered"] == DELIVERIES, (mode, phase["counts"])
        assert phase["counts"] == {"delivered": DELIVERIES}, (mode, phase["counts"])

    sms = result["sms"]
    assert sms["deliveries"] == SMS_DELIVERIES
    assert sms["counts"] == {"delivered": SMS_DELIVERIES}, sms["counts"]
    assert sms["delivered"] == SMS_DELIVERIES
    assert sms["sandbox"]["accepted"] == SMS_DELIVERIES, sms["sandbox"]
    assert sms["rate_limit_per_second"] > 0 and sms["rate_limit_source"] == "settings"

    push = result["push"]
    assert push["deliveries"] == PUSH_DELIVERIES
    assert push["counts"] == {"sent": PUSH_DELIVERIES}, push["counts"]
    assert push["sent"] == PUSH_DELIVERIES
    assert push["sandbox"]["accepted"] == PUSH_DELIVERIES, push["sandbox"]
    assert "delivered_per_second" not in push  # FCM has no receipts
    for phase in ("optimized", "naive", "sms", "push"):
        assert set(result[phase]["callback_answers"]) == CALLBACK_CLASSES
    assert result["smoke"] is True and result["big"] is None

    _assert_single(result)
    _assert_ceiling(result)
    _assert_fanout(result["fanout"])
    _assert_priorities(result["priorities"])
    _assert_streams(result["streams"])
    assert set(result["callback_answers_5xx"]) == {
        "optimized", "naive", "sms", "push", "single", "fanout", "priorities"}
    assert all(isinstance(n, int) and n >= 0 for n in result["callback_answers_5xx"].values())
    procfile = {entry["name"]: entry for entry in result["machine"]["procfile"]}
    assert any(e["kind"] == "worker" for e in procfile.values())
    assert "-c notifyhub/gunicorn.conf.py" in result["machine"]["gunicorn_command"]
    assert all(result["machine"]["speed_probe_ms"][when] > 0 for when in ("at_start", "at_end"))


def _assert_single(result: dict[str, Any]) -> None:
    single = result["single"]
    assert [r["rate"] for r in single["rates"]] == SMOKE_RATES
    for rate in single["rates"]:
        assert rate["sent"] == round(rate["rate"] * rate["duration_s"]) > 0
        # Numbers, not speed: every send was answered (202 or an error counted by kind) …
        assert rate["accepted"] + rate["error_count"] == rate["sent"]
        assert sum(rate["errors"].values()) == rate["error_count"]
        assert rate["accepted"] > 0, rate["errors"]
        assert all(rate["latency_ms"][q] > 0 for q in ("p50", "p95", "p99"))
        # … and every notification created was sent and reached a final state through its
        # receipt, or was sent and its receipt was lost by the sandbox (a callback it gave up
        # on, counted by the bench; as in the fan-out phase, under a loaded CI machine).
        assert rate["notifications_created"] >= rate["accepted"]
        assert rate["deliveries"] == rate["notifications_created"]
        assert rate["deliveries_final"] + rate["without_final_receipt"] == rate["deliveries"]
        assert rate["delivered"] > 0
        assert rate["api_cpu_ms_per_send"] > 0 and rate["server_cpu_ms_per_notification"] > 0
        assert rate["speed_probe_ms"] > 0
        per = rate["cpu_ms_per_notification"]
        assert {"api", "postgres", "redis", "sandbox", "total"} <= set(per)
        assert any(name.startswith("worker") for name in per)
        # PostgreSQL's share is 0 only when its server runs out of this machine's sight.
        assert per["total"] > 0 and per["api"] > 0 and per["postgres"] >= 0
        assert set(rate["callback_answers"]) == CALLBACK_CLASSES
        assert rate["callback_answers"]["2xx"] > 0
    assert result["api_cpu_ms_per_send"] == single["rates"][0]["api_cpu_ms_per_send"] > 0
    assert result["server_cpu_ms_per_notification"] > 0


def _assert_ceiling(result: dict[str, Any]) -> None:
    ceiling = result["ceiling"]
    assert ceiling["threads"] == ceiling["processes"] * ceiling["threads_per_process"] > 0
    assert ceiling["sends"] == ceiling["sandbox_accepted"] > 0
    assert ceiling["errors"] == 0 and ceiling["sends_per_second"] > 0
    ratio = result["ratio"]
    assert ratio["pipeline_to_ceiling_ratio"] > 0 and ratio["delivered_per_second"] > 0


def _assert_fanout(fanout: dict[str, Any]) -> None:
    assert fanout["recipients"] == SMOKE_FANOUT
    for kind in ("bulk", "send"):
        run = fanout[kind]
        assert run["recipients"] == SMOKE_FANOUT
        assert run["delivered"] + run["failed"] + run["without_final_receipt"] == SMOKE_FANOUT
        assert run["delivered"] > 0
        assert run["seconds_to_202"] > 0
        assert run["seconds_202_to_all_sent"] >= run["seconds_202_to_first_at_provider"]
        assert run["seconds_202_to_all_delivered"] > 0
        assert run["sent_per_second_after_202"] > 0


def _assert_priorities(priorities: dict[str, Any]) -> None:
    assert priorities["backlog"] == SMOKE_BACKLOG
    assert priorities["backlog_method"].startswith("api")
    assert priorities["backlog_accept_seconds"] > 0
    assert priorities["urgent_accepted"] == priorities["urgent_sends"] > 0
    assert priorities["urgent_not_sent"] == 0
    assert priorities["backlog_drained_in_window"] >= 0
    for priority in ("critical", "high"):
        entry = priorities[priority]
        assert entry["sends"] > 0
        assert entry["accept_to_sent_ms"]["p50"] is not None


def _assert_streams(streams: dict[str, Any]) -> None:
    assert streams["connections"] == SMOKE_STREAMS
    assert streams["connected"]["open"] == SMOKE_STREAMS, streams["connected"]
    process = streams["stream_process"]
    assert process["health_with_streams"]["connections"] == SMOKE_STREAMS
    assert process["rss_mib_with_streams"] > 0 and process["rss_kib_per_connection"] is not None
    for run in ("in_app", "in_app_single_recipient_requests"):
        sent = streams[run]
        assert sent["accepted"] == sent["sent"] > 0, sent["outcomes"]
        # Every in-app message accepted reached its recipient's open connection.
        assert sent["arrived"] == sent["accepted"] and sent["missing"] == 0
        assert sent["accept_to_event_ms"]["p95"] is not None
    assert streams["closed"]["ended_early"] == 0
    latency = streams["api_single_send_latency_ms"]
    for run in ("without_streams_before", "with_streams", "without_streams_after"):
        assert latency[run]["p50"] > 0
