#!/usr/bin/python3
"""cdq kit grafana -- a STAND-IN, not Grafana (Grafana is not packaged anywhere reachable).

What it does, so the compose file and healthcheck cdq renders work unchanged:
  * at start, parses every *.yaml/*.yml under $GF_PATHS_PROVISIONING (/etc/grafana/provisioning)
    and every *.json under /etc/grafana/dashboards; one that does not parse (or cannot be read)
    stops it with exit status 1 and a log line naming the file, as Grafana refuses to start on
    broken provisioning;
  * then serves GET /api/health ({"database":"ok",...}) and / on $GF_SERVER_HTTP_PORT (3000).
It does not render dashboards or query datasources.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

PROVISIONING = os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
DASHBOARDS = os.environ.get("CDQ_KIT_GRAFANA_DASHBOARDS", "/etc/grafana/dashboards")
PORT = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))


def log(level, msg):
    print(f'logger=cdq-kit-grafana-standin level={level} msg="{msg}"', flush=True)


def files(root, exts):
    for d, _, names in sorted(os.walk(root)):
        for n in sorted(names):
            if n.lower().endswith(exts):
                yield os.path.join(d, n)


def validate():
    count = 0
    for path in files(PROVISIONING, (".yaml", ".yml")):
        try:
            with open(path) as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            return f"failed to read provisioning file {path}: {e}"
        if doc is not None and not isinstance(doc, dict):
            return f"provisioning file {path}: expected a mapping, found {type(doc).__name__}"
        count += 1
    for path in files(DASHBOARDS, (".json",)):
        try:
            with open(path) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            return f"failed to load dashboard {path}: {e}"
        count += 1
    log("info", f"validated {count} provisioning/dashboard files")
    return None


class Handler(BaseHTTPRequestHandler):
    server_version = "cdq-kit-grafana-standin"

    def do_GET(self):
        if self.path.split("?")[0] in ("/api/health", "/healthz"):
            body = json.dumps({"commit": "cdq-kit-standin", "database": "ok", "version": "12.4.5-standin"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        elif self.path.split("?")[0] == "/":
            body = "cdq kit grafana stand-in: not Grafana\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        else:
            body = json.dumps({"message": "Not found"})
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        data = body.encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


def main():
    log("info", "STAND-IN for Grafana 12.4.5 (cdq local kit): validates provisioning, serves /api/health")
    err = validate()
    if err:
        log("eror", err)
        print(f"Error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    if os.environ.get("GF_SECURITY_ADMIN_PASSWORD"):
        log("info", "admin password set from GF_SECURITY_ADMIN_PASSWORD")
    srv = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    log("info", f"HTTP Server Listen address=[::]:{PORT} protocol=http")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
