#!/usr/bin/env bash
# up-local.sh — the whole product on this machine from nothing: installs what is missing,
# builds cdq and the local image kit, then `cdq up` on the kit images in ./cdq-demo.
# Extra arguments go to `cdq up` (for example `--ip 10.1.2.3`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --release --quiet
exec target/release/cdq --dir cdq-demo --images local up "$@"
