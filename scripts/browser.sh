#!/usr/bin/env bash
# The browser the browser tests drive (tests/e2e/test_inbox_browser.py): Debian's Chromium at
# /usr/bin/chromium, driven by the Playwright Python package (requirements.txt). Playwright's
# own `playwright install` downloads browsers from a CDN; we use the distribution's package.
#   bash scripts/browser.sh ensure    install chromium with apt-get when missing (as root,
#                                     non-interactive, once), else say why it cannot
#   bash scripts/browser.sh path      print the executable's path (exit 1 when missing)
# Used by scripts/test.sh (set NOTIFYHUB_BROWSER=skip to skip the install; the browser tests
# then skip with the reason). CHROMIUM_PATH overrides the executable.
set -euo pipefail

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
log() { printf '[browser] %s\n' "$*" >&2; }

case "${1:-ensure}" in
  path)
    [[ -x "$CHROMIUM" ]] && { echo "$CHROMIUM"; exit 0; }
    exit 1
    ;;
  ensure)
    [[ -x "$CHROMIUM" ]] && exit 0
    if [[ "${NOTIFYHUB_BROWSER:-}" == skip ]]; then
      log "chromium not found and NOTIFYHUB_BROWSER=skip: the browser tests will be skipped"
      exit 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
      log "chromium not found at $CHROMIUM; install it ('sudo apt-get install -y chromium') to run the browser tests (they are skipped until then)"
      exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
      log "chromium not found and apt-get is not available: the browser tests will be skipped"
      exit 0
    fi
    log "chromium not found; installing Debian's 'chromium' package with apt-get (one-time)..."
    {
      apt-get update -q
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
    } </dev/null >&2 || log "apt-get install chromium failed: the browser tests will be skipped"
    exit 0
    ;;
  *)
    echo "usage: $0 ensure|path" >&2
    exit 2
    ;;
esac
