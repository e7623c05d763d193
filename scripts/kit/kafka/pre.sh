# shellcheck shell=bash
# cdq kit kafka: bitnami's image runs as uid 1001, group root
set -eu
useradd -u 1001 -g 0 -d /bitnami/kafka -s /bin/bash kafka
