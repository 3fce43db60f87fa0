#!/usr/bin/env bash
# Install the Debian packages Aerostore needs, where missing:
#   tcl-dev (headers + stub library for the shim), tcl-thread (Tcl threads),
#   libsqlite3-tcl (the SQLite peer in tests and benchmarks).
set -euo pipefail
need=()
for p in tcl-dev tcl-thread libsqlite3-tcl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing system packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}"
