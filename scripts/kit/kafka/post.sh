# shellcheck shell=bash
# The apache/kafka layout (docker/jvm/Dockerfile): data /var/lib/kafka/data, mounted config
# /mnt/shared/config, final config /opt/kafka/config, scripts in /etc/kafka/docker.
set -eu
mkdir -p /var/lib/kafka/data /etc/kafka/secrets /etc/kafka/docker /usr/logs /mnt/shared/config /opt/kafka/config
chown -R appuser:appuser /usr/logs /opt/kafka /mnt/shared/config
chown -R appuser:root /var/lib/kafka /etc/kafka/secrets /etc/kafka
chmod -R ug+w /etc/kafka /var/lib/kafka /etc/kafka/secrets
chmod 0755 /etc/kafka/docker/run
/opt/tansu/bin/tansu --help >/dev/null
