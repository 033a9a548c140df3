#!/usr/bin/env bash
# `make run`: private PostgreSQL + Redis, dev secrets, migrations, demo data, then every
# process of the Procfile under supervisord in the foreground (a process that dies is started
# again; its output is in .run/logs/<name>.log and shown here, prefixed with its name).
# Ctrl-C stops everything, including the services if this run started them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "run.sh: $PY not found; use 'make run' (it creates the venv)" >&2; exit 1; }

say() { printf '[run] %s\n' "$*" >&2; }

# --- cleanup: stop supervisord (if running), then the services this run started --------------
SERVICES_STARTED=""
SUPERVISORD_PID=""
TAIL_PID=""
cleaned=0
# shellcheck disable=SC2317  # invoked from traps
cleanup() {
  ((cleaned)) && return 0
  cleaned=1
  if [[ -n "$SUPERVISORD_PID" ]] && kill -0 "$SUPERVISORD_PID" 2>/dev/null; then
    say "stopping supervisord (pid $SUPERVISORD_PID) and every process it runs..."
    # supervisord handles SIGTERM by stopping each program's process group (SIGTERM, then
    # SIGKILL after stopwaitsecs) before it exits.
    kill -TERM "$SUPERVISORD_PID" 2>/dev/null || true
    wait "$SUPERVISORD_PID" 2>/dev/null || true
  fi
  if [[ -n "$TAIL_PID" ]]; then
    kill -TERM "$TAIL_PID" 2>/dev/null || true
    wait "$TAIL_PID" 2>/dev/null || true
  fi
  if [[ -n "$SERVICES_STARTED" ]]; then
    say "stopping the services this run started: $SERVICES_STARTED"
    # shellcheck disable=SC2086  # word-split on purpose: "pg redis" -> pg redis
    bash "$ROOT/scripts/services.sh" down $SERVICES_STARTED || true
  fi
}
# shellcheck disable=SC2317  # invoked from traps
on_signal() {  # on_signal EXIT_CODE
  trap '' INT TERM  # a second Ctrl-C must not interrupt the cleanup half-way
  cleanup
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# --- 1. services ------------------------------------------------------------------------------
# Assign first, then eval: `eval "$(cmd)"` would swallow a failure of cmd.
services_env="$(bash "$ROOT/scripts/services.sh" up)"
eval "$services_env"
SERVICES_STARTED="${NOTIFYHUB_SERVICES_STARTED:-}"
unset NOTIFYHUB_SERVICES_STARTED

mkdir -p "$ROOT/.run"
export PYTHONUNBUFFERED=1
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-notifyhub.settings.local}"

# --- 2. dev secrets: key pair the sandbox uses to sign SendGrid-style webhooks ------------------
say "generating the sandbox webhook signing key"
keygen_out="$("$PY" -m sandbox keygen --out "$ROOT/.run/sendgrid_webhook_key.pem")"
# The public key is the (last non-empty) line it prints.
SENDGRID_WEBHOOK_PUBLIC_KEY="$(printf '%s\n' "$keygen_out" | sed '/^[[:space:]]*$/d' | tail -n 1 | tr -d '[:space:]')"
[[ -n "$SENDGRID_WEBHOOK_PUBLIC_KEY" ]] || { say "'python -m sandbox keygen' printed no public key"; exit 1; }
export SENDGRID_WEBHOOK_PUBLIC_KEY
export SANDBOX_SENDGRID_SIGNING_KEY_FILE="$ROOT/.run/sendgrid_webhook_key.pem"
# FCM: a service account whose token_uri is the sandbox's OAuth endpoint (push works locally).
if [[ ! -f "$ROOT/.run/fcm_service_account.json" ]]; then
  "$PY" -m sandbox fcm-service-account --out "$ROOT/.run/fcm_service_account.json" >/dev/null
fi
export FCM_SERVICE_ACCOUNT_FILE="$ROOT/.run/fcm_service_account.json"
# Test keys (nh_test_…) send through the same local sandbox (TEST_MODE_* settings).
export TEST_MODE_FCM_SERVICE_ACCOUNT_FILE="${TEST_MODE_FCM_SERVICE_ACCOUNT_FILE:-$FCM_SERVICE_ACCOUNT_FILE}"
export SANDBOX_FCM_SERVICE_ACCOUNT_FILE="$FCM_SERVICE_ACCOUNT_FILE"

