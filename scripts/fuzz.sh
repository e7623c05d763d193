#!/usr/bin/env bash
# Fuzzes cdq's two input parsers (settings: cdq.yaml; project: a compose file) for a set
# time each, with the proptest generators in tests/fuzz_parsers.rs, and the foreign-tree
# property of tests/files_prop.rs (render, up on the fake engine, down, purge never change
# a file cdq did not make; needs root), and prints how many cases each ran. A panic (or an input slower than 30 s: a hang) fails the run and prints the
# shrunk input: fix it and keep it as a `regression_*` test in tests/fuzz_parsers.rs.
#
#   scripts/fuzz.sh                 # 600 s per target, both targets at once
#   FUZZ_SECONDS=60 scripts/fuzz.sh # shorter
#   FUZZ_SERIAL=1 scripts/fuzz.sh   # one target after the other (a 1-core machine)
#   FUZZ_PROFILE=dev scripts/fuzz.sh  # the debug build `cargo test` already made
#
# Release profile by default: many more cases in the same time; debug builds also check
# for arithmetic overflow, which is how the first findings showed up. proptest runs fresh
# random batches of PROPTEST_CASES until CDQ_FUZZ_SECONDS is up (see `fuzz` in the test).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-600}"
batch="${PROPTEST_CASES:-2000}"
log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT

# Build, then run the test binary itself: a `cargo test` that runs for ten minutes would
# hold cargo's lock on the (shared) target directory and stall every other build.
profile="${FUZZ_PROFILE:-release}"
built="$(cargo test --profile "$profile" --test fuzz_parsers --test files_prop --no-run --message-format=json)"
binary() {
    grep -o "\"executable\":\"[^\"]*$1[^\"]*\"" <<<"$built" | tail -1 | cut -d'"' -f4
}
bin="$(binary fuzz_parsers)"
files_bin="$(binary files_prop)"
[[ -x "$bin" && -x "$files_bin" ]] || { echo "fuzz.sh: no test binary built" >&2; exit 1; }

run() {
    local target="$1" exe="$bin" cases="$batch"
    # A foreign-tree case builds a directory tree and runs a whole lifecycle: smaller batches.
    if [[ "$target" == foreign_trees_* ]]; then exe="$files_bin"; cases="${FILES_CASES:-64}"; fi
    CDQ_FUZZ_SECONDS="$seconds" PROPTEST_CASES="$cases" RUST_BACKTRACE=0 \
        "$exe" "$target" --exact --nocapture >"$log_dir/$target.log" 2>&1
}

targets=(fuzz_settings_parse_file fuzz_project_parse foreign_trees_survive_render_up_down_and_purge)
status=0
if [[ -n "${FUZZ_SERIAL:-}" ]]; then
    for t in "${targets[@]}"; do run "$t" || status=1; done
else
    pids=()
    for t in "${targets[@]}"; do
        run "$t" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
fi

for t in "${targets[@]}"; do
    if grep -qE '^fuzz .*(no panic|no foreign entry changed)' "$log_dir/$t.log"; then
        grep '^fuzz ' "$log_dir/$t.log"
    else
        echo "FAILED: $t" >&2
        # The shrunk input and the assertion; capped, as deep-nesting inputs are long.
        grep -E 'panicked|Test failed|minimal failing input' "$log_dir/$t.log" | cut -c1-2000 >&2
        status=1
    fi
done
exit "$status"
