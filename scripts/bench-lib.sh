# Shared by the benchmark scripts (sourced from the repository root): the release binaries,
# built first (BIN names their directory); a scratch directory (WORK) and the servers started
# (PIDS), both cleaned up on exit; `start` (a server in the background, waiting for its boot
# line) and `disk_probe` (the store file system's sequential write + fdatasync rate).

cargo build --release --bin mqnamesrv --bin mqbroker --bin mqbench >&2
BIN=${CARGO_TARGET_DIR:-target}/release

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a process in the background, waits for its boot line, prints the address it names.
start() { # name pattern cmd...
    local name=$1 pattern=$2
    shift 2
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        if grep -q "$pattern" "$WORK/$name.out" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "$name did not start:" >&2
    cat "$WORK/$name.err" >&2
    exit 1
}

disk_probe() { # MB/s of 64 KiB appends + fdatasync in the store's file system
    python3 - "$WORK" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
block = b"x" * 65536
t = time.perf_counter()
for _ in range(200):
    os.write(fd, block)
    os.fdatasync(fd)
dt = time.perf_counter() - t
os.close(fd)
os.unlink(path)
print(f"{200 * 65536 / dt / 1e6:.0f}")
EOF
}

