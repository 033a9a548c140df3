#!/usr/bin/env bash
# `make test`: private PostgreSQL + Redis, then pytest with notifyhub.settings.test.
#   bash scripts/test.sh [pytest args...]     (defaults come from pytest.ini)
# Services are left running for fast re-runs, except with NOTIFYHUB_STOP_SERVICES=1 or in CI
# (CI=true), where whatever this run started is stopped at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
[[ -x .venv/bin/pytest ]] || { echo "test.sh: .venv/bin/pytest not found; use 'make test' (it creates the venv)" >&2; exit 1; }

# Assign first, then eval: `eval "$(cmd)"` would swallow a failure of cmd.
services_env="$(bash scripts/services.sh up)"
eval "$services_env"
SERVICES_STARTED="${NOTIFYHUB_SERVICES_STARTED:-}"
unset NOTIFYHUB_SERVICES_STARTED

# shellcheck disable=SC2317  # invoked from the EXIT trap
stop_services() {
  if [[ -n "$SERVICES_STARTED" ]]; then
    # shellcheck disable=SC2086  # word-split on purpose: "pg redis" -> pg redis
    bash scripts/services.sh down $SERVICES_STARTED || true
  fi
}
if [[ "${NOTIFYHUB_STOP_SERVICES:-0}" == 1 || "${CI:-}" == true ]]; then
  trap stop_services EXIT
fi

export DJANGO_SETTINGS_MODULE=notifyhub.settings.test

# The browser tests' Chromium (apt-get install chromium when missing, as PostgreSQL above).
# A run that excludes the e2e tests (`make test-fast`: -m "not e2e") does not need it.
if [[ " $* " != *" not e2e"* ]]; then
  bash scripts/browser.sh ensure
fi

rc=0
.venv/bin/pytest "$@" || rc=$?
if ((rc == 5)); then
  # pytest: exit code 5 = no tests were collected. A test run that ran nothing is a failure.
  echo "test.sh: pytest collected no tests (exit code 5); treating that as a failure" >&2
fi
exit "$rc"
