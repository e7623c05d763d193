#!/bin/bash
# cdq kit redis entrypoint: same contract as the official image's (redis:7.2).
# `redis-server /path/redis.conf` or `-flags` run the server; as root it chowns /data and
# drops to uid 999 (redis) with gosu.
set -euo pipefail
if [[ "${1:-}" == -* || "${1:-}" == *.conf ]]; then
    set -- redis-server "$@"
fi
if [[ "${1:-}" == redis-server && "$(id -u)" == 0 ]]; then
    find /data \! -user redis -exec chown redis:redis '{}' + 2>/dev/null || true
    exec gosu redis "$0" "$@"
fi
if [[ "${1:-}" == redis-server ]]; then
    # Debian's build defaults to protected-mode/bind 127.0.0.1 only when a config says so;
    # the official image runs with no config bound to all interfaces: match it when no
    # config file is given.
    if [[ $# -eq 1 ]]; then
        set -- redis-server --bind '* -::*' --protected-mode no
    fi
fi
exec "$@"
