#!/bin/bash
# cdq kit zookeeper entrypoint, following the official zookeeper image: writes a default
# /conf/zoo.cfg only when none is mounted, writes /data/myid from ZOO_MY_ID, and drops from
# root to uid 1000 (zookeeper) with gosu.
set -euo pipefail
ZOO_CONF_DIR=${ZOO_CONF_DIR:-/conf}
ZOO_DATA_DIR=${ZOO_DATA_DIR:-/data}
ZOO_DATA_LOG_DIR=${ZOO_DATA_LOG_DIR:-/datalog}

if [[ "${1:-}" == zkServer.sh && "$(id -u)" == 0 ]]; then
    for d in "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "${ZOO_LOG_DIR:-/logs}"; do
        mkdir -p "$d"
        find "$d" \! -user zookeeper -exec chown zookeeper '{}' + 2>/dev/null || true
    done
    [[ -w "$ZOO_CONF_DIR" ]] && { find "$ZOO_CONF_DIR" -maxdepth 0 \! -user zookeeper -exec chown zookeeper '{}' + 2>/dev/null || true; }
    exec gosu zookeeper "$0" "$@"
fi

CONFIG="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f "$CONFIG" ]]; then
    {
        echo "dataDir=$ZOO_DATA_DIR"
        echo "dataLogDir=$ZOO_DATA_LOG_DIR"
        echo "tickTime=${ZOO_TICK_TIME:-2000}"
        echo "initLimit=${ZOO_INIT_LIMIT:-5}"
        echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
        echo "autopurge.snapRetainCount=${ZOO_AUTOPURGE_SNAPRETAINCOUNT:-3}"
        echo "autopurge.purgeInterval=${ZOO_AUTOPURGE_PURGEINTERVAL:-0}"
        echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-60}"
        echo "standaloneEnabled=${ZOO_STANDALONE_ENABLED:-true}"
        echo "admin.enableServer=${ZOO_ADMINSERVER_ENABLED:-true}"
        echo "4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr}"
        echo "clientPort=2181"
    } >"$CONFIG"
fi
if [[ ! -f "$ZOO_DATA_DIR/myid" ]]; then
    echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi
exec "$@"
