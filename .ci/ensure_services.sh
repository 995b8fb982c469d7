#!/usr/bin/env bash
# Make sure the servers the test-suite starts are installed: redis-server and
# PostgreSQL's server binaries, and Chromium for the browser tests. Installs them with apt-get when missing and root.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # browser tests (Playwright drives Debian's Chromium)
pg_ok=0
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && pg_ok=1; done
command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && pg_ok=1
[ $pg_ok = 1 ] || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "The tests need ${need[*]}; install them (apt-get install ${need[*]}) or run as root so make does it." >&2
  exit 1
fi
echo "Installing ${need[*]} with apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
