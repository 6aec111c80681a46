#!/usr/bin/env bash
# What the key index (messageIndexEnable, on by default as in RocketMQ) costs a send: mqbench
# against a real broker with the index on and off, rounds interleaved so the spread shows this
# shared machine's noise; the disk's own write + fdatasync rate is printed beside each round.
#
#   scripts/bench-index.sh [ROUNDS] [MESSAGES] [SENDERS] [FLUSH]   # defaults: 3 50000 32 ASYNC_FLUSH
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MESSAGES=${2:-50000}
SENDERS=${3:-32}
FLUSH=${4:-ASYNC_FLUSH}
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh # (the working directory is the repository root)

run_once() { # index(true|false) -> prints "msg/s p50 p99 errors"
    local dir="$WORK/run"
    rm -rf "$dir"
    mkdir -p "$dir"
    PIDS=()
    start ns "boot success" "$BIN/mqnamesrv" --listen 127.0.0.1:19876
    printf 'brokerName=bench\nflushDiskType=%s\nmessageIndexEnable=%s\n' "$FLUSH" "$1" >"$dir/broker.conf"
    start broker "boot success" "$BIN/mqbroker" -n 127.0.0.1:19876 -c "$dir/broker.conf" --listen 127.0.0.1:20911 --store "$dir/store"
    "$BIN/mqbench" -n 127.0.0.1:19876 --producers "$SENDERS" --messages "$MESSAGES" --no-consume --json >"$dir/bench.json" 2>"$dir/bench.err" || true
    python3 - "$dir/bench.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))["produce"]
    print(f'{r["msgs_per_sec"]:.0f} {r["p50_us"]/1000:.2f} {r["p99_us"]/1000:.2f} {r["errors"]}')
except Exception as e:
    print(f"- - - failed({e})")
PY
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

echo "# $MESSAGES messages of 1 KiB, $SENDERS senders, $FLUSH; NameServer, broker and mqbench as separate processes"
echo "round index msg/s p50_ms p99_ms errors disk_MB/s"
for round in $(seq 1 "$ROUNDS"); do
    disk=$(disk_probe)
    for index in true false; do
        echo "$round $index $(run_once "$index") $disk"
    done
done
