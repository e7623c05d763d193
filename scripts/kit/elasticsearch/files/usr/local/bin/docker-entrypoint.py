#!/usr/bin/python3
"""cdq kit elasticsearch entrypoint -- a STAND-IN, not Elasticsearch.

Serves the Elasticsearch/OpenSearch REST API subset that osmem-server implements (cluster
health, index/get/search documents) from memory on http.port (default 9200). It reads the
mounted /usr/share/elasticsearch/config/elasticsearch.yml the way Elasticsearch would refuse
a broken one: an unreadable or unparsable file, or one that is not a mapping, stops the
container with a non-zero exit and a message naming the file. Keys other than http.port and
cluster.name are accepted and ignored. Data is not persisted.
"""
import os
import sys

import yaml

CONF = os.environ.get("ES_PATH_CONF", "/usr/share/elasticsearch/config") + "/elasticsearch.yml"


def log(msg):
    print(f"elasticsearch (cdq kit stand-in, osmem-server): {msg}", flush=True)


def fail(msg):
    print(f"elasticsearch (cdq kit stand-in): fatal: {msg}", file=sys.stderr, flush=True)
    sys.exit(78)  # the exit code Elasticsearch uses for configuration errors


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def main():
    args = sys.argv[1:]
    if args and args[0] not in ("eswrapper", "elasticsearch"):
        os.execvp(args[0], args)
    settings = {}
    if os.path.exists(CONF):
        try:
            with open(CONF) as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            fail(f"cannot read {CONF}: {e}")
        except yaml.YAMLError as e:
            fail(f"{CONF} is not valid YAML: {e}")
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            fail(f"{CONF} must be a YAML mapping of settings, found {type(doc).__name__}")
        settings = flatten(doc)
        log(f"read {CONF} ({len(settings)} settings)")
    else:
        log(f"no {CONF}: using defaults")
    port = str(settings.get("http.port", 9200))
    if not port.isdigit():
        fail(f"{CONF}: http.port must be a number, got {port!r}")
    log("STAND-IN: in-memory OpenSearch-compatible server, not Elasticsearch; data is not persisted")
    log(f"cluster.name={settings.get('cluster.name', 'docker-cluster')} listening on 0.0.0.0:{port}")
    os.execv("/opt/osmem/bin/osmem-server", ["osmem-server", "-addr", f"0.0.0.0:{port}", "-no-stdin-watch"])


if __name__ == "__main__":
    main()
