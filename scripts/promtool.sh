#!/usr/bin/env bash
# The alert rules (deploy/prometheus/): `promtool check rules` and `promtool test rules`.
#   bash scripts/promtool.sh            install promtool if missing, then check and test
#   bash scripts/promtool.sh --install  only make sure promtool is there (prints its path)
# promtool comes with Debian's `prometheus` package; as root with apt-get it is installed once
# (as scripts/services.sh installs postgresql and redis-server). PROMTOOL=/path overrides.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

log() { printf '[promtool] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

find_promtool() {
  if [[ -n "${PROMTOOL:-}" && -x "$PROMTOOL" ]]; then echo "$PROMTOOL"; return 0; fi
  command -v promtool 2>/dev/null && return 0
  [[ -x /usr/bin/promtool ]] && { echo /usr/bin/promtool; return 0; }
  return 1
}

install_promtool() {
  [[ "$(id -u)" == 0 ]] || die "promtool is not installed. Install Debian's 'prometheus' package (e.g. 'sudo apt-get install -y prometheus') or set PROMTOOL."
  command -v apt-get >/dev/null 2>&1 || die "promtool is not installed and apt-get is not available; install it by hand or set PROMTOOL."
  log "promtool not found; installing package 'prometheus' with apt-get (one-time)..."
  {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
  } </dev/null >&2 || die "apt-get install prometheus failed"
  # The package may start its own server (a system with a service manager): not ours to run.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
    systemctl disable prometheus >/dev/null 2>&1 || true
  fi
}

promtool="$(find_promtool)" || { install_promtool; promtool="$(find_promtool)" || die "promtool still not found after installing"; }

if [[ "${1:-}" == "--install" ]]; then
  echo "$promtool"
  exit 0
fi

"$promtool" check rules deploy/prometheus/alerts.yml
"$promtool" test rules deploy/prometheus/alerts_test.yml
