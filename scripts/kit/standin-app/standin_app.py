#!/usr/bin/python3
"""cdq kit server/ucenter -- a STAND-IN for the CD server and ucenter (not the real Java apps).

It reads the application config cdq renders for the real service (/app/config/application.yml,
see compose/CONTRACT.md) and is healthy only when every dependency configured there works:

  mysql          spring.datasource.url/username/password: log in to the database named in the
                 JDBC URL, create table cdq_standin_probe if missing, write a row, read it back
  redis          spring.redis (or spring.data.redis) host/port/password: AUTH + PING; when
                 `sentinel.master` and `sentinel.nodes` are set (as Spring Boot reads them), the
                 master is the address a sentinel answers to SENTINEL get-master-addr-by-name
                 (the first that answers), and it must say ROLE master: the stand-in follows a
                 failover as the real client does
  kafka          spring.kafka.bootstrap-servers: a Kafka Metadata request (v1) to a bootstrap
                 server, answered with at least one broker
  zookeeper      zookeeper.connect-string: the four-letter word `ruok`, answered `imok`
  elasticsearch  spring.elasticsearch.uris: GET /_cluster/health, status green or yellow

A dependency whose section is absent is not required. Checks run at start and every
CDQ_STANDIN_CHECK_INTERVAL seconds (default 5). A failing dependency is logged with its name
and the error (on every change, and again every 30 s while it stays down).

HTTP on server.port (8080):
  /actuator/health, /health          JSON (Spring Boot actuator shape) naming each dependency
                                     and its state; 200 when all are UP, else 503
  /actuator/prometheus, /metrics     Prometheus text format
"""
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

CONFIG = os.environ.get("CDQ_STANDIN_CONFIG", "/app/config/application.yml")
LOG_DIR = os.environ.get("CDQ_STANDIN_LOG_DIR", "/app/logs")
INTERVAL = float(os.environ.get("CDQ_STANDIN_CHECK_INTERVAL", "5"))
TIMEOUT = float(os.environ.get("CDQ_STANDIN_CHECK_TIMEOUT", "3"))
START = time.time()
APP = "cd-server"
_log_lock = threading.Lock()
_log_file = None


def log(level, msg):
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {level:5} [{APP}] cdq-standin: {msg}"
    with _log_lock:
        print(line, flush=True)
        if _log_file:
            try:
                _log_file.write(line + "\n")
                _log_file.flush()
            except OSError:
                pass


def get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def hostport(s, default_port):
    s = s.strip()
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if s.count(":") == 1:
        host, port = s.split(":")
        return host, int(port)
    return s, default_port


def as_list(v):
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [x.strip() for x in str(v).split(",") if x.strip()]


# --- dependency checks: each returns a details dict or raises ------------------------------

def check_mysql(cfg):
    import pymysql

    url = cfg["url"]
    if not url.startswith("jdbc:mysql://") and not url.startswith("jdbc:mariadb://"):
        raise ValueError(f"unsupported datasource url {url!r}")
    rest = url.split("://", 1)[1]
    hp, _, dbq = rest.partition("/")
    db = dbq.split("?", 1)[0]
    host, port = hostport(hp.split(",")[0], 3306)
    conn = pymysql.connect(host=host, port=port, user=cfg.get("username") or "", password=cfg.get("password") or "",
                           database=db or None, connect_timeout=TIMEOUT, read_timeout=TIMEOUT,
                           write_timeout=TIMEOUT, autocommit=True)
    try:
        token = uuid.uuid4().hex
        with conn.cursor() as c:
            c.execute("CREATE TABLE IF NOT EXISTS cdq_standin_probe ("
                      "id BIGINT AUTO_INCREMENT PRIMARY KEY, app VARCHAR(64) NOT NULL, "
                      "token CHAR(32) NOT NULL, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")
            c.execute("INSERT INTO cdq_standin_probe (app, token) VALUES (%s, %s)", (APP, token))
            rid = c.lastrowid
            c.execute("SELECT token FROM cdq_standin_probe WHERE id = %s", (rid,))
            row = c.fetchone()
            if not row or row[0] != token:
                raise RuntimeError(f"wrote row {rid} but read back {row!r}")
            c.execute("DELETE FROM cdq_standin_probe WHERE app = %s AND id < %s", (APP, rid))
            c.execute("SELECT VERSION()")
            version = c.fetchone()[0]
    finally:
        conn.close()
    return {"database": db, "host": f"{host}:{port}", "version": version, "probe": "write+read ok"}


