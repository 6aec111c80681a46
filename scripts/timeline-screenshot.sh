#!/usr/bin/env bash
# Screenshots a timeline page (`mqsim run ... --html FILE`) with headless Chromium, so a change to
# the page can be looked at without a desktop. Installs the Debian `chromium` package if missing.
#
#   scripts/timeline-screenshot.sh /tmp/run.html /tmp/run.png [WIDTH,HEIGHT]
#
# Exits non-zero when no PNG comes out.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 PAGE.html OUT.png [WIDTH,HEIGHT]" >&2
    exit 4
fi
page=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1600,1000}
[ -f "$page" ] || { echo "$0: no such page: $page" >&2; exit 4; }

if ! command -v chromium >/dev/null 2>&1; then
    echo "# chromium missing: installing the Debian package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

rm -f "$out"
# The page draws on a canvas from an inline script: give it virtual time to run before the shot.
# Chromium chatters on stderr about D-Bus and GPU even when all is well; keep it out of the way
# unless the shot fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$size" --virtual-time-budget=5000 \
    --screenshot="$out" "file://$page" >"$log" 2>&1; then
    cat "$log" >&2
fi
if [ ! -s "$out" ]; then
    cat "$log" >&2
    echo "$0: no screenshot produced at $out" >&2
    exit 1
fi
echo "$out"
