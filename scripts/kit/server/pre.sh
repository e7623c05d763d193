# shellcheck shell=bash
# cdq kit server/ucenter stand-in: the real images run as uid 1000
set -eu
groupadd -g 1000 app
useradd -u 1000 -g 1000 -d /app -s /bin/bash app
