#!/usr/bin/env bash
# Run djjobs beside its peers with the harnesses in ../shared/bench, in one run each
# (the machine is noisy: only figures from one run compare).
#
#   tests/bench/run_peers.sh redis  [harness args]   # default: --systems djangojobs,sidekiq --workloads w1,w2,w3
#   tests/bench/run_peers.sh db     [harness args]   # default: --systems djjobs,django-tasks-db,procrastinate
#
# shared/ is read-only: it is copied to $BENCH_COPY (default /tmp/shared) first; our two
# peer files are dropped into the copy and djjobs is installed into its Python 3.12 venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
copy=${BENCH_COPY:-/tmp/shared}
[ -d "$copy/bench" ] || { cp -r "$project/../shared" "$copy"; chmod -R u+w "$copy"; }
cd "$copy"
kind=${1:-redis}; shift || true
if [ "$kind" = redis ]; then
  bench/peers/run.sh --setup-only
  bench/dbpeers/run.sh --setup-only   # its Python 3.12 venv runs djjobs' client and workers
  bench/.venv-db/bin/pip install -q -e "$project[redis]"
  cp "$here/djangojobs_peer.py" bench/peers/systems/
  exec bench/peers/run.sh ${@:---systems djangojobs,sidekiq --workloads w1,w2,w3}
else
  bench/dbpeers/run.sh --setup-only
  bench/.venv-db/bin/pip install -q -e "$project[postgres]"
  cp "$here/djjobs_peer.py" bench/dbpeers/systems/
  exec bench/dbpeers/run.sh ${@:---systems djjobs,django-tasks-db,procrastinate}
fi