def resp_read(f):
    """One RESP reply from a file-like socket reader: str, int, None, or a list of them."""
    line = f.readline().rstrip(b"\r\n").decode(errors="replace")
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[0], line[1:]
    if kind == "-":
        raise RuntimeError(f"redis said: {rest}")
    if kind in "+":
        return rest
    if kind == ":":
        return int(rest)
    if kind == "$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:n].decode(errors="replace")
    if kind == "*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


def resp_call(sock, f, *args):
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    sock.sendall(out)
    return resp_read(f)


def sentinel_master(sentinel):
    """(host, port, sentinel) of the master the first answering sentinel names."""
    nodes = as_list(sentinel.get("nodes"))
    name = str(sentinel.get("master"))
    errors = []
    for node in nodes:
        host, port = hostport(node, 26379)
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT) as s:
                s.settimeout(TIMEOUT)
                f = s.makefile("rb")
                pw = sentinel.get("password")
                if pw not in (None, ""):
                    resp_call(s, f, "AUTH", pw)
                addr = resp_call(s, f, "SENTINEL", "get-master-addr-by-name", name)
            if not addr or len(addr) != 2:
                raise RuntimeError(f"knows no master named {name!r}")
            return addr[0], int(addr[1]), f"{host}:{port}"
        except Exception as e:  # ask the next sentinel
            errors.append(f"{host}:{port}: {e}")
    raise RuntimeError("no sentinel answered: " + ("; ".join(errors) or "no sentinel nodes configured"))


def check_redis(cfg):
    sentinel = cfg.get("sentinel")
    via = None
    if isinstance(sentinel, dict) and sentinel.get("master") and sentinel.get("nodes"):
        host, port, via = sentinel_master(sentinel)
    else:
        host = cfg.get("host") or "localhost"
        port = int(cfg.get("port") or 6379)
    pw = cfg.get("password")
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        f = s.makefile("rb")
        if pw not in (None, ""):
            user = cfg.get("username")
            resp_call(s, f, *(["AUTH", user, pw] if user else ["AUTH", pw]))
        reply = resp_call(s, f, "PING")
        if reply != "PONG":
            raise RuntimeError(f"PING answered {reply!r}")
        details = {"host": f"{host}:{port}", "auth": pw not in (None, ""), "ping": "PONG"}
        if via:
            role = resp_call(s, f, "ROLE")
            if not role or role[0] != "master":
                raise RuntimeError(f"sentinel {via} names {host}:{port}, which is a {role and role[0]}, not the master")
            details.update({"sentinel": via, "master": sentinel.get("master"), "role": "master"})
    return details


def _kstr(b, o):
    (n,) = struct.unpack_from(">h", b, o)
    o += 2
    if n < 0:
        return None, o
    return b[o:o + n].decode(), o + n


def kafka_metadata(host, port):
    client = b"cdq-standin"
    body = struct.pack(">i", 0)  # topics: empty array -> brokers only
    header = struct.pack(">hhih", 3, 1, 42, len(client)) + client
    msg = header + body
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed before a Metadata response")
            buf += chunk
        (size,) = struct.unpack(">i", buf[:4])
        while len(buf) < 4 + size:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed mid-response")
            buf += chunk
    b = buf[4:4 + size]
    (corr,) = struct.unpack_from(">i", b, 0)
    if corr != 42:
        raise RuntimeError(f"correlation id {corr} != 42")
    (n,) = struct.unpack_from(">i", b, 4)
    o, brokers = 8, []
    for _ in range(n):
        (node,) = struct.unpack_from(">i", b, o)
        h, o = _kstr(b, o + 4)
        (p,) = struct.unpack_from(">i", b, o)
        _rack, o = _kstr(b, o + 4)
        brokers.append(f"{node}@{h}:{p}")
    if not brokers:
        raise RuntimeError("Metadata response lists no brokers")
    return brokers


def check_kafka(servers):
    errors = []
    for srv in servers:
        host, port = hostport(srv, 9092)
        try:
            return {"bootstrap": srv, "brokers": kafka_metadata(host, port)}
        except Exception as e:  # try the next bootstrap server
            errors.append(f"{srv}: {e}")
    raise RuntimeError("; ".join(errors) or "no bootstrap-servers configured")


