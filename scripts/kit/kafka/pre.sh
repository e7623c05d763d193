# shellcheck shell=bash
# cdq kit kafka: apache/kafka runs as `appuser`, uid 1000 (docker/jvm/Dockerfile:
# `adduser -h /home/appuser -D --shell /bin/bash appuser`, the first user of its Alpine base)
set -eu
useradd -u 1000 -U -m -d /home/appuser -s /bin/bash appuser
