#!/usr/bin/env bash
# release.sh — static release binaries of cdq for x86_64 and aarch64, with sha256 sums, in dist/.
#
#   scripts/release.sh            # both architectures
#   scripts/release.sh aarch64    # one (x86_64 | aarch64)
#
# Both are musl targets (rustup), so the binaries are static and run on any Linux of that arch
# (Kylin/UOS on Kunpeng/Phytium included). zstd (bundles) is C, so each target needs a C
# compiler for musl: musl-gcc for x86_64, Debian's aarch64 cross gcc with the aarch64 musl
# headers for aarch64 (scripts/cc-aarch64-linux-musl); .cargo/config.toml points the `cc`
# crate at them, and links aarch64 with the toolchain's rust-lld and the musl objects the
# rustup target ships. scripts/setup.sh installs them. The size profile is [profile.release].
# Each binary is then checked: static, of its arch (`file`), `--version` and the hidden
# `bundle self-check` (a compress/decompress round trip through the C library, the aarch64
# one under qemu-aarch64-static), so a broken cross build is never released.
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

# The C compilers, before minutes of building (each names its package).
for a in "${arches[@]}"; do
    case "$a" in
        x86_64)
            command -v musl-gcc >/dev/null ||
                die "musl-gcc is missing, needed to build zstd for x86_64-unknown-linux-musl (hint: apt-get install musl-tools, or run scripts/setup.sh)"
            ;;
        aarch64)
            command -v aarch64-linux-gnu-gcc >/dev/null ||
                die "aarch64-linux-gnu-gcc is missing, needed to build zstd for aarch64-unknown-linux-musl (hint: apt-get install gcc-aarch64-linux-gnu, or run scripts/setup.sh)"
            [ -f /usr/lib/aarch64-linux-musl/musl-gcc.specs ] ||
                die "the aarch64 musl headers are missing (hint: dpkg --add-architecture arm64 && apt-get update && apt-get install musl-dev:arm64, or run scripts/setup.sh)"
            ;;
    esac
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
    printf '$ %s\n' "${runner[*]:+${runner[*]} }dist/cdq-$a bundle self-check"
    "${runner[@]}" "dist/cdq-$a" bundle self-check ||
        die "dist/cdq-$a bundle self-check failed: its zstd does not round-trip (a broken C cross build?)"
done

(cd dist && cat cdq-*.sha256 | sort -k2 >SHA256SUMS && cat SHA256SUMS)
printf '%-20s %10s %8s\n' binary bytes MiB
for a in "${arches[@]}"; do
    s=$(stat -c %s "dist/cdq-$a")
    printf '%-20s %10d %8.1f\n' "dist/cdq-$a" "$s" "$(awk -v s="$s" 'BEGIN { print s / 1048576 }')"
done
