#!/bin/sh
# bench/short.sh — what `meson test --benchmark` runs: tools/bench --short
# (1-second runs of the whole suite against the local stack, written to
# bench/out/RESULTS-short.md). $1 is the stockbench binary; meson sets
# STOCKD_BIN. Skips (77) on a machine without MariaDB or Redis.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v redis-server >/dev/null 2>&1 ||
   ! { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; }; then
    echo "skip: mariadbd or redis-server not installed (tools/deps)"
    exit 77
fi
STOCKBENCH_BIN=$1 exec "$root/tools/bench" --short
