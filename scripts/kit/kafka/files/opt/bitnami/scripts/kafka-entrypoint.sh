#!/bin/bash
# cdq kit kafka entrypoint: runs tansu, an Apache-Kafka-protocol broker, behind the listener
# layout of bitnami/kafka's server.properties.
#
# tansu serves one listener per process, so:
#   * the inter-broker listener (inter.broker.listener.name, else the first one) is the tansu
#     broker itself, advertising that listener's advertised address;
#   * every other listener is a `tansu proxy` on its port that forwards to the broker and
#     rewrites the broker address in metadata to its own advertised address, so a client
#     that bootstraps through EXTERNAL keeps talking to EXTERNAL.
# Storage is tansu's memory engine: topics do not survive a restart (bitnami's do).
# Only PLAINTEXT listeners are supported; anything else is refused at start.
set -euo pipefail

CONF=${KAFKA_CONF_FILE:-/bitnami/kafka/config/server.properties}
TANSU=/opt/tansu/bin/tansu
log() { printf 'kafka (cdq kit, tansu) %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "error: $*" >&2; exit 1; }

if [[ "${1:-}" != /opt/bitnami/scripts/kafka/run.sh && "${1:-}" != run ]]; then exec "$@"; fi

prop() { # key -> value from the properties file (last one wins), empty if absent
    [[ -f "$CONF" ]] || return 0
    sed -n "s/^[[:space:]]*$1[[:space:]]*[=:][[:space:]]*//p" "$CONF" | tail -n1 | tr -d '\r'
}

if [[ -f "$CONF" ]]; then
    [[ -r "$CONF" ]] || die "cannot read $CONF (uid $(id -u))"
    log "reading $CONF"
    listeners=$(prop listeners)
    advertised=$(prop advertised.listeners)
    protomap=$(prop listener.security.protocol.map)
    inter=$(prop inter.broker.listener.name)
else
    log "no $CONF: using a single PLAINTEXT listener on 9092"
    listeners=${KAFKA_CFG_LISTENERS:-PLAINTEXT://:9092}
    advertised=${KAFKA_CFG_ADVERTISED_LISTENERS:-PLAINTEXT://$(hostname):9092}
    protomap=""
    inter=""
fi
[[ -n "$listeners" ]] || die "$CONF has no listeners="
[[ -n "$advertised" ]] || advertised=$listeners

declare -A PORT ADV PROTO
names=()
IFS=, read -r -a items <<<"$listeners"
for it in "${items[@]}"; do
    it=$(echo "$it" | tr -d '[:space:]'); [[ -n "$it" ]] || continue
    name=${it%%://*}; hp=${it#*://}
    [[ "$it" == *://* && "$hp" == *:* ]] || die "bad listener \`$it\` in $CONF"
    PORT[$name]=${hp##*:}; names+=("$name")
done
IFS=, read -r -a items <<<"$advertised"
for it in "${items[@]}"; do
    it=$(echo "$it" | tr -d '[:space:]'); [[ -n "$it" ]] || continue
    ADV[${it%%://*}]=${it#*://}
done
if [[ -n "$protomap" ]]; then
    IFS=, read -r -a items <<<"$protomap"
    for it in "${items[@]}"; do it=$(echo "$it" | tr -d '[:space:]'); PROTO[${it%%:*}]=${it#*:}; done
fi
for n in "${names[@]}"; do
    p=${PROTO[$n]:-$n}
    [[ "$p" == PLAINTEXT ]] || die "listener $n uses $p: the kit broker supports PLAINTEXT only"
    host=${ADV[$n]:-}
    if [[ -z "$host" || "${host%:*}" == "" ]]; then ADV[$n]="$(hostname):${PORT[$n]}"; fi
done
main=${inter:-${names[0]}}
[[ -n "${PORT[$main]:-}" ]] || die "inter.broker.listener.name=$main is not in listeners"

pids=()
# shellcheck disable=SC2317  # invoked by the trap
term() { log "stopping"; kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; exit 0; }
trap term TERM INT

log "note: tansu is a Kafka-protocol broker with memory-only storage"
log "listener $main: broker on :${PORT[$main]} advertising ${ADV[$main]}"
"$TANSU" broker --cluster-id "${KAFKA_CLUSTER_ID:-cdq-kit}" \
    --listener-url "tcp://0.0.0.0:${PORT[$main]}" \
    --advertised-listener-url "tcp://${ADV[$main]}" --storage-engine memory://tansu/ &
pids+=($!)
for n in "${names[@]}"; do
    [[ "$n" == "$main" ]] && continue
    log "listener $n: proxy on :${PORT[$n]} advertising ${ADV[$n]} -> broker :${PORT[$main]}"
    "$TANSU" proxy --listener-url "tcp://0.0.0.0:${PORT[$n]}" \
        --advertised-listener-url "tcp://${ADV[$n]}" \
        --origin-url "tcp://127.0.0.1:${PORT[$main]}" &
    pids+=($!)
done
set +e
wait -n "${pids[@]}"
rc=$?
log "error: a broker/proxy process exited (status $rc); stopping the others" >&2
kill -TERM "${pids[@]}" 2>/dev/null
wait
exit $(( rc == 0 ? 1 : rc ))
