#!/usr/bin/env bash
# Installs Debian's PACKAGE with apt-get, as root or with passwordless sudo, everything it says on stderr. Exits 1
# with the reason on stderr when it cannot; HINT (optional) says what else the user may do.
#   .ci/apt-install.sh PACKAGE [HINT]
set -euo pipefail
package=$1
hint=${2:+ ($2)}

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "no $package, and installing it needs root: apt-get install $package$hint" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "no $package and no apt-get to install it: install $package by hand$hint" >&2
    exit 1
fi
echo "installing $package from Debian's packages" >&2
if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$package"; } >&2; then
    echo "apt-get could not install $package (see above)" >&2
    exit 1
fi
