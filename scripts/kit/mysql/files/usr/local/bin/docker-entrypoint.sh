#!/bin/bash
# cdq kit mysql entrypoint (MariaDB from Debian), following the official mysql:8.4 image
# (docker-library/mysql 8.4/docker-entrypoint.sh):
#  - the config is checked first (`mysqld --verbose --help`): an option MySQL 8.4 refuses
#    stops the container before anything is written, also ones MariaDB still knows
#    (default-authentication-plugin, query_cache_*, innodb_file_format, ...); `loose-` passes;
#  - as root: make /var/lib/mysql and /run/mysqld belong to mysql (uid 999), re-exec via gosu;
#  - on an empty data dir: initialise, start a temporary server with --skip-networking (so a
#    TCP healthcheck cannot pass before the real server is up), set the root password,
#    create MYSQL_DATABASE / MYSQL_USER, run /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh
#    in name order, stop the temporary server;
#  - a data dir that already holds a database is never initialised again.
set -euo pipefail

log() { printf '%s [Entrypoint]: %s\n' "$(date -u +'%Y-%m-%dT%H:%M:%SZ')" "$*"; }
die() { log "error: $*" >&2; exit 1; }

if [[ "${1:-}" == -* ]]; then set -- mysqld "$@"; fi
[[ "${1:-}" == mysqld || "${1:-}" == mariadbd ]] || exec "$@"
shift
set -- mariadbd "$@"

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

