# shellcheck shell=bash
set -eu
mkdir -p /data /usr/local/etc/redis
chown redis:redis /data
chmod 0755 /usr/local/bin/docker-entrypoint.sh
