#!/bin/sh
# Installs every Debian package luahub's build, tests and bench need.
# Idempotent: only packages that are missing are installed, and apt is not
# touched at all when everything is present.
set -eu

PKGS="build-essential pkg-config
libev-dev liblua5.4-dev lua5.4 lua-cjson lua-cjson-dev uthash-dev
lua-busted lua-check
redis-server redis-tools
libsqlite3-dev libxxhash-dev sqlite3
python3 python3-redis python3-pytest
gnuplot-nox"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi

echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >&2
