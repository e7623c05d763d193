#!/usr/bin/env python3
"""Layer and image assembly for the cdq local image kit (scripts/build-local-images.sh).

Why hand-assembled `docker load` archives rather than `docker build`/`docker import`:
  * no registry is reachable, and the classic builder with `--platform linux/arm64` may try
    to resolve the FROM image remotely when the local one's platform differs from the host's;
  * `docker import` makes one flat layer per image (nine copies of Debian);
  * a load archive lets us write the image config exactly (architecture, User, Entrypoint,
    Cmd, ExposedPorts, Env, WorkingDir, Labels) and share one base layer by content
    (same diff_id -> docker stores it once).

Sub-commands (all paths absolute):
  manifest ROOTFS OUT.json          record every path of a root filesystem (the base)
  layer ROOTFS OUT.tar [--base M]   write a layer tar: the whole tree, or only what differs
                                    from manifest M (new/changed entries + whiteouts)
  load --tag T --spec image.json --arch A [--label k=v ...] --layer L.tar [--layer ...]
                                    stream a docker-load archive to `docker load`
  hash FILE...                      sha256 over the given files (names and contents)
"""
import argparse
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time

# Never part of any image layer: kernel/runtime mounts, apt state, emulator, build debris.
EXCLUDE_PREFIXES = (
    "proc/", "sys/", "dev/", "run/", "tmp/", "var/tmp/",
    "var/lib/apt/lists/", "var/cache/apt/", "var/cache/debconf/templates.dat-old",
    "var/log/", "usr/bin/qemu-aarch64-static", "usr/sbin/policy-rc.d",
    "root/.cache/", "var/cache/ldconfig/aux-cache",
)
KEEP_EMPTY_DIRS = {"proc", "sys", "dev", "run", "tmp", "var/tmp", "var/log", "var/lib/apt/lists", "var/cache/apt"}


def excluded(rel):
    if rel in KEEP_EMPTY_DIRS:
        return False
    r = rel + "/"
    return any(r.startswith(p) or rel == p.rstrip("/") for p in EXCLUDE_PREFIXES)


def walk(root):
    """Yield (relpath, lstat) for every entry under root, parents before children."""
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        with os.scandir(full) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            if excluded(r):
                continue
            st = e.stat(follow_symlinks=False)
            yield r, st
            if stat.S_ISDIR(st.st_mode) and r not in KEEP_EMPTY_DIRS:
                stack.append(r)


def sig(root, rel, st):
    link = os.readlink(os.path.join(root, rel)) if stat.S_ISLNK(st.st_mode) else ""
    size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    mtime = 0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
    return [st.st_mode, st.st_uid, st.st_gid, size, mtime, link]


def cmd_manifest(a):
    m = {rel: sig(a.rootfs, rel, st) for rel, st in walk(a.rootfs)}
    with open(a.out, "w") as f:
        json.dump(m, f)


class HashingWriter(io.RawIOBase):
    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


def tarinfo(root, rel, st):
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(os.path.join(root, rel))
    elif stat.S_ISREG(st.st_mode):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return None  # sockets: never part of an image
    return ti


