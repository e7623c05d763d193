# shellcheck shell=bash
# cdq kit zookeeper: the official image's zookeeper user is uid/gid 1000
set -eu
groupadd -g 1000 zookeeper
useradd -u 1000 -g 1000 -d /data -s /bin/bash zookeeper
mkdir -p /usr/share/man/man1  # openjdk postinst needs it (the base image strips man pages)
