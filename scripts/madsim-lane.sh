#!/usr/bin/env bash
# The madsim lane's build of mqsim: the same drivers and client library compiled with
# `--cfg madsim`, so the runtime facade (system/rt) takes its timers and task spawning from
# madsim's deterministic scheduler. It has its own target directory (a `--cfg` change rebuilds
# every crate, and sharing the normal target directory would make each build undo the other).
#
#   scripts/madsim-lane.sh run broker-crash-sync --lane madsim --seed 7 --check-determinism
#   scripts/madsim-lane.sh sweep all --seeds 4 --lane all     # fast + madsim, verdicts compared
#
# Arguments are mqsim's. MADSIM_TARGET_DIR overrides the target directory (default:
# target/madsim under the workspace, or $CARGO_TARGET_DIR/madsim when that is set).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg madsim"
export CARGO_TARGET_DIR="${MADSIM_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/madsim}"
exec cargo run --quiet --release --bin mqsim -- "$@"
