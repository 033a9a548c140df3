#!/usr/bin/env bash
# Private PostgreSQL + Redis for development and tests.
#
#   scripts/services.sh up             start (or reuse) them; prints `export` lines on stdout:
#                                          eval "$(scripts/services.sh up)"
#   scripts/services.sh down [pg] [redis]
#                                      stop what `up` started (default: everything recorded)
#   scripts/services.sh status         show what is recorded / running
#   scripts/services.sh purge          `down`, then delete the private data directories
#
# DATABASE_URL / REDIS_URL, when already set, are kept and nothing is started for them.
# The ports default to 54329 (PostgreSQL) and 63799 (Redis) so that a system PostgreSQL on
# 5432 or Redis on 6379 is never touched; override with NOTIFYHUB_PG_PORT / NOTIFYHUB_REDIS_PORT.
#
# Only progress messages go to stderr; stdout carries nothing but shell assignments, so the
# output is safe to `eval`. Besides DATABASE_URL and REDIS_URL, `up` prints the (non-exported)
# variable NOTIFYHUB_SERVICES_STARTED listing what this very invocation started ("pg redis",
# "redis", or ""), so callers can pass it to `down` and stop only their own services.
#
# What `up` started is recorded in .run/started (pg=<data dir>, redis=<port>) and `down`
# stops only those.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
RUN_DIR="$ROOT/.run"
STARTED_FILE="$RUN_DIR/started"

# Ports: NOTIFYHUB_PG_PORT / NOTIFYHUB_REDIS_PORT if set; else the port this checkout used
# before (.run/<name>.port); else the default if nothing listens there, or the next free port
# above it — so two checkouts on one machine (a dev tree and CI's fresh clone) never collide.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
choose_port() {  # choose_port NAME DEFAULT -> port
  local file="$RUN_DIR/$1.port" port
  if [[ -s "$file" ]]; then cat "$file"; return 0; fi
  port="$2"
  while port_taken "$port"; do
    port=$((port + 1))
    ((port < $2 + 200)) || { printf '[services] ERROR: no free port near %s\n' "$2" >&2; exit 1; }
  done
  mkdir -p "$RUN_DIR"
  printf '%s\n' "$port" >"$file"
  printf '%s\n' "$port"
}
PG_PORT="${NOTIFYHUB_PG_PORT:-$(choose_port pg 54329)}"
REDIS_PORT="${NOTIFYHUB_REDIS_PORT:-$(choose_port redis 63799)}"
PG_DB=notifyhub
WAIT_SECONDS=30

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------------------------------------
# .run/started bookkeeping: one `key=value` line per service we started.
# ---------------------------------------------------------------------------------------------
started_get() {  # started_get KEY -> value (empty if none)
  [[ -f "$STARTED_FILE" ]] || return 0
  sed -n "s/^$1=//p" "$STARTED_FILE" | tail -n 1
}
started_set() {  # started_set KEY VALUE
  mkdir -p "$RUN_DIR"
  started_del "$1"
  printf '%s=%s\n' "$1" "$2" >>"$STARTED_FILE"
}
started_del() {
  [[ -f "$STARTED_FILE" ]] || return 0
  local tmp="$STARTED_FILE.tmp.$$"
  grep -v "^$1=" "$STARTED_FILE" >"$tmp" || true
  if [[ -s "$tmp" ]]; then mv -f "$tmp" "$STARTED_FILE"; else rm -f "$tmp" "$STARTED_FILE"; fi
}

# Serialise concurrent up/down calls on the same checkout. Daemons are started with `9>&-`
# so they do not inherit (and keep holding) the lock.
lock() {
  mkdir -p "$RUN_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$RUN_DIR/.services.lock"
    flock -w 120 9 || die "timed out waiting for another scripts/services.sh ($RUN_DIR/.services.lock)"
  fi
}

tail_log() {  # tail_log FILE
  if [[ -r "$1" ]]; then
    printf '[services] ---- last lines of %s ----\n' "$1" >&2
    tail -n 25 "$1" >&2 || true
    printf '[services] ----\n' >&2
  else
    log "(log $1 not readable)"
  fi
}

