#!/usr/bin/env bash
# release.sh — static release binaries of cdq for x86_64 and aarch64, with sha256 sums, in dist/.
#
#   scripts/release.sh            # both architectures
#   scripts/release.sh aarch64    # one (x86_64 | aarch64)
#
# Both are musl targets (rustup), so the binaries are static and run on any Linux of that arch
# (Kylin/UOS on Kunpeng/Phytium included). No C toolchain is needed for aarch64: no dependency
# builds C, and .cargo/config.toml links it with the toolchain's rust-lld and the musl objects
# the rustup target ships. The size profile is [profile.release] in Cargo.toml.
# Output: dist/cdq-<arch>, dist/cdq-<arch>.sha256 and dist/SHA256SUMS (`sha256sum -c` ready).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[release] %s\n' "$*" >&2; }
die() { printf '[release] error: %s\n' "$*" >&2; exit 1; }

arches=("$@")
((${#arches[@]})) || arches=(x86_64 aarch64)
for a in "${arches[@]}"; do
    case "$a" in
        x86_64 | aarch64) ;;
        *) die "unknown architecture \`$a\` (hint: x86_64 or aarch64)" ;;
    esac
done

installed=$(rustup target list --installed)
for a in "${arches[@]}"; do
    grep -qx "$a-unknown-linux-musl" <<<"$installed" ||
        die "the rustup target \`$a-unknown-linux-musl\` is not installed (hint: rustup target add $a-unknown-linux-musl, or run scripts/setup.sh)"
done

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p dist
for a in "${arches[@]}"; do
    t="$a-unknown-linux-musl"
    log "building $t"
    start=$SECONDS
    cargo build --release --locked --target "$t" --bin cdq
    log "$t built in $((SECONDS - start)) s"
    # Copy to a temp name first so an interrupted copy never looks like a release.
    install -m 0755 "$target_dir/$t/release/cdq" "dist/.cdq-$a.tmp"
    mv -f "dist/.cdq-$a.tmp" "dist/cdq-$a"
    (cd dist && sha256sum "cdq-$a" >"cdq-$a.sha256")
done

# The checks a release must pass, whichever arches were built this time.
for a in "${arches[@]}"; do
    f="dist/cdq-$a"
    desc=$(file -b "$f")
    printf '%s: %s\n' "$f" "$desc"
    case "$desc" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) die "$f is not static: $desc" ;;
    esac
    case "$a" in
        x86_64) want="x86-64" ;;
        aarch64) want="ARM aarch64" ;;
    esac
    [[ "$desc" == *"$want"* ]] || die "$f is not an $want binary: $desc"
done

for a in "${arches[@]}"; do
    case "$a" in
        x86_64) runner=() ;;
        aarch64)
            if [[ "$(uname -m)" == aarch64 ]]; then
                runner=()
            else
                command -v qemu-aarch64-static >/dev/null ||
                    die "qemu-aarch64-static is missing, so dist/cdq-aarch64 cannot be tried here (hint: apt-get install qemu-user-static)"
                runner=(qemu-aarch64-static)
            fi
            ;;
    esac
    printf '$ %s\n' "${runner[*]:+${runner[*]} }dist/cdq-$a --version"
    "${runner[@]}" "dist/cdq-$a" --version || die "dist/cdq-$a --version failed"
done

(cd dist && cat cdq-*.sha256 | sort -k2 >SHA256SUMS && cat SHA256SUMS)
printf '%-20s %10s %8s\n' binary bytes MiB
for a in "${arches[@]}"; do
    s=$(stat -c %s "dist/cdq-$a")
    printf '%-20s %10d %8.1f\n' "dist/cdq-$a" "$s" "$(awk -v s="$s" 'BEGIN { print s / 1048576 }')"
done
