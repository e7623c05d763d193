#!/usr/bin/env bash
# Benchmark (not a test): `cdq pull` of a nine-image set against `docker compose pull` of the
# file cdq renders for it, from the same loopback registry (Debian's docker-registry), images
# removed before each round. Prints a markdown table and writes it to bench/pull.md.
#
#   scripts/bench-pull.sh [ROUNDS]        (CDQ_BIN=path: the cdq to run; default: a debug build)
#
# The kit images cannot be removed (other tests use them) and a pull of them would find every
# layer present, so the nine images are throwaway ones of the test's own: one layer of
# random bytes each (`docker import`), sizes 20-60 MB, pushed once under
# 127.0.0.1:<port>/bench/<service>:1 and pointed at with `image_refs`. Removing their tags
# removes them whole, so each round downloads and extracts every byte.
set -euo pipefail
rounds="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cdq="${CDQ_BIN:-}"
if [ -z "$cdq" ]; then
  cargo build --quiet --bin cdq
  cdq="${CARGO_TARGET_DIR:-$root/target}/debug/cdq"
fi
docker compose version >/dev/null 2>&1 || { echo "docker compose v2 is missing: scripts/setup.sh installs it" >&2; exit 1; }

work=$(mktemp -d /tmp/cdq-bench-pull-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
regpid=
cleanup() {
  docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$reg/" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  [ -n "$regpid" ] && kill "$regpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/config.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/data } }
http: { addr: $reg, secret: bench }
YAML
docker-registry serve "$work/config.yml" >/dev/null 2>"$work/registry.log" &
regpid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

services=(mysql redis zookeeper kafka elasticsearch prometheus grafana server ucenter)
refs=""
size=20
for s in "${services[@]}"; do
  ref="$reg/bench/$s:1"
  mkdir -p "$work/img/$s"
  head -c "${size}M" /dev/urandom >"$work/img/$s/blob"
  tar -C "$work/img/$s" -c blob | docker import - "$ref" >/dev/null
  docker push -q "$ref" >/dev/null
  refs+="  $s: $ref"$'\n'
  size=$(( size >= 60 ? 20 : size + 5 ))
done
mkdir -p "$work/deploy"
printf 'image_refs:\n%s' "$refs" >"$work/deploy/cdq.yaml"
"$cdq" --dir "$work/deploy" --images official render --ip 127.0.0.1 --arch amd64 >/dev/null 2>&1
compose="$work/deploy/docker-compose.amd64.yaml"
[ -f "$compose" ] || { echo "cdq render wrote no compose file" >&2; exit 1; }

remove() { docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$reg/" | xargs -r docker rmi -f >/dev/null; }
now() { date +%s.%N; }
cdq_t=(); compose_t=()
for r in $(seq "$rounds"); do
  remove; t=$(now)
  "$cdq" --dir "$work/deploy" --images official pull --arch amd64 --progress plain >/dev/null 2>"$work/cdq.err" || { cat "$work/cdq.err" >&2; exit 1; }
  cdq_t+=("$(echo "$(now) - $t" | bc)")
  remove; t=$(now)
  docker compose -p "cdqbenchpull$$" -f "$compose" pull -q >/dev/null 2>&1
  compose_t+=("$(echo "$(now) - $t" | bc)")
done
remove

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mc=$(median "${cdq_t[@]}"); md=$(median "${compose_t[@]}")
total=$(du -sm "$work/data" | cut -f1)
table="| case | cdq pull (s) | docker compose pull (s) | ratio cdq/compose |
|---|---|---|---|
| 9 images, $total MB in the registry, median of $rounds rounds | $(printf %.2f "$mc") | $(printf %.2f "$md") | $(printf %.2f "$(echo "scale=4; $mc / $md" | bc)") |"
echo "$table"
echo "rounds: cdq ${cdq_t[*]}; compose ${compose_t[*]}" >&2
mkdir -p bench
{ echo "# scripts/bench-pull.sh ($(date -u +%F), $(nproc) cores, Docker $(docker version -f '{{.Server.Version}}'))"; echo; echo "$table"; } >bench/pull.md
