#!/usr/bin/env bash
# Benchmark (not a test): `cdq up` on the three-node swarm lab, to every service healthy,
# against `docker stack deploy` of the stack file cdq renders followed by waiting until every
# task is running (Swarm moves a task with a healthcheck to `running` only once healthy), in
# the same run, alternating, ROUNDS times each. Prints a markdown table with the medians and
# the ratio, and writes it with the machine it ran on to bench/swarm.md.
#
#   scripts/bench-swarm.sh [ROUNDS]        (default 3; CDQ_BIN=path: skip the build)
#
# Uses the lab of scripts/swarm-lab.sh (started when missing) and projects of its own
# (`benchsw<pid>-<n>`), each removed with its volumes on every node after its round.
set -euo pipefail

rounds=${1:-3}
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cdq="${CDQ_BIN:-}"
if [ -z "$cdq" ]; then
  cargo build --quiet
  # The build directory may be shared: run a copy, so another build cannot swap it mid-run.
  cdq="$(mktemp -d)/cdq"
  cp "${CARGO_TARGET_DIR:-$root/target}/debug/cdq" "$cdq"
fi
lab_dir=${CDQ_SWARM_LAB_DIR:-/tmp/cdq-swarm-lab}
manager="unix://$lab_dir/manager/docker.sock"
on() { local n=$1; shift; docker -H "unix://$lab_dir/$n/docker.sock" "$@"; }

if [ "$(on manager node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)" != 3 ]; then
  # Both peers run from images already on the nodes (docker stack deploy cannot load them).
  CDQ_SWARM_LAB_PRELOAD=1 scripts/swarm-lab.sh up >/dev/null
fi
i=1
for n in manager worker1 worker2; do
  on manager node update --label-add "cdq.slot=$i" "$n" >/dev/null
  i=$((i + 1))
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

# Removes a project's stack (cdq's or docker's: the same labels) and its volumes.
clean() {
  local p=$1 dir=$2
  DOCKER_HOST=$manager "$cdq" --dir "$dir" --config "$dir/cdq.yaml" down >/dev/null 2>&1 || true
  for n in manager worker1 worker2; do
    for _ in $(seq 1 60); do
      ids=$(on "$n" volume ls -q --filter "label=io.cdq.project=$p")
      [ -z "$ids" ] && break
      on "$n" volume rm $ids >/dev/null 2>&1 || sleep 1
    done
  done
}

setup() {
  local dir=$1 p=$2
  mkdir -p "$dir"
  printf 'project: %s\nimages: local\ntarget: swarm\ncluster:\n  nodes: [manager, worker1, worker2]\n' "$p" >"$dir/cdq.yaml"
}

cdq_round() {
  local p=$1 dir="$work/$1"
  setup "$dir" "$p"
  local t0 t1
  t0=$(now)
  DOCKER_HOST=$manager "$cdq" --dir "$dir" --config "$dir/cdq.yaml" up --ip 127.0.0.1 >"$dir/up.log" 2>&1 \
    || { cat "$dir/up.log" >&2; exit 1; }
  t1=$(now)
  clean "$p" "$dir"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}

stack_round() {
  local p=$1 dir="$work/$1"
  setup "$dir" "$p"
  # Rendering is not timed: the peer is given the file cdq would render.
  "$cdq" --dir "$dir" --config "$dir/cdq.yaml" render --ip 127.0.0.1 >/dev/null 2>&1
  local t0 t1 want
  t0=$(now)
  (cd "$dir" && set -a && . ./.env && set +a \
    && docker -H "$manager" stack deploy --resolve-image never -c docker-stack.amd64.yaml "$p" >/dev/null)
  want=$(on manager stack services "$p" -q | wc -l)
  for _ in $(seq 1 900); do
    # Every service has its one task desired running and running.
    ok=$(on manager stack ps "$p" --filter desired-state=running --format '{{.CurrentState}}' | grep -c '^Running' || true)
    [ "$ok" -ge "$want" ] && break
    sleep 0.5
  done
  t1=$(now)
  clean "$p" "$dir"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

c=() s=()
for r in $(seq 1 "$rounds"); do
  c+=("$(cdq_round "benchsw$$-c$r")")
  s+=("$(stack_round "benchsw$$-s$r")")
  echo "round $r: cdq up ${c[-1]} s, docker stack deploy + wait ${s[-1]} s" >&2
done
cm=$(printf '%s\n' "${c[@]}" | median)
sm=$(printf '%s\n' "${s[@]}" | median)
ratio=$(awk -v a="$cm" -v b="$sm" 'BEGIN { printf "%.2f", a / b }')

table=$(cat <<EOF
| 17 swarm services (9 + HA members) on 3 lab nodes | median of $rounds | rounds (s) |
|---|---|---|
| \`cdq up\` (health-gated waves) | $cm s | ${c[*]} |
| \`docker stack deploy\` + wait for every task running | $sm s | ${s[*]} |
| ratio cdq / stack deploy | ${ratio}x | |
EOF
)
echo "$table"
mkdir -p bench
{
  echo "# scripts/bench-swarm.sh, $(date -u +%Y-%m-%d)"
  echo
  echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, Docker $(docker version -f '{{.Server.Version}}') on the host, nodes $(on manager version -f '{{.Server.Version}}')"
  echo
  echo "$table"
} >bench/swarm.md
