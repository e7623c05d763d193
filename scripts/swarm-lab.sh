#!/usr/bin/env bash
# swarm-lab.sh up|down|status|env|endpoints — a three-node Docker Swarm on this one machine, for
# cdq's Swarm target (tests/swarm_real.rs, scripts/bench-swarm.sh) and for trying it by hand.
#
# Every node is a container running Debian's own Docker engine (docker.io, from a
# debootstrapped image: no registry). A manager and two workers join a swarm on a bridge
# network of the lab's own. Nothing on the host daemon is put in swarm mode, and `down`
# removes only what carries the lab's label (containers, volumes, network); the node image
# is kept for the next `up` (`down --image` removes it too).
#
# Why these flags (measured facts in the team notes, swarm-lab.md): `--privileged` fails on
# this VM (its bounding set lacks CAP_SYS_RESOURCE), so a node gets every other capability,
# no seccomp/apparmor, writable /sys and cgroups, and /var/lib/docker on a named volume
# (overlay2 on the container's own filesystem refuses to mount).
#
# Each node's Docker socket is bind-mounted out to $LAB_DIR/<node>/docker.sock, so the host
# talks to every node over a unix socket (no unauthenticated TCP port). `env` prints
# DOCKER_HOST for the manager; `endpoints` the `cluster:` block of cdq.yaml that names each
# node's socket (`cluster.endpoints`), through which cdq loads a bundle onto the nodes
# (`cdq up --bundle FILE`) and checks each one.
#
# The nodes start with no images: cdq loads them. CDQ_SWARM_LAB_PRELOAD=1 loads images onto
# every node at `up` the old way (`docker save | docker load`), e.g. for
# scripts/bench-swarm.sh's `docker stack deploy` peer.
#
# Environment: CDQ_SWARM_LAB_DIR (default /tmp/cdq-swarm-lab), CDQ_SWARM_LAB_PRELOAD,
# CDQ_SWARM_LAB_IMAGES (image references to preload; default: the local kit for amd64,
# versions 1 and 2 when present), DEBIAN_MIRROR (default: the first mirror in the
# machine's apt sources).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The nodes are containers of this machine's daemon (their sockets are bind-mounted out),
# even when the caller's DOCKER_HOST points at the lab's manager (`env` prints that).
unset DOCKER_HOST

LABEL=io.cdq.swarm-lab
IMAGE=cdq-swarm-node:1
NET=cdq-swarm-lab
NODES=(manager worker1 worker2)
LAB_DIR=${CDQ_SWARM_LAB_DIR:-/tmp/cdq-swarm-lab}
SUBNET=172.31.250.0/24

log() { printf '[swarm-lab] %s\n' "$*" >&2; }
die() { printf '[swarm-lab] error: %s\n' "$*" >&2; exit 1; }

node_name() { echo "cdq-lab-$1"; }
sock() { echo "$LAB_DIR/$1/docker.sock"; }
on() { local n=$1; shift; docker -H "unix://$(sock "$n")" "$@"; }

mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

