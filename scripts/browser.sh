#!/usr/bin/env bash
# Installs (if missing) the headless browser of the dashboard's browser test
# (crates/weir-cli/tests/dashboard.rs): Debian's `chromium` and `chromium-driver` (chromedriver).
# Idempotent: with both on PATH it only says so. Called by scripts/test.sh.
set -euo pipefail

log() {
    echo "browser.sh: $*"
}

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    log "chromium and chromedriver present"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "browser.sh: error: apt-get not found; install chromium and chromedriver by hand" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "browser.sh: error: need root (or sudo) to run: $*" >&2; exit 1; fi
}
LOG="${TMPDIR:-/tmp}/weir-browser-apt.log"
log "apt-get install -y chromium chromium-driver"
as_root apt-get update -qq >"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; echo "browser.sh: error: apt-get update failed" >&2; exit 1; }
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; echo "browser.sh: error: apt-get install chromium chromium-driver failed (log: $LOG)" >&2; exit 1; }
log "installed: $(chromium --version 2>/dev/null || echo chromium)"
