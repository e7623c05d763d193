# shellcheck shell=bash
# cdq kit redis: the official image's redis user is uid/gid 999; create it before the package does
set -eu
groupadd -r -g 999 redis
useradd -r -u 999 -g 999 -d /var/lib/redis -s /usr/sbin/nologin redis
