#!/usr/bin/env bash
# The same mqbench load against rocketmq-rust's broker and against ours, rounds interleaved,
# both as separate NameServer + broker processes on 127.0.0.1, each run printing this machine's
# limits beside its figure. rocketmq-rust 1.0.0 must be installed first (about 20 minutes of
# both cores here):
#
#   cargo install --locked --root /tmp/rmqrust/install rocketmq-namesrv@1.0.0 rocketmq-broker@1.0.0
#   scripts/bench-rocketmq-rust.sh [ROUNDS] [MESSAGES] [SENDERS] [RMQRUST_BIN]
#                                  # defaults: 3 20000 64 /tmp/rmqrust/install/bin
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MESSAGES=${2:-20000}
SENDERS=${3:-64}
PEER=${4:-/tmp/rmqrust/install/bin}
for b in rocketmq-namesrv-rust rocketmq-broker-rust; do
    [ -x "$PEER/$b" ] || { echo "$PEER/$b not found: install rocketmq-rust 1.0.0 first (see the header)" >&2; exit 2; }
done
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh # (the working directory is the repository root)

# Their broker: ASYNC_FLUSH, segment sizes as ours, store and logs in the scratch directory.
NS_PORT=19876
(cd "$WORK" && HOME="$WORK" ROCKETMQ_HOME="$WORK" exec "$PEER/rocketmq-namesrv-rust" --listenPort "$NS_PORT" --bindAddress 127.0.0.1 --rocketmqHome "$WORK" \
    >"$WORK/peer-namesrv.out" 2>&1) &
PIDS+=($!)
PEER_NS=127.0.0.1:$NS_PORT
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NS_PORT") 2>/dev/null && break
    sleep 0.1
done
cat >"$WORK/peer-broker.conf" <<CONF
brokerClusterName = DefaultCluster
brokerName = peer-broker
brokerId = 0
namesrvAddr = $PEER_NS
brokerIP1 = 127.0.0.1
listenPort = 19911
storePathRootDir = $WORK/peer-store
storePathCommitLog = $WORK/peer-store/commitlog
flushDiskType = ASYNC_FLUSH
brokerRole = ASYNC_MASTER
mappedFileSizeCommitLog = 268435456
mappedFileSizeConsumeQueue = 600000
autoCreateTopicEnable = true
CONF
(cd "$WORK" && HOME="$WORK" ROCKETMQ_HOME="$WORK" exec "$PEER/rocketmq-broker-rust" -c "$WORK/peer-broker.conf" >"$WORK/peer-broker.out" 2>&1) &
PIDS+=($!)
PEER_PID=$!
# Their broker registers with its NameServer within a few seconds.
sleep 8
kill -0 "$PEER_PID" 2>/dev/null || { echo "rocketmq-rust's broker exited:" >&2; tail -20 "$WORK/peer-broker.out" >&2; exit 1; }

echo "# $MESSAGES messages of 1 KiB, $SENDERS senders; ours and rocketmq-rust 1.0.0 as separate processes; rounds interleaved"
echo "round broker produce_msg/s p50_ms p99_ms drain_msg/s broker_rss_mib fdatasync4k_ms"
for round in $(seq 1 "$ROUNDS"); do
    "$BIN/mqbench" -n "$PEER_NS" --producers "$SENDERS" --messages "$MESSAGES" --json >"$WORK/$round-peer.json" \
        2>"$WORK/$round-peer.err" || { echo "round $round: mqbench against rocketmq-rust failed:" >&2; tail -5 "$WORK/$round-peer.err" >&2; }
    peer_rss=$(awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$PEER_PID/status")
    "$BIN/mqbench" --processes --producers "$SENDERS" --messages "$MESSAGES" --json >"$WORK/$round-ours.json"
    python3 - "$round" "$WORK/$round-peer.json" "$WORK/$round-ours.json" "$peer_rss" <<'PY'
import json, sys
rnd, peer_path, ours_path, peer_rss = sys.argv[1:5]
for name, path in (("rocketmq-rust", peer_path), ("ours", ours_path)):
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        print(f"{rnd} {name} failed"); continue
    p, c, l = r["produce"], r.get("consume") or {}, r.get("limits") or {}
    rss = peer_rss if name == "rocketmq-rust" else f'{(r.get("broker_resources") or {}).get("rss_bytes", 0) / 2**20:.0f}'
    d4 = next((d["ms_per_sync"] for d in l.get("disk", []) if d["block_bytes"] == 4096), float("nan"))
    print(f'{rnd} {name} {p["msgs_per_sec"]:.0f} {p["p50_us"]/1000:.2f} {p["p99_us"]/1000:.2f} '
          f'{c.get("msgs_per_sec", 0):.0f} {rss} {d4:.2f}')
PY
done
