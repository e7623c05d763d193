# shellcheck shell=bash
set -eu
# Debian's layout includes mariadb.conf.d (bind-address=127.0.0.1 ...) after conf.d; the
# kit's my.cnf (from files/) includes only conf.d, last, like the official image.
rm -rf /etc/mysql/mariadb.conf.d /etc/mysql/debian.cnf /etc/mysql/debian-start
rm -rf /var/lib/mysql
mkdir -p /var/lib/mysql /run/mysqld /docker-entrypoint-initdb.d /etc/mysql/conf.d
chown mysql:mysql /var/lib/mysql /run/mysqld
chmod 1777 /run/mysqld
chmod 0755 /usr/local/bin/docker-entrypoint.sh
chmod 0644 /etc/mysql/my.cnf
