#!/usr/bin/env bash
# SYNC_FLUSH against ASYNC_FLUSH, rounds interleaved so the spread shows this shared machine's
# noise, each run printing the machine's own limits (write + fdatasync, CommitLog segment
# write + fdatasync, codec rate) beside its figure. MODE picks where the broker runs:
# `embedded` (inside mqbench, sharing its runtime with the client) or `processes` (separate
# mqnamesrv and mqbroker processes, as users run them).
#
#   scripts/bench-flush.sh [ROUNDS] [MESSAGES] [SENDERS] [MODE]   # defaults: 3 100000 64 processes
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MESSAGES=${2:-100000}
SENDERS=${3:-64}
MODE=${4:-processes}
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh # (the working directory is the repository root)
case "$MODE" in
    processes) EXTRA=(--processes) ;;
    embedded) EXTRA=() ;;
    *) echo "MODE is embedded or processes, not $MODE" >&2; exit 2 ;;
esac
OUT=$WORK

echo "# $MESSAGES messages of 1 KiB, $SENDERS senders, broker $MODE; rounds interleaved"
echo "round flush msg/s sync/async p50_ms p99_ms fdatasync4k_ms log64k_ms codec_msg/s"
for round in $(seq 1 "$ROUNDS"); do
    for flush in async sync; do
        # SYNC rounds run with warmMapedFileEnable, the setting recommended for SYNC_FLUSH (a
        # zero-filled segment's fdatasync writes no inode); ASYNC rounds with the default.
        warm=()
        [ "$flush" = sync ] && warm=(--warm)
        "$BIN/mqbench" "${EXTRA[@]}" "${warm[@]}" --flush "$flush" --producers "$SENDERS" --messages "$MESSAGES" \
            --no-consume --json >"$OUT/$round-$flush.json"
    done
    python3 - "$round" "$OUT/$round-async.json" "$OUT/$round-sync.json" <<'PY'
import json, sys
rnd, a, s = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
for flush, r in (("async", a), ("sync", s)):
    p, l = r["produce"], r["limits"]
    ratio = f'{s["produce"]["msgs_per_sec"] / a["produce"]["msgs_per_sec"]:.2f}' if flush == "sync" else "-"
    d4 = next(d for d in l["disk"] if d["block_bytes"] == 4096)
    print(f'{rnd} {flush} {p["msgs_per_sec"]:.0f} {ratio} {p["p50_us"]/1000:.2f} {p["p99_us"]/1000:.2f} '
          f'{d4["ms_per_sync"]:.2f} {l["log_flush_64k_ms"]:.2f} {l["codec_msgs_per_sec"]:.0f}')
PY
done
