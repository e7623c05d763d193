#!/usr/bin/env bash
# test.sh — every test of cdq: unit, snapshot, CLI, engine contract, preflight, local kit and
# real-daemon stack tests. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo test --all-targets "$@"
