#!/bin/bash
# cdq kit: `zkServer.sh start-foreground [cfg]` as in the official image, running Debian's
# ZooKeeper jars (QuorumPeerMain) in the foreground.
set -euo pipefail
case "${1:-start-foreground}" in
    start-foreground) ;;
    *) echo "cdq kit zkServer.sh: only start-foreground is supported" >&2; exit 2 ;;
esac
cfg=${2:-${ZOOCFGDIR:-/conf}/zoo.cfg}
# shellcheck disable=SC2086
exec java -Dzookeeper.log.dir="${ZOO_LOG_DIR:-/logs}" -Dzookeeper.root.logger=INFO,CONSOLE \
    -Dlog4j.configuration=file:/usr/share/cdq-kit-zookeeper/log4j.properties \
    ${SERVER_JVMFLAGS:-} ${JVMFLAGS:--Xmx256m} \
    -cp "/usr/share/cdq-kit-zookeeper:/usr/share/java/zookeeper.jar" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
