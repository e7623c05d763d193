#!/usr/bin/env bash
# Benchmark (not a test): `cdq bundle save` + `cdq bundle load` against
# `docker save | gzip` + `gunzip | docker load`, on the local kit image set, in the same run.
# Prints a markdown table and writes it, with the machine it ran on, to bench/bundle.md.
#
#   scripts/bench-bundle.sh [--arch amd64|arm64]      (CDQ_BIN=path: skip the release build)
#
# The kit tags (`cdq-local/*`) are used by other tests at the same time and are never
# removed: each kit image is tagged under a throwaway prefix (`cdqbench<pid>/<name>:<tag>`,
# the references `--images <prefix>` renders) and only those tags are removed before a load.
# The kit tags keep the layers in Docker's store, so both loads find them present (Docker
# still reads the whole tar); the comparison is like for like.
# The machine is shared, so wall times move with what else runs; CPU seconds are recorded
# too (the client side — cdq, or the docker CLI with gzip/gunzip — from bash's `times`, plus
# the daemon's from /proc/<pid of /var/run/docker.pid>/stat, which also counts any other
# client's requests meanwhile).
# Also measured: `docker save` alone into /dev/null (the export both saves start from: the
# floor of any save), and cdq's own account of where its time went (`cdq -v`: the stages
# overlap, so their times add up to more than the whole).
set -euo pipefail

arch=amd64
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    *) echo "usage: $0 [--arch amd64|arm64]" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# CDQ_BIN: a release binary already built (the release profile is LTO: minutes to build).
cdq="${CDQ_BIN:-}"
if [ -z "$cdq" ]; then
  cargo build --release --quiet
  cdq="$root/target/release/cdq"
fi