def cmd_layer(a):
    base = None
    if a.base:
        with open(a.base) as f:
            base = json.load(f)
    seen = set()
    written = set()
    hardlinks = {}
    with open(a.out, "wb") as raw:
        hw = HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            def add(rel, st):
                ti = tarinfo(a.rootfs, rel, st)
                if ti is None:
                    return
                if ti.type == tarfile.REGTYPE and st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in hardlinks:
                        ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, hardlinks[key], 0
                        tar.addfile(ti)
                        written.add(rel)
                        return
                    hardlinks[key] = rel
                if ti.type == tarfile.REGTYPE:
                    with open(os.path.join(a.rootfs, rel), "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
                written.add(rel)

            def add_parents(rel):
                parts = rel.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    p = "/".join(parts[:i])
                    if p not in written:
                        add(p, os.lstat(os.path.join(a.rootfs, p)))

            for rel, st in walk(a.rootfs):
                seen.add(rel)
                if base is not None:
                    old = base.get(rel)
                    if old is not None and old == sig(a.rootfs, rel, st):
                        continue
                    if old is not None and stat.S_ISDIR(st.st_mode) != stat.S_ISDIR(old[0]):
                        # type changed dir<->non-dir: whiteout the old entry first
                        add_parents(rel)
                        wh = tarfile.TarInfo(_wh(rel))
                        tar.addfile(wh)
                    add_parents(rel)
                add(rel, st)
            if base is not None:
                gone = sorted(r for r in base if r not in seen)
                gone_dirs = set()
                for rel in gone:
                    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
                    if any(parent == d or parent.startswith(d + "/") for d in gone_dirs):
                        continue  # covered by the parent's whiteout
                    if stat.S_ISDIR(base[rel][0]):
                        gone_dirs.add(rel)
                    add_parents(rel)
                    tar.addfile(tarfile.TarInfo(_wh(rel)))
    digest = "sha256:" + hw.h.hexdigest()
    with open(a.out + ".diffid", "w") as f:
        f.write(digest)
    print(f"{digest} {hw.n}")


def _wh(rel):
    d, _, name = rel.rpartition("/")
    return f"{d}/.wh.{name}" if d else f".wh.{name}"


def cmd_load(a):
    with open(a.spec) as f:
        spec = json.load(f)
    labels = dict(kv.split("=", 1) for kv in a.label)
    labels["io.cdq.kit.kind"] = spec["kind"]
    labels["org.opencontainers.image.description"] = spec["description"]
    labels["io.cdq.kit.arch"] = a.arch
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
    env += spec.get("env", [])
    config = {
        "User": spec.get("user", ""),
        "Env": env,
        "Entrypoint": spec.get("entrypoint"),
        "Cmd": spec.get("cmd"),
        "WorkingDir": spec.get("workdir", "/"),
        "ExposedPorts": {p: {} for p in spec.get("ports", [])},
        "Labels": labels,
    }
    if spec.get("stopsignal"):
        config["StopSignal"] = spec["stopsignal"]
    diff_ids = []
    for layer in a.layer:
        with open(layer + ".diffid") as f:
            diff_ids.append(f.read().strip())
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cfg = {
        "architecture": a.arch,
        "os": "linux",
        "created": now,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": now, "created_by": f"cdq-kit layer {os.path.basename(l)}"} for l in a.layer],
    }
    if a.arch == "arm64":
        cfg["variant"] = "v8"
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    layer_names = [f"{d.split(':')[1]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [a.tag], "Layers": layer_names}]).encode()

    proc = subprocess.Popen(["docker", "load", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
        def blob(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = int(time.time())
            tar.addfile(ti, io.BytesIO(data))
        for layer, name in zip(a.layer, layer_names):
            d = tarfile.TarInfo(name.split("/")[0])
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(d)
            tar.add(layer, arcname=name)
        blob(cfg_name, cfg_bytes)
        blob("manifest.json", manifest)
    proc.stdin.close()
    out = proc.stdout.read().decode()
    if proc.wait() != 0:
        sys.exit(f"docker load failed for {a.tag}")
    print(out.strip())


def cmd_hash(a):
    h = hashlib.sha256()
    for p in a.files:
        h.update(p.encode() + b"\0")
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    print(h.hexdigest())


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("manifest"); p.add_argument("rootfs"); p.add_argument("out")
    p = sub.add_parser("layer"); p.add_argument("rootfs"); p.add_argument("out"); p.add_argument("--base")
    p = sub.add_parser("load"); p.add_argument("--tag", required=True); p.add_argument("--spec", required=True)
    p.add_argument("--arch", required=True); p.add_argument("--label", action="append", default=[])
    p.add_argument("--layer", action="append", required=True)
    p = sub.add_parser("hash"); p.add_argument("files", nargs="+")
    a = ap.parse_args()
    {"manifest": cmd_manifest, "layer": cmd_layer, "load": cmd_load, "hash": cmd_hash}[a.cmd](a)


if __name__ == "__main__":
    main()
