# shellcheck shell=bash
set -eu
mkdir -p /usr/share/elasticsearch/config/jvm.options.d /usr/share/elasticsearch/data /usr/share/elasticsearch/logs
chown -R 1000:0 /usr/share/elasticsearch
chmod -R g+rwX /usr/share/elasticsearch
chmod 0755 /usr/local/bin/docker-entrypoint.py
/opt/osmem/bin/osmem-server -version
