#!/usr/bin/env bash
# Throughput and send latency for each flush x replication combination, with the NameServer,
# the master and the slave as separate release processes on 127.0.0.1 and mqbench as the
# client (issue #8). Rounds are interleaved (every combination once per round) so the spread
# shows this shared machine's noise; the disk's own sequential write + fdatasync rate is probed
# in each round and printed beside the figures.
#
#   scripts/bench-replication.sh [ROUNDS] [MESSAGES] [SENDERS]      # defaults: 3 30000 64
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MESSAGES=${2:-30000}
SENDERS=${3:-64}

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh # (the working directory is the repository root)

run_combo() { # flush replication -> prints "msg/s p50 p99"
    local flush=$1 repl=$2 dir="$WORK/run"
    rm -rf "$dir"
    mkdir -p "$dir"
    PIDS=()
    start ns "boot success" "$BIN/mqnamesrv" --listen 127.0.0.1:19876
    local role=ASYNC_MASTER
    [ "$repl" = sync ] && role=SYNC_MASTER
    printf 'brokerName=bench\nbrokerId=0\nbrokerRole=%s\nflushDiskType=%s\nhaListenPort=20912\n' "$role" "$flush" >"$dir/master.conf"
    start master "boot success" "$BIN/mqbroker" -n 127.0.0.1:19876 -c "$dir/master.conf" --listen 127.0.0.1:20911 --store "$dir/master"
    if [ "$repl" != none ]; then
        printf 'brokerName=bench\nbrokerId=1\nbrokerRole=SLAVE\nflushDiskType=%s\nhaMasterAddress=127.0.0.1:20912\n' "$flush" >"$dir/slave.conf"
        start slave "boot success" "$BIN/mqbroker" -n 127.0.0.1:19876 -c "$dir/slave.conf" --listen 127.0.0.1:21911 --store "$dir/slave"
        sleep 2 # the slave attaches before the load starts
    fi
    "$BIN/mqbench" -n 127.0.0.1:19876 --producers "$SENDERS" --messages "$MESSAGES" --no-consume --json >"$dir/bench.json" 2>"$dir/bench.err" || true
    python3 - "$dir/bench.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))["produce"]
    print(f'{r["msgs_per_sec"]:.0f} {r["p50_us"]/1000:.2f} {r["p99_us"]/1000:.2f} {r["errors"]}')
except Exception as e:
    print(f"- - - failed({e})")
EOF
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

echo "# $MESSAGES messages of 1 KiB, $SENDERS senders; master, slave, NameServer and mqbench as separate processes"
echo "round flush replication msg/s p50_ms p99_ms errors disk_MB/s"
for round in $(seq 1 "$ROUNDS"); do
    disk=$(disk_probe)
    for flush in ASYNC_FLUSH SYNC_FLUSH; do
        for repl in none async sync; do
            echo "$round $flush $repl $(run_combo "$flush" "$repl") $disk"
        done
    done
done
