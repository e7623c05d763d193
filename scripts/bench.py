#!/usr/bin/env python3
"""cdq against docker compose, measured side by side in one run (issue 7).

Each case runs cdq and compose alternately on the same compose file from the same starting
state, for several rounds, and reports medians and the per-round ratio cdq/compose. Nothing
here asserts: targets are printed next to the numbers, met or not.

Critical path: for case 1 the table also gives cdq's overhead over the critical path, its wall
time minus the sum, along the slowest dependency chain, of each container's own
start-to-healthy time taken from Docker's event timestamps. That is the part of the wait that
is cdq's own (API calls, polling delay, ordering), not the services'.

Run through scripts/bench.sh, which installs what is missing first.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CDQ = REPO / "target" / "release" / "cdq"
ARCH = "amd64" if platform.machine() == "x86_64" else "arm64"
REDIS = f"cdq-local/redis:2-{ARCH}"


def run(cmd, check=True, env=None, cwd=None, quiet=True):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        sys.exit(f"bench: `{' '.join(map(str, cmd))}` failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def timed(cmd, env=None, cwd=None, check=True):
    t0 = time.time()
    p = run(cmd, env=env, cwd=cwd, check=check)
    t1 = time.time()
    return t1 - t0, t0, t1, p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cleanup_project(project):
    ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"]).stdout.split()
    if ids:
        run(["docker", "rm", "-f", *ids], check=False)
    nets = run(["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"]).stdout.split()
    if nets:
        run(["docker", "network", "rm", *nets], check=False)


# ---- compose files -----------------------------------------------------------------------

def redis_service(deps, interval="1s"):
    svc = {
        "image": REDIS,
        "command": ["redis-server", "--save", "", "--appendonly", "no"],
        # A 3 s timeout: fifty probes a second on two cores can take longer than 1 s.
        "healthcheck": {"test": ["CMD", "redis-cli", "ping"], "interval": interval, "timeout": "3s", "retries": 30},
    }
    if deps:
        svc["depends_on"] = {d: {"condition": "service_healthy"} for d in deps}
    return svc


def chain(n):
    return {"services": {f"r{i}": redis_service([f"r{i-1}"] if i else []) for i in range(n)}}


def grid(n, width=10):
    """Wide and deep: rows of `width`, each service waiting on two of the row above."""
    width = min(width, n)
    services = {}
    for i in range(n):
        row, col = divmod(i, width)
        deps = []
        if row:
            deps = sorted({f"s{(row - 1) * width + col}", f"s{(row - 1) * width + (col + 1) % width}"})
        # 5 s probes: at 1 s, a hundred containers are a hundred probe execs a second, more
        # than the daemon on a 2-core host answers within their timeout.
        services[f"s{i}"] = redis_service(deps, interval="5s")
    return {"services": services}


def write_compose(d, doc):
    d.mkdir(parents=True, exist_ok=True)
    f = d / "compose.yaml"
    f.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return f


# ---- critical path from Docker events ------------------------------------------------------

def critical_path(project, t0, t1, deps):
    p = run([
        "docker", "events", "--since", f"{t0:.3f}", "--until", f"{t1 + 0.5:.3f}",
        "--filter", "type=container", "--filter", f"label=com.docker.compose.project={project}",
        "--format", "{{json .}}",
    ])
    start, healthy = {}, {}
    for line in p.stdout.splitlines():
        ev = json.loads(line)
        attrs = ev.get("Actor", {}).get("Attributes", {})
        svc = attrs.get("com.docker.compose.service")
        if attrs.get("com.docker.compose.oneoff") == "True" or not svc:
            continue
        action = ev.get("Action") or ev.get("status", "")
        t = ev["timeNano"] / 1e9
        if action == "start":
            start[svc] = t
        elif action == "health_status: healthy" and svc not in healthy:
            healthy[svc] = t
    own = {s: max(0.0, healthy.get(s, start.get(s, 0)) - start.get(s, 0)) for s in deps}
    memo = {}

    def cp(s):
        if s not in memo:
            memo[s] = own.get(s, 0.0) + max((cp(d) for d in deps[s]), default=0.0)
        return memo[s]

    return max(cp(s) for s in deps)


def deps_of(doc):
    return {s: list((v.get("depends_on") or {}).keys()) for s, v in doc["services"].items()}


# ---- the two contenders --------------------------------------------------------------------

class Stack:
    """One compose file, driven by cdq (project `<name>-cdq`) or compose (`<name>-dc`)."""

    def __init__(self, root, name, doc=None, file=None):
        self.name = name
        self.doc = doc
        self.file = file or write_compose(root / name, doc)

    def project(self, who):
        return f"{self.name}-{who}"

    def up(self, who, memory=False):
        if who == "cdq":
            cmd = [str(CDQ), "-p", self.project(who), "up", "--compose", str(self.file), "--skip-preflight", "--progress", "plain"]
        else:
            cmd = ["docker", "compose", "-p", self.project(who), "-f", str(self.file), "up", "-d", "--wait", "--wait-timeout", "600"]
        if memory:
            cmd = ["/usr/bin/time", "-f", "MAXRSS_KB=%M", *cmd]
        return timed(cmd, cwd=self.file.parent)

    def down(self, who):
        if who == "cdq":
            cmd = [str(CDQ), "-p", self.project(who), "down", "--compose", str(self.file), "--timeout", "10"]
        else:
            cmd = ["docker", "compose", "-p", self.project(who), "-f", str(self.file), "down", "--timeout", "10"]
        res = timed(cmd, cwd=self.file.parent, check=False)
        p = res[3]
        # Docker 20.10 can lose count of a network's endpoints when many containers go at
        # once (moby/moby#42119): compose then fails on the network, cdq warns. The
        # containers are gone either way; the network is reused by the next `up`.
        if p.returncode != 0 and "has active endpoints" not in p.stderr:
            sys.exit(f"bench: `{' '.join(cmd)}` failed ({p.returncode}):\n{p.stderr[-3000:]}")
        if "has active endpoints" in p.stderr or "is left in place" in p.stderr:
            print(f"bench: note: Docker kept network {self.project(who)}_default (moby/moby#42119)", file=sys.stderr)
        return res

    def status(self, who):
        if who == "cdq":
            cmd = [str(CDQ), "-p", self.project(who), "status", "--compose", str(self.file)]
        else:
            cmd = ["docker", "compose", "-p", self.project(who), "-f", str(self.file), "ps"]
        return timed(cmd, cwd=self.file.parent)

    def clean(self):
        for who in ("cdq", "dc"):
            cleanup_project(self.project(who))


def alternate(rounds, fn):
    """fn(who, round) -> seconds; cdq and compose take turns going first."""
    out = {"cdq": [], "dc": []}
    for r in range(rounds):
        order = ("cdq", "dc") if r % 2 == 0 else ("dc", "cdq")
        for who in order:
            out[who].append(fn(who, r))
    return out


def up_rounds(stack, rounds):
    """Timed `up` from nothing, then an untimed `down`, alternating cdq and compose."""

    def one(who, r):
        secs = stack.up(who)[0]
        stack.down(who)
        return secs

    try:
        return alternate(rounds, one)
    finally:
        stack.clean()


def row(case, res, target=None, met=None):
    c, d = res["cdq"], res["dc"]
    ratios = [a / b for a, b in zip(c, d) if b > 0]
    return {
        "case": case,
        "cdq": statistics.median(c),
        "compose": statistics.median(d),
        "ratio": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "target": target or "",
        "met": "" if met is None else ("yes" if met(statistics.median(c), statistics.median(ratios)) else "NO"),
    }


# ---- cases ---------------------------------------------------------------------------------

def case_full_stack(root, rounds, results, extra):
    """The nine services on the kit, from empty data dirs, on the file cdq renders."""
    d = root / "nine"
    d.mkdir(parents=True)
    ports = {k: free_port() for k in ("server", "ucenter", "grafana", "kafka")}
    (d / "cdq.yaml").write_text("images: local\nports:\n" + "".join(f"  {k}: {v}\n" for k, v in ports.items()))
    run([str(CDQ), "--dir", str(d), "render", "--ip", "127.0.0.1"])
    file = d / f"docker-compose.{ARCH}.yaml"
    cfg = json.loads(run(["docker", "compose", "-f", str(file), "config", "--format", "json"], cwd=d).stdout)
    deps = {s: list((v.get("depends_on") or {}).keys()) for s, v in cfg["services"].items()}
    stack = Stack(root, "cdqb-nine", file=file)
    owners = {}
    overheads, rss = [], []

    def fresh_data(who):
        shutil.rmtree(d / "data", ignore_errors=True)
        if who == "dc":
            # Compose does not hand data directories to the image's user: give it the
            # owners cdq chose, so both start from empty, usable data directories.
            for path, (uid, gid) in owners.items():
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, uid, gid)

    def one(who, r):
        if who == "dc" and not owners:
            # cdq has not run yet: one untimed cdq run learns the owners.
            fresh_data("cdq")
            stack.up("cdq")
            learn_owners()
            stack.down("cdq")
        fresh_data(who)
        secs, t0, t1, p = stack.up(who, memory=(who == "cdq"))
        if who == "cdq":
            learn_owners()
            for line in p.stderr.splitlines():
                if line.startswith("MAXRSS_KB="):
                    rss.append(int(line.split("=")[1]))
        overheads.append((who, secs - critical_path(stack.project(who), t0, t1, deps)))
        stack.down(who)
        return secs

    # The data directories are the file's read-write bind sources (not what services create
    # inside them: a pre-made mysql/ subdirectory would skip MySQL's first-start init).
    binds = [
        Path(v["source"])
        for svc in cfg["services"].values()
        for v in svc.get("volumes", [])
        if v.get("type") == "bind" and not v.get("read_only")
    ]

    def learn_owners():
        for p in binds:
            st = p.stat()
            owners[p] = (st.st_uid, st.st_gid)

    try:
        res = alternate(rounds, one)
    finally:
        stack.clean()
        shutil.rmtree(d / "data", ignore_errors=True)
    results.append(row("1. nine services, kit images, empty data dirs (s)", res))
    cdq_over = [o for w, o in overheads if w == "cdq"]
    dc_over = [o for w, o in overheads if w == "dc"]
    extra["overhead_cdq_ms"] = statistics.median(cdq_over) * 1000
    extra["overhead_compose_ms"] = statistics.median(dc_over) * 1000
    extra["peak_rss_mb"] = max(rss) / 1024 if rss else None


def case_chain(root, rounds, results, extra):
    res = up_rounds(Stack(root, "cdqb-chain", chain(8)), rounds)
    results.append(row("2. 8-deep chain of redis, 1 s probes (s)", res, "ratio <= 0.75", lambda m, r: r <= 0.75))


def case_grid(root, rounds, results, extra):
    res = up_rounds(Stack(root, "cdqb-grid50", grid(50)), rounds)
    results.append(row("3. 50 services, wide and deep (s)", res, "ratio <= 0.8", lambda m, r: r <= 0.8))
    growth = {}
    for n in (10, 50, 100):
        s = Stack(root, f"cdqb-n{n}", grid(n))
        runs = []
        try:
            for _ in range(rounds):
                runs.append(s.up("cdq")[0])
                s.down("cdq")
        finally:
            s.clean()
        growth[n] = statistics.median(runs)
    extra["growth"] = growth


def case_running(root, rounds, results, extra):
    """Cases 4-6 on a running 8-deep chain."""
    stack = Stack(root, "cdqb-run", chain(8))
    try:
        for who in ("cdq", "dc"):
            stack.up(who)
        noop = alternate(max(rounds, 5), lambda who, r: stack.up(who)[0])
        results.append(row(
            "4. no-op re-up of a running stack (s)", noop, "<= 0.25 s and <= 0.25x",
            lambda m, r: m <= 0.25 and r <= 0.25))
        # A status read takes tens of milliseconds and the daemon's own probes of the two
        # running stacks jitter it by as much: more rounds for a stable median.
        st = alternate(max(rounds, 15), lambda who, r: stack.status(who)[0])
        results.append(row("5. `cdq status` vs `docker compose ps` (s)", st, "ratio <= 0.5", lambda m, r: r <= 0.5))

        def down_one(who, r):
            secs = stack.down(who)[0]
            stack.up(who)
            return secs

        dn = alternate(rounds, down_one)
        results.append(row("6. `cdq down` vs `docker compose down` (s)", dn))
    finally:
        stack.clean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "3")))
    ap.add_argument("--cases", default="1,2,3,4", help="which of: 1 (nine), 2 (chain), 3 (grid), 4 (no-op/status/down)")
    ap.add_argument("--out", default=str(REPO / "bench" / "compose.md"))
    a = ap.parse_args()
    cases = set(a.cases.split(","))
    results, extra = [], {}
    root = Path(tempfile.mkdtemp(prefix="cdq-bench-"))
    try:
        if "1" in cases:
            case_full_stack(root, a.rounds, results, extra)
        if "2" in cases:
            case_chain(root, a.rounds, results, extra)
        if "3" in cases:
            case_grid(root, a.rounds, results, extra)
        if "4" in cases:
            case_running(root, a.rounds, results, extra)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    size_mb = CDQ.stat().st_size / 1e6
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
        f"Docker {run(['docker', 'version', '-f', '{{.Server.Version}}']).stdout.strip()}, "
        f"{run(['docker', 'compose', 'version', '--short']).stdout.strip()} (Compose v2), "
        f"{a.rounds} rounds, cdq and compose alternating. Command: `scripts/bench.sh --rounds {a.rounds}`.",
        "",
        "| case | cdq (median) | compose (median) | cdq/compose per round: median (min–max) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['cdq']:.3f} | {r['compose']:.3f} | {r['ratio']:.2f} ({r['min']:.2f}–{r['max']:.2f}) | {r['target']} | {r['met']} |"
        )
    if "overhead_cdq_ms" in extra:
        o = extra["overhead_cdq_ms"]
        lines.append(
            f"| 1. overhead over the critical path (ms) | {o:.0f} | {extra['overhead_compose_ms']:.0f} | | <= 150 ms | {'yes' if o <= 150 else 'NO'} |"
        )
    if "growth" in extra:
        g = extra["growth"]
        per = {n: g[n] / n for n in g}
        # Linear (or better): a service costs no more at 100 than at 50. At 10 the fixed
        # cost (the first probe) dominates, so the per-service figure there is higher.
        linear = per[100] <= 1.25 * per[50]
        lines.append(
            "| 3. cdq alone at 10 / 50 / 100 services, median (s) | "
            + " / ".join(f"{g[n]:.1f}" for n in sorted(g))
            + " | | per service: " + " / ".join(f"{per[n]:.2f}" for n in sorted(per))
            + f" | linear growth (per service at 100 <= 1.25x at 50) | {'yes' if linear else 'NO'} |"
        )
    lines.append(f"| 7. release binary size (MB) | {size_mb:.1f} | | | <= 15 MB | {'yes' if size_mb <= 15 else 'NO'} |")
    if extra.get("peak_rss_mb"):
        m = extra["peak_rss_mb"]
        lines.append(f"| 7. cdq peak memory during case 1 (MB) | {m:.1f} | | | <= 40 MB | {'yes' if m <= 40 else 'NO'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)


if __name__ == "__main__":
    main()