def check_zookeeper(connect):
    errors = []
    for srv in connect.split("/", 1)[0].split(","):
        host, port = hostport(srv, 2181)
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT) as s:
                s.settimeout(TIMEOUT)
                s.sendall(b"ruok")
                data = b""
                while True:
                    chunk = s.recv(1024)
                    if not chunk:
                        break
                    data += chunk
            answer = data.decode(errors="replace").strip()
            if answer != "imok":
                raise RuntimeError(f"ruok answered {answer!r}")
            return {"server": f"{host}:{port}", "ruok": "imok"}
        except Exception as e:
            errors.append(f"{host}:{port}: {e}")
    raise RuntimeError("; ".join(errors))


def check_elasticsearch(cfg):
    uris = as_list(cfg.get("uris") or "http://localhost:9200")
    errors = []
    for uri in uris:
        url = uri.rstrip("/") + "/_cluster/health"
        req = urllib.request.Request(url)
        user, pw = cfg.get("username"), cfg.get("password")
        if user:
            import base64
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{pw or ''}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                health = json.loads(r.read().decode())
            status = health.get("status")
            if status not in ("green", "yellow"):
                raise RuntimeError(f"cluster status {status!r}")
            return {"uri": uri, "cluster": health.get("cluster_name"), "status": status}
        except Exception as e:
            errors.append(f"{uri}: {e}")
    raise RuntimeError("; ".join(errors))


def dependencies(conf):
    deps = {}
    ds = get(conf, "spring", "datasource")
    if isinstance(ds, dict) and ds.get("url"):
        deps["mysql"] = lambda: check_mysql(ds)
    rd = get(conf, "spring", "redis") or get(conf, "spring", "data", "redis")
    if isinstance(rd, dict) and (rd.get("host") or rd.get("port")):
        deps["redis"] = lambda: check_redis(rd)
    kb = as_list(get(conf, "spring", "kafka", "bootstrap-servers"))
    if kb:
        deps["kafka"] = lambda: check_kafka(kb)
    zk = get(conf, "zookeeper", "connect-string") or get(conf, "zookeeper", "address")
    if zk:
        deps["zookeeper"] = lambda: check_zookeeper(str(zk))
    es = get(conf, "spring", "elasticsearch")
    if isinstance(es, dict) and es.get("uris"):
        deps["elasticsearch"] = lambda: check_elasticsearch(es)
    return deps


# --- state ----------------------------------------------------------------------------------

class State:
    def __init__(self, names):
        self.lock = threading.Lock()
        self.deps = {n: {"status": "UNKNOWN", "details": {"error": "not checked yet"}} for n in names}
        self.counts = {n: [0, 0] for n in names}  # ok, fail
        self.duration = {n: 0.0 for n in names}
        self.last_log = {n: 0.0 for n in names}

    def snapshot(self):
        with self.lock:
            comps = json.loads(json.dumps(self.deps))
        up = all(c["status"] == "UP" for c in comps.values())
        return up, comps


def run_checks(deps, state):
    for name, fn in deps.items():
        t0 = time.monotonic()
        try:
            details = fn()
            status, err = "UP", None
        except Exception as e:
            details, status, err = {"error": f"{type(e).__name__}: {e}"}, "DOWN", f"{type(e).__name__}: {e}"
        dt = time.monotonic() - t0
        with state.lock:
            prev = state.deps[name]
            changed = prev["status"] != status or prev["details"].get("error") != (err and details["error"])
            state.deps[name] = {"status": status, "details": details}
            state.counts[name][0 if status == "UP" else 1] += 1
            state.duration[name] = dt
            now = time.time()
            due = now - state.last_log[name] >= 30
            if changed or (status == "DOWN" and due):
                state.last_log[name] = now
            else:
                continue
        if status == "UP":
            log("INFO", f"dependency {name} is UP ({json.dumps(details, sort_keys=True)})")
        else:
            log("ERROR", f"dependency {name} is DOWN: {err}")


def checker(deps, state):
    while True:
        run_checks(deps, state)
        time.sleep(INTERVAL)


