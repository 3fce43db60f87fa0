#!/usr/bin/env bash
# Install the Debian packages Aerostore needs, where missing:
#   tcl-dev (headers + stub library for the shim), tcl-thread (Tcl threads),
#   libsqlite3-tcl (the SQLite peer in tests and benchmarks),
#   libpgtcl (Pgtcl: the PostgreSQL peer of the live-feed benchmark; the bench
#   skips PostgreSQL, saying so, where it or the server is missing).
set -euo pipefail
need=()
for p in tcl-dev tcl-thread libsqlite3-tcl libpgtcl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing system packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}"
