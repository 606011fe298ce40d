#!/usr/bin/env bash
# The whole test suite. Installs (if missing) and starts the services the integration tests
# need — Redis and ClickHouse on 127.0.0.1 — then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh start
# The dashboard's browser test needs headless Chromium and chromedriver.
bash scripts/browser.sh
# With the services started here, a test that cannot reach one fails instead of skipping.
export WEIR_REQUIRE_SERVICES=1
# Property tests (proptest) draw the same cases on every run of this script, so a red run can be
# replayed; set PROPTEST_RNG_SEED to another number (or run `cargo test` directly) to explore.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261203}"
cargo test --workspace "$@"
