#!/usr/bin/env bash
# Cores must stay sans-IO: no async runtime and no simulator in their dependency trees.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=(rmq-proto rmq-acl rmq-store rmq-namesrv-core rmq-broker-core rmq-client-core rmq-models)
status=0
for c in "${cores[@]}"; do
    bad=$(cargo tree -p "$c" -e normal --prefix none 2>/dev/null | grep -E '^(tokio|turmoil|madsim|async-std|mio) ' | sort -u || true)
    if [ -n "$bad" ]; then
        echo "core crate $c depends on a runtime: $bad"
        status=1
    else
        echo "ok: $c has no tokio, turmoil or madsim in its dependency tree"
    fi
done
exit $status
