#!/usr/bin/env bash
# Drivers reach their runtime only through the facade (system/rt): timers from rmq_rt::time,
# tasks from rmq_rt::spawn, sockets from the Env. A driver that names tokio's timer, spawner or
# sockets directly would run on real time in the madsim lane (or panic there), so it is refused
# here. tokio's runtime-agnostic parts (sync, io, select!) are fine.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(system/rt/src system/broker/driver/src system/namesrv/driver/src system/client/driver/src sim/src/host.rs sim/src/stack.rs sim/src/msim.rs)
# The facade itself (system/rt/src/lib.rs) is where the runtime is chosen.
bad=$(grep -rnE 'tokio::(time|net|fs|runtime)::|tokio::spawn|tokio::task::(spawn|JoinHandle)|std::thread::spawn' "${paths[@]}" \
    | grep -v '^system/rt/src/lib.rs:' || true)
if [ -n "$bad" ]; then
    echo "drivers must take timers, tasks and sockets from the runtime facade (rmq_rt):"
    echo "$bad"
    exit 1
fi
echo "ok: drivers reach tokio's timers, tasks and sockets only through rmq_rt"