apt_install() {  # apt_install PACKAGE WHAT
  if ! is_root; then
    die "$2 is not installed. Install the '$1' package (e.g. 'sudo apt-get install -y $1'), or set ${3:-the URL variable} to an existing server."
  fi
  command -v apt-get >/dev/null 2>&1 || die "$2 is not installed and apt-get is not available; install it by hand."
  log "$2 not found; installing package '$1' with apt-get (one-time)..."
  {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1"
  } </dev/null >&2 || die "apt-get install $1 failed"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
PG_BIN=""
find_pg_bin() {
  local d best=""
  # Newest /usr/lib/postgresql/<version>/bin that has the server tools.
  while IFS= read -r d; do
    [[ -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]] && best="$d"
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
  if [[ -z "$best" ]] && command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    best="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
  fi
  PG_BIN="$best"
  [[ -n "$PG_BIN" ]]
}

# Client tools: prefer the server's own version, fall back to PATH (postgresql-client).
pg_client() {  # pg_client TOOL -> path
  if [[ -n "$PG_BIN" && -x "$PG_BIN/$1" ]]; then echo "$PG_BIN/$1"; else command -v "$1" || true; fi
}

# PostgreSQL refuses to run as root: as root, run the server tools as the `postgres` user.
# (cd / first so tools do not warn about an unreadable working directory such as /root.)
PG_USER=""
as_pg() {
  if [[ -n "$PG_USER" ]]; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    "$@"
  fi
}

# Decide where the cluster lives: $ROOT/.run/pg, or, if the `postgres` user cannot reach
# that folder (e.g. the checkout is under a mode-700 home directory), /tmp/notifyhub-pg-<hash>.
PG_DIR=""; PG_DATA=""; PG_LOG=""
choose_pg_dir() {
  if is_root; then
    PG_USER=postgres
    id -u "$PG_USER" >/dev/null 2>&1 \
      || die "running as root but there is no 'postgres' system user (PostgreSQL refuses to run as root). Install the postgresql package or run as a normal user."
  fi

  local preferred="$RUN_DIR/pg"
  mkdir -p "$RUN_DIR"
  if [[ -n "$PG_USER" ]]; then
    chmod a+x "$RUN_DIR" 2>/dev/null || true  # a restrictive umask must not hide .run from postgres
    if as_pg test -x "$RUN_DIR" 2>/dev/null; then
      mkdir -p "$preferred"
      chown "$PG_USER:" "$preferred" 2>/dev/null || true
      chmod 700 "$preferred" 2>/dev/null || true
    fi
  else
    mkdir -p "$preferred"
  fi

  if as_pg test -w "$preferred" 2>/dev/null && as_pg test -x "$preferred" 2>/dev/null; then
    PG_DIR="$preferred"
  else
    local hash
    hash="$(printf '%s' "$ROOT" | sha1sum 2>/dev/null | cut -c1-12)" || true
    [[ -n "$hash" ]] || hash="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    PG_DIR="/tmp/notifyhub-pg-$hash"
    log "user '${PG_USER:-$(id -un)}' cannot reach $preferred (a parent directory is not traversable);"
    log "using $PG_DIR for the private PostgreSQL cluster instead."
    if [[ ! -d "$PG_DIR" ]]; then
      (umask 077 && mkdir -p "$PG_DIR")
      [[ -n "$PG_USER" ]] && chown "$PG_USER:" "$PG_DIR"
    fi
    local owner
    owner="$(stat -c %U "$PG_DIR")"
    [[ "$owner" == "${PG_USER:-$(id -un)}" ]] \
      || die "$PG_DIR exists but is owned by '$owner'; remove it or set DATABASE_URL."
    [[ -L "$PG_DIR" ]] && die "$PG_DIR is a symlink; refusing to use it."
  fi
  PG_DATA="$PG_DIR/data"
  PG_LOG="$PG_DIR/postgres.log"
}

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_ready() {  # pg_ready PORT
  "$(pg_client pg_isready)" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null | tr -d '[:space:]'; }

wait_for() {  # wait_for DESCRIPTION LOGFILE CMD...
  local what="$1" logf="$2"; shift 2
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "$what did not answer within ${WAIT_SECONDS}s."
      [[ -n "$logf" ]] && tail_log "$logf"
      die "$what is not reachable"
    fi
    sleep 0.3
  done
}

pg_start() {
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    log "initialising a PostgreSQL cluster in $PG_DATA"
    local locale=C
    # C.UTF-8 keeps upper()/lower()/ILIKE Unicode-aware; plain C is the portable fallback.
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres --encoding=UTF8 --locale="$locale" \
      >"$PG_DIR/initdb.log" 2>&1 || { tail_log "$PG_DIR/initdb.log"; die "initdb failed"; }
  fi

  if pg_ready "$PG_PORT"; then
    die "something already answers on 127.0.0.1:$PG_PORT but it is not the cluster in $PG_DATA. Stop it, set NOTIFYHUB_PG_PORT to a free port, or set DATABASE_URL."
  fi

  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  # Development/test instance only: fsync, synchronous_commit and full_page_writes are off
  # for speed; a crash of the machine can lose or corrupt this throw-away data.
  # TCP on 127.0.0.1 only, no unix socket (so it cannot collide with a system cluster).
  local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''"
  opts+=" -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  # 9>&- : the daemon must not inherit the lock file descriptor (see lock()).
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECONDS" -o "$opts" start </dev/null >/dev/null 2>&1 9>&-; then
    tail_log "$PG_LOG"
    die "PostgreSQL failed to start on 127.0.0.1:$PG_PORT (is the port taken? try NOTIFYHUB_PG_PORT=...)"
  fi
}

pg_stop() {  # pg_stop DATA_DIR
  local data="$1"
  if [[ -z "$PG_BIN" ]]; then find_pg_bin || { log "PostgreSQL binaries not found; cannot stop $data"; return 0; }; fi
  if is_root; then PG_USER=postgres; fi
  PG_DATA="$data"
  if [[ -d "$data" ]] && pg_running; then
    log "stopping PostgreSQL ($data)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1; then
      # A postmaster that was killed may leave a stale pid file behind; that is not an error.
      pg_running && die "pg_ctl stop failed for $data"
      log "PostgreSQL ($data) had already exited"
    fi
  else
    log "PostgreSQL ($data) is not running"
  fi
}

ensure_database() {
  local psql; psql="$(pg_client psql)"
  [[ -n "$psql" ]] || die "psql not found"
  local exists
  exists="$("$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XtAq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" 2>&1)" \
    || die "cannot query PostgreSQL on 127.0.0.1:$PG_PORT: $exists"
  if [[ "$exists" != "1" ]]; then
    log "creating database '$PG_DB'"
    "$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
      -c "CREATE DATABASE $PG_DB" >&2 || die "could not create database $PG_DB"
  fi
}

STARTED_NOW=()

pg_up() {
  if [[ -n "${DATABASE_URL:-}" ]]; then
    log "DATABASE_URL is set; using it (no private PostgreSQL)"
    local isready; isready="$(command -v pg_isready || true)"
    if [[ "$DATABASE_URL" =~ ^postgres(ql)?:// && -n "$isready" ]]; then
      wait_for "PostgreSQL at DATABASE_URL" "" "$isready" -q -d "$DATABASE_URL" -t 2
    fi
    printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
    return 0
  fi

  if ! find_pg_bin; then
    apt_install postgresql "PostgreSQL" DATABASE_URL
    find_pg_bin || die "PostgreSQL binaries still not found after installing (looked in /usr/lib/postgresql/*/bin)"
  fi
  choose_pg_dir

  if [[ -f "$PG_DATA/PG_VERSION" ]] && pg_running; then
    local port; port="$(pg_running_port)"
    if [[ -n "$port" && "$port" != "$PG_PORT" ]]; then
      log "private PostgreSQL is running on port $port, but $PG_PORT was requested; restarting it"
      pg_stop "$PG_DATA"
      pg_start
      STARTED_NOW+=(pg)
    fi
  else
    pg_start
    STARTED_NOW+=(pg)
  fi
  # Anything running from our private data directory was started by this script.
  started_set pg "$PG_DATA"
  wait_for "PostgreSQL on 127.0.0.1:$PG_PORT" "$PG_LOG" pg_ready "$PG_PORT"
  ensure_database
  printf 'export DATABASE_URL=%q\n' "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
REDIS_DIR="$RUN_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

redis_ping() {  # redis_ping PORT
  if command -v redis-cli >/dev/null 2>&1; then
    # `timeout`: redis-cli would wait forever on a port held by something that is not Redis.
    local t=(); command -v timeout >/dev/null 2>&1 && t=(timeout 3)
    [[ "$("${t[@]}" redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
  else
    # No redis-cli: speak RESP over bash's /dev/tcp.
    (
      exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf 'PING\r\n' >&3
      IFS= read -r -t 2 reply <&3 || exit 1
      [[ "$reply" == +PONG* ]]
    ) 2>/dev/null
  fi
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
redis_pid() { tr -d '[:space:]' <"$REDIS_PIDFILE" 2>/dev/null || true; }

redis_up() {
  if [[ -n "${REDIS_URL:-}" ]]; then
    log "REDIS_URL is set; using it (no private Redis)"
    if command -v redis-cli >/dev/null 2>&1 && [[ "$REDIS_URL" =~ ^rediss?:// ]]; then
      # shellcheck disable=SC2016  # $1 is expanded by the inner bash
      wait_for "Redis at REDIS_URL" "" bash -c '[[ "$(redis-cli -u "$1" ping 2>/dev/null)" == PONG ]]' _ "$REDIS_URL"
    fi
    printf 'export REDIS_URL=%q\n' "$REDIS_URL"
    return 0
  fi

  if redis_ping "$REDIS_PORT"; then
    if pid_alive "$(redis_pid)"; then
      started_set redis "$REDIS_PORT"
    else
      log "reusing the Redis already answering on 127.0.0.1:$REDIS_PORT (not started by this checkout; 'down' leaves it alone)"
    fi
  else
    local server; server="$(command -v redis-server || true)"
    [[ -z "$server" && -x /usr/bin/redis-server ]] && server=/usr/bin/redis-server
    if [[ -z "$server" ]]; then
      apt_install redis-server "Redis" REDIS_URL
      server="$(command -v redis-server || echo /usr/bin/redis-server)"
      [[ -x "$server" ]] || die "redis-server still not found after installing"
    fi
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PIDFILE"
    log "starting Redis on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
    # shellcheck disable=SC2094  # redis appends to its own log; early errors go there too
    "$server" --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
      --save '' --appendonly no --dir "$REDIS_DIR" \
      --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" </dev/null >>"$REDIS_LOG" 2>&1 9>&- \
      || { tail_log "$REDIS_LOG"; die "redis-server failed to start"; }
    STARTED_NOW+=(redis)
    started_set redis "$REDIS_PORT"
    local t0=$SECONDS
    until redis_ping "$REDIS_PORT"; do
      # Fail fast when the daemon died (e.g. port in use) instead of waiting the full timeout.
      if ((SECONDS - t0 >= WAIT_SECONDS)) || { ((SECONDS - t0 >= 3)) && ! pid_alive "$(redis_pid)"; }; then
        tail_log "$REDIS_LOG"
        started_del redis
        die "Redis did not answer on 127.0.0.1:$REDIS_PORT (is the port taken? try NOTIFYHUB_REDIS_PORT=...)"
      fi
      sleep 0.2
    done
  fi
  printf 'export REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT/0"
}

redis_stop() {  # redis_stop PORT
  local port="$1" pid; pid="$(redis_pid)"
  if ! pid_alive "$pid"; then
    log "Redis (port $port) is not running"
    rm -f "$REDIS_PIDFILE"
    return 0
  fi
  log "stopping Redis (port $port, pid $pid)"
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
  else
    kill "$pid" 2>/dev/null || true
  fi
  local i
  for ((i = 0; i < 100; i++)); do pid_alive "$pid" || break; sleep 0.1; done
  if pid_alive "$pid"; then
    log "Redis did not exit after 10s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$REDIS_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
cmd_up() {
  lock
  pg_up
  redis_up
  printf 'NOTIFYHUB_SERVICES_STARTED=%q\n' "${STARTED_NOW[*]:-}"
  if ((${#STARTED_NOW[@]})); then log "started: ${STARTED_NOW[*]}"; else log "services already up"; fi
}

cmd_down() {  # cmd_down [pg] [redis]
  lock
  local want=("$@") w
  ((${#want[@]})) || want=(pg redis)
  [[ -s "$STARTED_FILE" ]] || { log "nothing recorded in $STARTED_FILE; nothing to stop"; return 0; }
  for w in "${want[@]}"; do
    case "$w" in
      pg)
        local data; data="$(started_get pg)"
        if [[ -n "$data" ]]; then pg_stop "$data"; started_del pg; fi
        ;;
      redis)
        local port; port="$(started_get redis)"
        if [[ -n "$port" ]]; then redis_stop "$port"; started_del redis; fi
        ;;
      *) die "unknown service '$w' (expected pg or redis)" ;;
    esac
  done
}

cmd_status() {
  log "recorded in $STARTED_FILE:"
  if [[ -f "$STARTED_FILE" ]]; then sed 's/^/[services]   /' "$STARTED_FILE" >&2; else log "  (nothing)"; fi
  find_pg_bin || true
  if [[ -n "$PG_BIN" ]] && pg_ready "$PG_PORT"; then log "PostgreSQL: answering on 127.0.0.1:$PG_PORT"; else log "PostgreSQL: not answering on 127.0.0.1:$PG_PORT"; fi
  if redis_ping "$REDIS_PORT"; then log "Redis: answering on 127.0.0.1:$REDIS_PORT"; else log "Redis: not answering on 127.0.0.1:$REDIS_PORT"; fi
}

cmd_purge() {
  # Stop our private cluster even if .run/started was lost, then delete its data.
  cmd_down
  if find_pg_bin; then
    choose_pg_dir 2>/dev/null
    if [[ -f "$PG_DATA/PG_VERSION" ]] && pg_running; then pg_stop "$PG_DATA"; fi
    if [[ "$PG_DIR" == /tmp/notifyhub-pg-* ]]; then log "removing $PG_DIR"; rm -rf "$PG_DIR"; fi
  fi
  log "removing $RUN_DIR/pg and $REDIS_DIR"
  rm -rf "$RUN_DIR/pg" "$REDIS_DIR"
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  purge) cmd_purge ;;
  *)
    echo "usage: $0 up | down [pg] [redis] | status | purge" >&2
    exit 2
    ;;
esac
