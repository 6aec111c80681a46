#!/usr/bin/env bash
# The stateright models over the real cores, in release, at their default bounds: the sound
# variants must hold (exit 0), every other variant must fail with a counterexample (exit 1).
# A failing variant that passes means the model lost its teeth; that fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
mqsim=(cargo run --quiet --release --bin mqsim --)
"${mqsim[@]}" check --list
for m in no-loss exactly-once; do
    "${mqsim[@]}" check "$m"
done
# The network's faults (a lost and a duplicated client frame) with a power cut, one message.
"${mqsim[@]}" check no-loss --bound messages=1 --bound crashes=1 --bound disk-losses=0 \
    --bound duplicates=1 --bound losses=1
for mv in no-loss:async-flush no-loss:async-master exactly-once:no-dedup exactly-once:weak-dedup; do
    model=${mv%%:*} variant=${mv#*:}
    set +e
    out=$("${mqsim[@]}" check "$model" --variant "$variant")
    status=$?
    set -e
    printf '%s\n' "$out"
    if [ "$status" -ne 1 ] || ! grep -q COUNTEREXAMPLE <<<"$out"; then
        echo "check-models: $model --variant $variant must fail with a counterexample (exit $status)" >&2
        exit 1
    fi
done
echo "check-models: the sound variants hold; every other variant fails with a counterexample"
