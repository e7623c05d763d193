# shellcheck shell=bash
# cdq kit grafana stand-in: the official image runs as uid 472, group root
set -eu
useradd -u 472 -g 0 -d /usr/share/grafana -s /bin/bash grafana