# --- 3. database, static files, demo data ----------------------------------------------------
say "migrating ($DJANGO_SETTINGS_MODULE)"
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v0
say "loading demo data"
"$PY" manage.py demo --json >"$ROOT/.run/demo.json.tmp"
mv -f "$ROOT/.run/demo.json.tmp" "$ROOT/.run/demo.json"

# --- 4. banner ---------------------------------------------------------------------------------
"$PY" - "$ROOT/.run/demo.json" <<'PYEOF'
import json
import shlex
import sys

with open(sys.argv[1]) as fh:
    demo = json.load(fh)

key = str(demo.get("api_key", "<api_key missing from demo.json>"))
body = json.dumps(demo.get("example_send", {}), separators=(",", ":"))
curl = " \\\n    ".join(
    [
        "curl -sS -X POST http://127.0.0.1:8000/api/v1/notifications",
        "-H " + shlex.quote(f"Authorization: Bearer {key}"),
        "-H 'Content-Type: application/json'",
        "-d " + shlex.quote(body),
    ]
)
line = "=" * 72
staff = "\n".join(
    f"                  {user['role'] + ':':<15}{user['username']} / {user['password']}"
    for user in demo.get("staff", [])
)
print(f"""
{line}
 NotifyHub is starting (Ctrl-C stops everything)

   API            http://127.0.0.1:8000/api/v1/
   API docs       http://127.0.0.1:8000/api/docs/
   Admin          http://127.0.0.1:8000/admin/
                  login: {demo.get("admin_username", "?")} / {demo.get("admin_password", "?")}
{staff}
   Demo API key   {key}
   Test API key   {demo.get("test_api_key") or "-"}  (sends only to the sandbox)
   Sandbox inbox  http://127.0.0.1:8025/
   Inbox widget   {demo.get("inbox_demo_url", "http://127.0.0.1:8000/demo/inbox/")}  (demo recipient demo_user)
   Inbox stream   http://127.0.0.1:8001/api/v1/inbox/stream  (SSE; ?token= from
                  POST /api/v1/recipients/{{id}}/inbox-token)

 Send the example notification:

  {curl}
{line}
""", flush=True)
PYEOF

# --- 5. Prometheus: one metrics directory for every process of this run -------------------------
# gunicorn and the Celery workers write their counters there; /metrics adds them all up. Emptied
# first: files left by an earlier run would be counted again (and their pids reused).
export PROMETHEUS_MULTIPROC_DIR="$ROOT/.run/prometheus"
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# --- 6. supervisord in the foreground ---------------------------------------------------------
# The configuration is generated from the Procfile (scripts/supervisord_conf.py): every process
# is restarted when it exits, and stopped with its whole process group.
LOG_DIR="$ROOT/.run/logs"
mkdir -p "$LOG_DIR"
"$PY" "$ROOT/scripts/supervisord_conf.py" --procfile "$ROOT/Procfile" --run-dir "$ROOT/.run" \
  >"$ROOT/.run/supervisord.conf"
# Every program's log in the terminal, prefixed with its name (as honcho printed them).
names=()
while IFS= read -r line; do
  [[ "$line" =~ ^([A-Za-z0-9_-]+): ]] && names+=("${BASH_REMATCH[1]}")
done <"$ROOT/Procfile"
logs=()
for name in "${names[@]}"; do
  : >"$LOG_DIR/$name.log"
  logs+=("$LOG_DIR/$name.log")
done
tail -n 0 -F "${logs[@]}" 2>/dev/null | awk '
  /^==> .* <==$/ { name = $2; sub(/.*\//, "", name); sub(/\.log$/, "", name); next }
  NF { printf "%-16s| %s\n", name, $0; fflush() }' &
TAIL_PID=$!
say "supervisord: logs in $LOG_DIR; '.venv/bin/supervisorctl -c .run/supervisord.conf status' lists the processes"
# Started in the background and waited for, so that the INT/TERM traps run immediately (bash
# defers traps while a foreground child runs). supervisord puts each program in its own process
# group, so a Ctrl-C reaches only supervisord (and this script), which stops them.
"$ROOT/.venv/bin/supervisord" -c "$ROOT/.run/supervisord.conf" &
SUPERVISORD_PID=$!
rc=0
wait "$SUPERVISORD_PID" || rc=$?
SUPERVISORD_PID=""
exit "$rc"
