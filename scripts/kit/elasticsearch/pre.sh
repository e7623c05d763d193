# shellcheck shell=bash
# cdq kit elasticsearch: the official image's elasticsearch user is uid 1000, group root
set -eu
useradd -u 1000 -g 0 -d /usr/share/elasticsearch -s /bin/bash elasticsearch
