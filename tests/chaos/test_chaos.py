"""The chaos suite at CI scale (`python -m bench.chaos --scale ci`, bench/chaos.py): worker
pool and parent SIGKILLs, Redis and PostgreSQL killed and restarted, the email provider and
then every email provider down, on the real stack under supervisord. Slow (about 5 minutes):
runs only with NOTIFYHUB_CHAOS=1 (CI runs `CHAOS_SCALE=ci make chaos` instead, the same
harness)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.processes import REPO_ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.chaos,
    pytest.mark.skipif(os.environ.get("NOTIFYHUB_CHAOS") != "1",
                       reason="the chaos suite runs with NOTIFYHUB_CHAOS=1 (or `make chaos`)"),
]

HARNESS_TIMEOUT = 1500  # seconds; the ci scale takes about 5 minutes once recovery is prompt


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("chaos") / "chaos-ci.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "TEST_REDIS_URL")}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--scale", "ci", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=HARNESS_TIMEOUT,
    )
    if not Path(out).exists():
        pytest.fail(f"the chaos harness wrote no result (exit {completed.returncode}):\n"
                    f"{completed.stderr[-4000:]}")
    print(completed.stdout)
    return dict(json.loads(out.read_text()))


def _scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in report["scenarios"] if s["scenario"] == name]
    assert found, f"scenario {name} did not run"
    assert "accepted" in found[0], f"{name} broke: {found[0].get('failures')}"
    return dict(found[0])


@pytest.mark.timeout(HARNESS_TIMEOUT + 60)
@pytest.mark.parametrize("name", ["workers", "redis", "postgres", "failover", "outage"])
def test_nothing_accepted_is_lost_and_everything_ends_terminal_soon_after_recovery(
    report: dict[str, Any], name: str
) -> None:
    scenario = _scenario(report, name)

    assert scenario["accepted"] > 0
    assert scenario["lost"] == 0, scenario
    assert scenario["terminal"] == scenario["accepted"]
    # Nothing permanent is injected: a fault costs time, never a message.
    assert scenario["statuses_db"].get("failed", 0) == 0, scenario["failed_reasons"]
    assert scenario["statuses_api"] == scenario["statuses_db"]
    after = scenario["all_terminal_seconds_after_recovery"]
    assert after is not None and after <= scenario["recovery_bound_seconds"], (
        f"{name}: all terminal {after} s after recovery, bound {scenario['recovery_bound_seconds']} s")


@pytest.mark.timeout(HARNESS_TIMEOUT + 60)
@pytest.mark.parametrize("name", ["workers", "redis", "postgres", "failover", "outage"])
def test_the_api_never_answers_500_nor_hangs(report: dict[str, Any], name: str) -> None:
    scenario = _scenario(report, name)

    assert scenario["http_500"] == 0, scenario["answers"]
    assert scenario["hangs"] == 0, scenario["answers"]


@pytest.mark.timeout(HARNESS_TIMEOUT + 60)
def test_a_database_outage_is_answered_503_while_it_lasts(report: dict[str, Any]) -> None:
    during = _scenario(report, "postgres")["answers_during_outage"]

    assert during.get("503", 0) > 0, during
    assert set(during) <= {"202", "503"}, during


@pytest.mark.timeout(HARNESS_TIMEOUT + 60)
def test_supervisord_restarts_the_bulk_worker_after_its_parent_is_killed(report: dict[str, Any]) -> None:
    workers = _scenario(report, "workers")

    assert workers["parent_restart"]["restarted"], workers["parent_restart"]
    assert workers["restarts"].get("worker_bulk", 0) >= 1
    for name in ("workers", "redis", "postgres", "failover", "outage"):
        assert _scenario(report, name)["processes_running"], name


@pytest.mark.timeout(HARNESS_TIMEOUT + 60)
def test_email_fails_over_to_smtp_while_sendgrid_is_down(report: dict[str, Any]) -> None:
    failover = _scenario(report, "failover")

    assert failover["at_provider_by_provider"].get("smtp", 0) > 0, failover["at_provider_by_provider"]
    assert failover["statuses_db"].get("failed", 0) == 0
