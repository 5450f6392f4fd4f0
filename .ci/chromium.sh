#!/usr/bin/env bash
# Prints the path of a Chromium for the report's browser test (tests/report/test_html.py), installing Debian's
# `chromium` when none is found (as root, or with passwordless sudo). TUNESMITH_CHROMIUM, when set, is used as
# it is. Exits 1 with the reason on stderr when there is none and none can be installed; stdout holds nothing
# but the path.
#   chromium=$(.ci/chromium.sh)
set -euo pipefail

find_chromium() {
    local name
    for name in chromium chromium-browser google-chrome chrome chromium-headless-shell; do
        if command -v "$name"; then return 0; fi
    done
    return 1
}

if [[ -n "${TUNESMITH_CHROMIUM:-}" ]]; then
    if [[ -x "$TUNESMITH_CHROMIUM" ]]; then echo "$TUNESMITH_CHROMIUM"; exit 0; fi
    echo "TUNESMITH_CHROMIUM=$TUNESMITH_CHROMIUM is not an executable file" >&2
    exit 1
fi
find_chromium && exit 0

"$(dirname "$0")/apt-install.sh" chromium "or set TUNESMITH_CHROMIUM"
find_chromium || { echo "chromium was installed but is not on PATH" >&2; exit 1; }
