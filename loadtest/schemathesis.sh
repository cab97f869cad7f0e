#!/usr/bin/env bash
# Property-based tests of the HTTP API: schemathesis generates requests from each
# frontend's /openapi.json (valid and invalid ones) against a fresh `agora up` on free
# ports of 127.0.0.1, and checks every answer against the document: no 5xx, only
# documented statuses, bodies matching their schemas, bad input refused, good input
# accepted, secured routes refusing requests without a session.
#
# Bounded: at most SCHEMATHESIS_EXAMPLES cases per operation and phase (default 40), and a
# hard limit of SCHEMATHESIS_TIMEOUT seconds per frontend (default 300). Installs its
# pinned schemathesis into target/venv-schemathesis the first time. Exit status 0 when
# both frontends pass.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

examples=${SCHEMATHESIS_EXAMPLES:-40}
limit=${SCHEMATHESIS_TIMEOUT:-300}
seed=${SCHEMATHESIS_SEED:-1}
venv=$(realpath -m "${SCHEMATHESIS_VENV:-target/venv-schemathesis}")
wanted=$(sed -n 's/^schemathesis==//p' loadtest/requirements-schemathesis.txt)

if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$wanted"; then
    echo "schemathesis: installing $wanted into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        -r loadtest/requirements-schemathesis.txt
fi

# AGORA_BINARY runs a given agora binary instead of building one.
binary=${AGORA_BINARY:-target/debug/agora}
[ -n "${AGORA_BINARY:-}" ] || cargo build --quiet -p agora
# shellcheck source=loadtest/up.sh
source loadtest/up.sh
start_agora "$binary"
setup=$(python3 loadtest/setup.py --seller "http://$SELLER_HTTP" --buyer "http://$BUYER_HTTP")
eval "$setup"
export AGORA_ITEM AGORA_SELLER_ID

status=0
for role in seller buyer; do
    if [ "$role" = seller ]; then
        base=$SELLER_HTTP session=$AGORA_SELLER_SESSION
    else
        base=$BUYER_HTTP session=$AGORA_BUYER_SESSION
    fi
    echo "schemathesis: $role API at http://$base (seed $seed, $examples examples)"
    # Logout is left out: it would end the session the other operations are tested with
    # (crates/agora/tests/http.rs covers it).
    # Run from the temporary directory, where schemathesis and hypothesis keep caches.
    (cd "$AGORA_DATA" && AGORA_SESSION=$session timeout -k 10 "$limit" \
        "$venv/bin/st" --config-file "$repo/loadtest/schemathesis.toml" run \
        "http://$base/openapi.json" \
        --max-examples "$examples" --seed "$seed" --workers 1 --request-timeout 15 \
        --exclude-path /v1/sessions/current --no-color) || status=$?
done
if [ "$status" -eq 0 ]; then
    echo "schemathesis: both APIs passed"
else
    echo "schemathesis: failures above (exit status $status)" >&2
fi
exit "$status"
