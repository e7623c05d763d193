#!/usr/bin/env bash
# up-local.sh — the whole product on this machine from nothing: installs what is missing,
# builds cdq and the local image kit (at the same time: the kit waits on apt and Docker, cdq
# on the compiler), then `cdq up` on the kit images in ./cdq-demo.
# Extra arguments go to `cdq up` (for example `--ip 10.1.2.3`).
# cdq is built unoptimised here: it spends its time waiting on Docker, and an optimised,
# LTO release build (scripts/release.sh, for what a presales engineer carries) takes minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --quiet &
build=$!
scripts/setup.sh
wait "$build" || { echo "up-local: building cdq failed (above)" >&2; exit 1; }
exec "${CARGO_TARGET_DIR:-target}/debug/cdq" --dir cdq-demo --images local up "$@"
