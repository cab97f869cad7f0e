# Sourced by the scripts beside it: `start_agora BINARY` starts `agora up` on free ports
# of 127.0.0.1 with its data in a temporary directory, and sets SELLER_HTTP and BUYER_HTTP
# to the host:port of the two HTTP APIs. An EXIT trap stops it (SIGTERM, which `agora up`
# treats as Ctrl-C) and removes the data.

start_agora() {
    local binary=$1
    AGORA_DATA=$(mktemp -d "${TMPDIR:-/tmp}/agora-loadtest.XXXXXX")
    local ports=(--customer-db-listen 127.0.0.1:0 --product-db-listen 127.0.0.1:0
        --seller-listen 127.0.0.1:0 --buyer-listen 127.0.0.1:0
        --seller-http-listen 127.0.0.1:0 --buyer-http-listen 127.0.0.1:0)
    # Components added later (payments) get a free port too, when this binary has them.
    if "$binary" up --help | grep -q -- '--payments-listen'; then
        ports+=(--payments-listen 127.0.0.1:0)
    fi
    "$binary" up --data-dir "$AGORA_DATA/data" --log "${AGORA_LOG:-warn}" "${ports[@]}" \
        >"$AGORA_DATA/up.out" 2>"$AGORA_DATA/up.log" &
    AGORA_PID=$!
    trap stop_agora EXIT
    local waited=0
    until grep -q '^Ctrl-C stops everything' "$AGORA_DATA/up.out" 2>/dev/null; do
        if ! kill -0 "$AGORA_PID" 2>/dev/null || [ "$waited" -ge 600 ]; then
            echo "agora up did not start; its log:" >&2
            cat "$AGORA_DATA/up.log" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    SELLER_HTTP=$(awk '$1 == "seller-server" { sub("^http://", "", $3); print $3 }' "$AGORA_DATA/up.out")
    BUYER_HTTP=$(awk '$1 == "buyer-server" { sub("^http://", "", $3); print $3 }' "$AGORA_DATA/up.out")
    if [ -z "$SELLER_HTTP" ] || [ -z "$BUYER_HTTP" ]; then
        echo "agora up did not announce its HTTP APIs:" >&2
        cat "$AGORA_DATA/up.out" >&2
        exit 1
    fi
}

stop_agora() {
    if [ -n "${AGORA_PID:-}" ]; then
        kill -TERM "$AGORA_PID" 2>/dev/null || true
        wait "$AGORA_PID" 2>/dev/null || true
        AGORA_PID=
    fi
    [ -n "${AGORA_DATA:-}" ] && rm -rf "$AGORA_DATA"
    return 0
}