work="$(mktemp -d)"
prefix="cdqbench$$"
refs=()
cleanup() {
  if [ ${#refs[@]} -gt 0 ]; then
    docker rmi "${refs[@]}" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Every service of the kit, tagged as the prefix set names it (same order: the settings').
mapfile -t kit < <(cd "$work" && "$cdq" --images local images --arch "$arch")
mapfile -t refs < <(cd "$work" && "$cdq" --images "$prefix" images --arch "$arch")
for i in "${!kit[@]}"; do
  docker image inspect "${kit[$i]}" >/dev/null 2>&1 || {
    echo "missing ${kit[$i]}: run scripts/build-local-images.sh --arch $arch" >&2
    exit 1
  }
  docker tag "${kit[$i]}" "${refs[$i]}"
done

untag() { docker rmi "${refs[@]}" >/dev/null; }
ids() { docker image inspect --format '{{.Id}}' "${refs[@]}"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.0f MiB", n / 1048576 }'; }
dockerd_pid=$(cat /var/run/docker.pid 2>/dev/null || true)
# mark NAME: records the CPU seconds so far of this shell's finished children (`times`, which
# must run in this shell, not in a $(...) subshell) and of the daemon.
mark() {
    times >"$work/times-$1"
    if [ -n "$dockerd_pid" ] && [ -r "/proc/$dockerd_pid/stat" ]; then
        awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$dockerd_pid/stat" >"$work/dockerd-$1"
    else
        echo 0 >"$work/dockerd-$1"
    fi
}
children_cpu() {
    awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/times-$1"
}
# CPU seconds between marks "$1" and "$2": "client+daemon".
cpu_between() {
    echo "$(secs "$(children_cpu "$1")" "$(children_cpu "$2")")+$(secs "$(cat "$work/dockerd-$1")" "$(cat "$work/dockerd-$2")")"
}
cpu_sum() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, "+"); split(b, y, "+"); printf "%.1f", x[1] + x[2] + y[1] + y[2] }'; }

before="$(ids)"
load_avg="$(cut -d' ' -f1-3 /proc/loadavg)"

mark a; t0=$(now)
(cd "$work" && "$cdq" -v --images "$prefix" bundle save --arch "$arch" -o "$work/kit.bundle" 2>"$work/save.log")
t1=$(now); mark b
docker save "${refs[@]}" | gzip >"$work/kit.tar.gz"
t2=$(now); mark c
cdq_save_cpu=$(cpu_between a b); gz_save_cpu=$(cpu_between b c)
tx=$(now)
raw_bytes=$(docker save "${refs[@]}" | wc -c)
ty=$(now)

untag
mark d; t3=$(now)
(cd "$work" && "$cdq" -v --images "$prefix" bundle load --arch "$arch" "$work/kit.bundle" 2>"$work/load.log")
t4=$(now); mark e
cdq_load_cpu=$(cpu_between d e)
[ "$(ids)" = "$before" ] || { echo "cdq bundle load restored other ids" >&2; exit 1; }
untag
mark f; t5=$(now)
gunzip -c "$work/kit.tar.gz" | docker load >/dev/null
t6=$(now); mark g
gz_load_cpu=$(cpu_between f g)
[ "$(ids)" = "$before" ] || { echo "docker load restored other ids" >&2; exit 1; }

# All present: cdq verifies the bundle and loads nothing.
t7=$(now)
(cd "$work" && "$cdq" --images "$prefix" bundle load --arch "$arch" "$work/kit.bundle" 2>"$work/noop.log")
t8=$(now)
grep -q "nothing loaded" "$work/noop.log"

cdq_save=$(secs "$t0" "$t1"); gz_save=$(secs "$t1" "$t2")
cdq_load=$(secs "$t3" "$t4"); gz_load=$(secs "$t5" "$t6")
cdq_total=$(awk -v a="$cdq_save" -v b="$cdq_load" 'BEGIN { printf "%.1f", a + b }')
gz_total=$(awk -v a="$gz_save" -v b="$gz_load" 'BEGIN { printf "%.1f", a + b }')
ratio() { awk -v c="$1" -v g="$2" 'BEGIN { printf "%.2f×", g / c }'; }
bundle_size=$(stat -c %s "$work/kit.bundle")
gz_size=$(stat -c %s "$work/kit.tar.gz")
cores=$(nproc)

table="| ${#refs[@]} kit images ($arch) | \`cdq bundle\` (zstd, $cores cores) | \`docker save \\| gzip\` | gzip time ÷ cdq time |
|---|---|---|---|
| save | ${cdq_save} s | ${gz_save} s | $(ratio "$cdq_save" "$gz_save") |
| load (tags removed) | ${cdq_load} s | ${gz_load} s | $(ratio "$cdq_load" "$gz_load") |
| save + load | ${cdq_total} s | ${gz_total} s | $(ratio "$cdq_total" "$gz_total") |
| file size | $(mib "$bundle_size") | $(mib "$gz_size") | size ÷ \`docker save\` tar ($(mib "$raw_bytes")): $(awk -v a="$bundle_size" -v r="$raw_bytes" 'BEGIN { printf "%.2f", a / r }') vs $(awk -v a="$gz_size" -v r="$raw_bytes" 'BEGIN { printf "%.2f", a / r }') |
| CPU seconds, save + load (client + daemon) | $(cpu_sum "$cdq_save_cpu" "$cdq_load_cpu") s ($cdq_save_cpu, $cdq_load_cpu) | $(cpu_sum "$gz_save_cpu" "$gz_load_cpu") s ($gz_save_cpu, $gz_load_cpu) | $(ratio "$(cpu_sum "$cdq_save_cpu" "$cdq_load_cpu")" "$(cpu_sum "$gz_save_cpu" "$gz_load_cpu")") |
| load, every image present | $(secs "$t7" "$t8") s (verified, nothing loaded) | — | |
| \`docker save\` alone, into \`wc -c\` | $(secs "$tx" "$ty") s (the export every save starts from) | | |"
profile="- save: $(grep -m1 '^time:' "$work/save.log" | sed 's/^time: //')
- load: $(grep -m1 '^time:' "$work/load.log" | sed 's/^time: //')"

machine="$(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $cores cores; $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; Docker $(docker version --format '{{.Server.Version}}'); load average at start $load_avg (a shared machine); $(date -u +%Y-%m-%dT%H:%MZ)"

echo "$table"
echo
echo "cdq -v, where the time went:"
echo "$profile"
echo
echo "machine: $machine"

mkdir -p bench
cat >bench/bundle.md <<EOF
# Offline bundle benchmark

Written by \`scripts/bench-bundle.sh\` (latest run). \`cdq bundle save\` + \`cdq bundle load\`
against \`docker save | gzip\` + \`gunzip | docker load\` on the same images, in the same run.
The release build of cdq; the kit tags keep every layer in Docker's store, so both loads find
the layers present (each still reads its whole tar).

$table

Where cdq's time went (\`cdq -v\`; the stages overlap, so the parts add up to more than the
whole):

$profile

Machine: $machine
EOF
echo "wrote bench/bundle.md"
