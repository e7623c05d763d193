# shellcheck shell=bash
set -eu
mkdir -p /bitnami/kafka/config /bitnami/kafka/data /opt/bitnami/kafka/config
chown -R 1001:0 /bitnami/kafka
chmod -R g+rwX /bitnami/kafka
chmod 0755 /opt/bitnami/scripts/kafka-entrypoint.sh
/opt/tansu/bin/tansu --help >/dev/null
