#!/usr/bin/env bash
# Makes sure bubblewrap (bwrap), the sandbox's strong confinement, is installed: Debian's `bubblewrap` when it
# is missing (.ci/apt-install.sh: as root, or with passwordless sudo). Exits 1 with the reason on stderr when it
# cannot be had, so the sandbox's escape tests run in CI instead of being skipped.
#   .ci/bubblewrap.sh
set -euo pipefail

command -v bwrap >/dev/null && exit 0
"$(dirname "$0")/apt-install.sh" bubblewrap
command -v bwrap >/dev/null || { echo "bubblewrap was installed but bwrap is not on PATH" >&2; exit 1; }
