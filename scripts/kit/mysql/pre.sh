# shellcheck shell=bash
# cdq kit mysql: the official image's mysql user is uid/gid 999; create it before the package does
set -eu
groupadd -r -g 999 mysql
useradd -r -u 999 -g 999 -d /var/lib/mysql -s /bin/false mysql
