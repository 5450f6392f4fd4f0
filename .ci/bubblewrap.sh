#!/usr/bin/env bash
# Makes sure bubblewrap (bwrap), the sandbox's strong confinement, is installed: Debian's `bubblewrap` when it
# is missing (as root, or with passwordless sudo). Exits 1 with the reason on stderr when it cannot be had, so
# the sandbox's escape tests run in CI instead of being skipped.
#   .ci/bubblewrap.sh
set -euo pipefail

command -v bwrap >/dev/null && exit 0
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "bwrap is missing, and installing it needs root: apt-get install bubblewrap" >&2
    exit 1
fi
echo "installing Debian's bubblewrap for the sandbox tests" >&2
"${sudo[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq bubblewrap >&2
command -v bwrap >/dev/null