# The node's init: what a privileged container would have had, then dockerd. Given to
# `docker run` (not only baked into the image), so a change here needs no image rebuild.
NODE_INIT='#!/bin/sh
set -e
mount -o remount,rw /sys 2>/dev/null || true
for d in /sys/fs/cgroup/*; do
  [ -d "$d" ] && mount -o remount,rw,bind "$d" "$d" 2>/dev/null || true
done
mount -t tmpfs tmpfs /tmp
mount --make-rshared /
mkdir -p /run/lab
# A node killed (not stopped) leaves its pid files: a restarted dockerd would refuse to start.
rm -f /run/lab/docker.sock /var/run/docker.pid /var/run/docker/containerd/containerd.pid
exec dockerd --storage-driver=overlay2 -H unix:///var/run/docker.sock -H unix:///run/lab/docker.sock
'

build_image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        return
    fi
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    local root
    root=$(mktemp -d /var/tmp/cdq-swarm-node.XXXXXX)
    local m
    m=$(mirror)
    log "building $IMAGE: debootstrap bookworm from $m (about 80 s cold)"
    debootstrap --variant=minbase \
        --include=docker.io,iptables,ca-certificates,procps,fuse-overlayfs,curl,iproute2 \
        bookworm "$root" "$m" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
    rm -f "$root.log"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
    printf '%s' "$NODE_INIT" >"$root/usr/local/sbin/node-init"
    chmod 0755 "$root/usr/local/sbin/node-init"
    tar -C "$root" -c . | docker import \
        --change 'ENTRYPOINT ["/usr/local/sbin/node-init"]' \
        --change "LABEL $LABEL=node-image" - "$IMAGE" >/dev/null
    rm -rf "$root"
    log "built $IMAGE"
}

wait_daemon() {
    local n=$1
    for _ in $(seq 1 120); do
        on "$n" version >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    docker logs --tail 20 "$(node_name "$n")" >&2 || true
    die "the Docker engine in node $n did not answer on $(sock "$n")"
}

start_node() {
    local n=$1 c
    c=$(node_name "$n")
    mkdir -p "$LAB_DIR/$n"
    if docker container inspect "$c" >/dev/null 2>&1; then
        [[ $(docker container inspect -f '{{.State.Running}}' "$c") == true ]] || docker start "$c" >/dev/null
        return
    fi
    docker run -d --name "$c" --hostname "$n" --label "$LABEL=node" \
        --network "$NET" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined \
        --device-cgroup-rule 'a *:* rwm' --device /dev/fuse \
        --mount "type=volume,src=$c-docker,dst=/var/lib/docker,volume-label=$LABEL=volume" \
        --mount "type=volume,src=$c-data,dst=/srv/cdq,volume-label=$LABEL=volume" \
        -v "$LAB_DIR/$n:/run/lab" \
        --entrypoint /bin/sh "$IMAGE" -c "$NODE_INIT" >/dev/null
}

images_to_load() {
    if [[ -n "${CDQ_SWARM_LAB_IMAGES:-}" ]]; then
        tr ', ' '\n\n' <<<"$CDQ_SWARM_LAB_IMAGES" | sed '/^$/d'
        return
    fi
    docker image ls --format '{{.Repository}}:{{.Tag}}' 'cdq-local/*' | grep -E ':[12]-amd64$' \
        | grep -v '/base:' | sort || true
}

# Loads onto every node the images it does not have yet (docker save | docker load: no registry).
load_images() {
    local want=() missing img n
    mapfile -t want < <(images_to_load)
    ((${#want[@]})) || { log "no kit images to load (build them: scripts/build-local-images.sh)"; return; }
    for n in "${NODES[@]}"; do
        missing=()
        for img in "${want[@]}"; do
            on "$n" image inspect "$img" >/dev/null 2>&1 || missing+=("$img")
        done
        ((${#missing[@]})) || continue
        log "node $n: loading ${#missing[@]} image(s)"
        docker save "${missing[@]}" | on "$n" load >/dev/null
    done
}

up() {
    build_image
    if ! docker network inspect "$NET" >/dev/null 2>&1; then
        docker network create --label "$LABEL=network" --subnet "$SUBNET" "$NET" >/dev/null
    fi
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_daemon "$n"; done
    local state
    state=$(on manager info -f '{{.Swarm.LocalNodeState}}')
    if [[ $state != active ]]; then
        local addr
        addr=$(docker container inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$(node_name manager)")
        on manager swarm init --advertise-addr "$addr" >/dev/null
        log "swarm initialised on manager ($addr)"
    fi
    local token maddr
    token=$(on manager swarm join-token -q worker)
    maddr=$(on manager info -f '{{.Swarm.NodeAddr}}')
    for n in worker1 worker2; do
        if [[ $(on "$n" info -f '{{.Swarm.LocalNodeState}}') != active ]]; then
            on "$n" swarm join --token "$token" "$maddr:2377" >/dev/null
            log "$n joined"
        fi
    done
    for _ in $(seq 1 60); do
        [[ $(on manager node ls --format '{{.Status}}' | grep -c '^Ready$') -eq 3 ]] && break
        sleep 1
    done
    [[ $(on manager node ls --format '{{.Status}}' | grep -c '^Ready$') -eq 3 ]] \
        || { on manager node ls >&2; die "the three nodes are not all Ready"; }
    if [[ ${CDQ_SWARM_LAB_PRELOAD:-0} == 1 ]]; then
        load_images
    fi
    log "lab up: three nodes Ready; manager at unix://$(sock manager)"
    echo "DOCKER_HOST=unix://$(sock manager)"
}

down() {
    local ids
    ids=$(docker ps -aq --filter "label=$LABEL")
    [[ -z $ids ]] || docker rm -f $ids >/dev/null
    ids=$(docker volume ls -q --filter "label=$LABEL")
    [[ -z $ids ]] || docker volume rm $ids >/dev/null
    ids=$(docker network ls -q --filter "label=$LABEL")
    [[ -z $ids ]] || docker network rm $ids >/dev/null
    if [[ ${1:-} == --image ]]; then
        docker image rm "$IMAGE" >/dev/null 2>&1 || true
    fi
    rm -rf "$LAB_DIR"
    log "lab removed"
}

status() {
    for n in "${NODES[@]}"; do
        printf '%s: %s\n' "$n" "$(docker container inspect -f '{{.State.Status}}' "$(node_name "$n")" 2>/dev/null || echo absent)"
    done
    on manager node ls 2>/dev/null || true
}

case "${1:-}" in
    up) up ;;
    down) shift; down "${1:-}" ;;
    status) status ;;
    env) echo "DOCKER_HOST=unix://$(sock manager)" ;;
    endpoints)
        printf 'cluster:\n  nodes: [%s]\n  endpoints:\n' "$(IFS=,; echo "${NODES[*]}" | sed 's/,/, /g')"
        for n in "${NODES[@]}"; do printf '    %s: unix://%s\n' "$n" "$(sock "$n")"; done ;;
    *) echo "usage: $0 up|down [--image]|status|env|endpoints" >&2; exit 2 ;;
esac
