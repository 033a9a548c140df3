"""`python -m bench` runs end to end on a small scale: exit code 0, one JSON document on
stdout, every email of both pipelines and every SMS counted as delivered (the SMS through
Twilio's signed status callbacks), every push as sent (FCM has no receipts). The numbers
themselves are not asserted: timing belongs in the benchmark, not in a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg import sql

from bench.environment import targets_from
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.e2e

DELIVERIES = 30
SMS_DELIVERIES = 20
PUSH_DELIVERIES = 20
# The top-level keys of the report (the SMS and push phases added `sms` and `push`).
REPORT_KEYS = {
    "benchmark", "started_at", "params", "accept_1000_recipients_ms",
    "accept_1000_recipients_in_process_ms", "optimized", "naive", "ratio", "sms", "push",
    "machine", "warnings",
}
# Its own database and Redis DB, so a `make bench` running at the same time is not disturbed.
SMOKE_DB = "notifyhub_bench_smoke"
SMOKE_REDIS_DB = "13"


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
    cmd = [
        sys.executable, "-m", "bench", "--deliveries", str(DELIVERIES), "--accept-runs", "1",
        "--sms-deliveries", str(SMS_DELIVERIES), "--push-deliveries", str(PUSH_DELIVERIES),
        "--timeout", "60", "--db-name", SMOKE_DB, "--redis-db", SMOKE_REDIS_DB,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the benchmark stop its gunicorn, worker and sandbox first.
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"python -m bench did not finish within 150 s:\n{stderr[-4000:]}")

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