# Options MySQL 8.4 no longer has (removed in 8.0 or 8.4): mysqld 8.4 exits with
# "unknown variable" on them; MariaDB would accept some, so the kit refuses them itself.
REMOVED_IN_84="default-authentication-plugin query-cache-size query-cache-type query-cache-limit innodb-file-format innodb-large-prefix"
mysql_check_config() {
    local out opt name
    if command -v my_print_defaults >/dev/null; then
        out=$(my_print_defaults mysqld 2>&1)
    else
        out=$("$1" --print-defaults 2>&1 | tr ' ' '\n' | grep '^--')
    fi || die "mysqld failed while attempting to check config: $out"
    while IFS= read -r opt; do
        name=${opt#--}; name=${name%%=*}; name=${name//_/-}
        for bad in $REMOVED_IN_84; do
            [[ "$name" == "$bad" ]] && die "mysqld failed while attempting to check config
	[ERROR] [MY-000067] [Server] unknown variable '${opt#--}'.
	(cdq kit: MySQL 8.4 removed \`$bad\`; write it as \`loose-$bad\` or drop it)"
        done
    done <<<"$out"
    out=$("$@" --verbose --help 2>&1 >/dev/null) || die "mysqld failed while attempting to check config
	command was: $* --verbose --help
	$out"
}

if [[ "$(id -u)" == 0 ]]; then
    mkdir -p "$DATADIR" /run/mysqld
    find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
    exec gosu mysql "$0" "$@"
fi
mysql_check_config "$@"

file_env() { # VAR [default]: VAR or VAR_FILE, like the official image
    local var=$1 file_var="${1}_FILE" def=${2:-}
    if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then die "both $var and $file_var are set"; fi
    local val=$def
    if [[ -n "${!var:-}" ]]; then val=${!var}; elif [[ -n "${!file_var:-}" ]]; then val=$(<"${!file_var}"); fi
    export "$var"="$val"
    unset "$file_var"
}

sql_escape() { local s=${1//\\/\\\\}; printf '%s' "${s//\'/\\\'}"; }

if [[ ! -d "$DATADIR/mysql" ]]; then
    file_env MYSQL_ROOT_PASSWORD
    file_env MYSQL_DATABASE
    file_env MYSQL_USER
    file_env MYSQL_PASSWORD
    if [[ -z "$MYSQL_ROOT_PASSWORD" && -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" && -z "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]]; then
        die "database is uninitialized and password option is not specified
    You need to specify one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD and MYSQL_RANDOM_ROOT_PASSWORD"
    fi
    if [[ "${MYSQL_USER:-}" == root ]]; then
        die 'MYSQL_USER="root", MYSQL_USER and MYSQL_PASSWORD are for configuring a regular user and cannot be used for the root user
    Remove MYSQL_USER="root" and use one of the following to control the root user password:
    - MYSQL_ROOT_PASSWORD
    - MYSQL_ALLOW_EMPTY_PASSWORD
    - MYSQL_RANDOM_ROOT_PASSWORD'
    fi
    if [[ -n "$MYSQL_USER" && -z "$MYSQL_PASSWORD" ]]; then
        log "[Warn]: MYSQL_USER specified, but missing MYSQL_PASSWORD; MYSQL_USER will not be created"
    elif [[ -z "$MYSQL_USER" && -n "$MYSQL_PASSWORD" ]]; then
        log "[Warn]: MYSQL_PASSWORD specified, but missing MYSQL_USER; MYSQL_PASSWORD will be ignored"
    fi
    if [[ -n "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]]; then
        MYSQL_ROOT_PASSWORD=$(head -c 18 /dev/urandom | base64)
        log "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
    fi
    log "Initializing database files (cdq kit, MariaDB)"
    mariadb-install-db --user=mysql --datadir="$DATADIR" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve --rpm "${@:2}" >/tmp/install-db.log 2>&1 \
        || { cat /tmp/install-db.log >&2; die "mariadb-install-db failed"; }
    log "Database files initialized"

    log "Starting temporary server"
    "$@" --skip-networking --socket="$SOCKET" --wsrep_on=OFF >/tmp/temp-server.log 2>&1 &
    tmp_pid=$!
    for _ in $(seq 60); do
        if mariadb --protocol=socket -uroot --socket="$SOCKET" -e 'SELECT 1' >/dev/null 2>&1; then break; fi
        kill -0 "$tmp_pid" 2>/dev/null || { cat /tmp/temp-server.log >&2; die "temporary server exited"; }
        sleep 0.5
    done
    mariadb --protocol=socket -uroot --socket="$SOCKET" -e 'SELECT 1' >/dev/null 2>&1 \
        || { cat /tmp/temp-server.log >&2; die "temporary server did not start"; }
    log "Temporary server started"

    rootpw=$(sql_escape "$MYSQL_ROOT_PASSWORD")
    root_host=${MYSQL_ROOT_HOST:-%}
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DELETE FROM mysql.user WHERE user='' OR (user='root' AND host NOT IN ('localhost'));"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$rootpw';"
        if [[ "$root_host" != localhost ]]; then
            echo "CREATE USER 'root'@'$root_host' IDENTIFIED BY '$rootpw';"
            echo "GRANT ALL ON *.* TO 'root'@'$root_host' WITH GRANT OPTION;"
        fi
        if [[ -n "$MYSQL_DATABASE" ]]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [[ -n "$MYSQL_USER" && -n "$MYSQL_PASSWORD" ]]; then
            echo "CREATE USER '$(sql_escape "$MYSQL_USER")'@'%' IDENTIFIED BY '$(sql_escape "$MYSQL_PASSWORD")';"
            if [[ -n "$MYSQL_DATABASE" ]]; then
                echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$(sql_escape "$MYSQL_USER")'@'%';"
            fi
        fi
        if [[ -n "${MYSQL_ONETIME_PASSWORD:-}" ]]; then
            echo "ALTER USER 'root'@'%' PASSWORD EXPIRE;"
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --protocol=socket -uroot --socket="$SOCKET" || die "setting up root user and database failed"

    # the root password goes in a 0600 option file, not on a command line (visible in ps)
    rootcnf=$(mktemp /tmp/.cdq-kit-root.XXXXXX)
    pw_opt=${MYSQL_ROOT_PASSWORD//\\/\\\\}
    printf '[client]\npassword="%s"\n' "${pw_opt//\"/\\\"}" >"$rootcnf"
    client=(mariadb --defaults-extra-file="$rootcnf" --protocol=socket -uroot --socket="$SOCKET")
    [[ -n "$MYSQL_DATABASE" ]] && client+=("$MYSQL_DATABASE")
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                if [[ -x "$f" ]]; then log "running $f"; "$f" || die "$f failed"
                else log "sourcing $f"; # shellcheck disable=SC1090
                    . "$f"; fi ;;
            *.sql) log "running $f"; "${client[@]}" <"$f" || die "$f failed" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${client[@]}" || die "$f failed" ;;
            *.sql.xz) log "running $f"; xzcat "$f" | "${client[@]}" || die "$f failed" ;;
            *) log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob

    log "Stopping temporary server"
    mariadb-admin --defaults-extra-file="$rootcnf" --protocol=socket -uroot --socket="$SOCKET" shutdown \
        || die "cannot stop the temporary server"
    wait "$tmp_pid" || true
    rm -f "$rootcnf"
    log "Temporary server stopped"
    log "MariaDB init process done. Ready for start up."
else
    log "Database already initialized in $DATADIR: skipping initialization and /docker-entrypoint-initdb.d"
fi

exec "$@"