def metrics(state):
    up, comps = state.snapshot()
    lab = f'application="{APP}"'
    out = [
        "# HELP cdq_standin_up 1 when every configured dependency is UP",
        "# TYPE cdq_standin_up gauge",
        f"cdq_standin_up{{{lab}}} {1 if up else 0}",
        "# HELP cdq_standin_dependency_up 1 when the dependency's last check passed",
        "# TYPE cdq_standin_dependency_up gauge",
    ]
    for n, c in sorted(comps.items()):
        out.append(f'cdq_standin_dependency_up{{{lab},dependency="{n}"}} {1 if c["status"] == "UP" else 0}')
    out += ["# HELP cdq_standin_dependency_checks_total dependency checks by result",
            "# TYPE cdq_standin_dependency_checks_total counter"]
    with state.lock:
        counts = {n: list(v) for n, v in state.counts.items()}
        durs = dict(state.duration)
    for n in sorted(counts):
        out.append(f'cdq_standin_dependency_checks_total{{{lab},dependency="{n}",result="ok"}} {counts[n][0]}')
        out.append(f'cdq_standin_dependency_checks_total{{{lab},dependency="{n}",result="fail"}} {counts[n][1]}')
    out += ["# HELP cdq_standin_dependency_check_seconds duration of the last check",
            "# TYPE cdq_standin_dependency_check_seconds gauge"]
    for n in sorted(durs):
        out.append(f'cdq_standin_dependency_check_seconds{{{lab},dependency="{n}"}} {durs[n]:.6f}')
    out += ["# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {START:.3f}",
            "# HELP process_uptime_seconds The uptime of the process",
            "# TYPE process_uptime_seconds gauge", f"process_uptime_seconds{{{lab}}} {time.time() - START:.3f}"]
    return "\n".join(out) + "\n"


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        server_version = "cdq-kit-standin"

        def send(self, code, ctype, body):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path in ("/actuator/health", "/health"):
                up, comps = state.snapshot()
                body = {"status": "UP" if up else "DOWN", "application": APP, "standin": True,
                        "components": comps}
                self.send(200 if up else 503, "application/json", json.dumps(body, sort_keys=True) + "\n")
            elif path in ("/actuator/prometheus", "/metrics"):
                self.send(200, "text/plain; version=0.0.4; charset=utf-8", metrics(state))
            elif path == "/":
                self.send(200, "text/plain", f"cdq kit stand-in for {APP}: not the real application\n")
            else:
                self.send(404, "application/json", json.dumps({"status": 404, "error": "Not Found", "path": path}))

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            pass

    return Handler


def main():
    global APP, _log_file
    try:
        with open(CONFIG) as f:
            conf = yaml.safe_load(f) or {}
    except OSError as e:
        print(f"cdq-standin: fatal: cannot read {CONFIG}: {e}", file=sys.stderr)
        sys.exit(1)
    except yaml.YAMLError as e:
        print(f"cdq-standin: fatal: {CONFIG} is not valid YAML: {e}", file=sys.stderr)
        sys.exit(1)
    if not isinstance(conf, dict):
        print(f"cdq-standin: fatal: {CONFIG} must be a YAML mapping", file=sys.stderr)
        sys.exit(1)
    APP = str(get(conf, "spring", "application", "name") or os.environ.get("CDQ_STANDIN_APP", "cd-server"))
    try:
        os.makedirs(LOG_DIR, exist_ok=True)
        _log_file = open(os.path.join(LOG_DIR, f"{APP}.log"), "a")
    except OSError:
        _log_file = None
    port = int(get(conf, "server", "port", default=8080))
    deps = dependencies(conf)
    log("INFO", f"STAND-IN for {APP} (cdq local kit, not the real application); config {CONFIG}")
    log("INFO", f"required dependencies: {', '.join(deps) or 'none'}; re-checked every {INTERVAL:g}s")
    if os.environ.get("JAVA_OPTS"):
        log("INFO", f"JAVA_OPTS ignored by the stand-in: {os.environ['JAVA_OPTS']}")
    state = State(list(deps))
    threading.Thread(target=checker, args=(deps, state), daemon=True).start()
    srv = ThreadingHTTPServer(("0.0.0.0", port), make_handler(state))
    srv.daemon_threads = True
    log("INFO", f"listening on 0.0.0.0:{port} (/actuator/health, /health, /actuator/prometheus, /metrics)")
    srv.serve_forever()


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
