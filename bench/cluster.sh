#!/usr/bin/env bash
# bench/cluster.sh — stockd sharded: throughput and latency for 1..N instances
# (tools/cluster), each reached three ways: via HAProxy, direct to every
# instance in turn (--target a,b,c: 1/N of the requests land on the owner,
# the rest are forwarded), and ring-aware (stockbench --ring-aware: straight
# to the owner). Two workloads: spread SKUs (uniform over many) and one hot
# SKU. Writes a markdown table to OUT (default bench/out/cluster.md).
#
#   bench/cluster.sh [OUT]
#
# Needs a running stack (tools/stack up; STOCKD_DB from `tools/stack env`)
# and built binaries: STOCKD_BIN and STOCKBENCH_BIN (default: build/).
# Knobs: NODES (default "1 2 3"), DURATION (s, default 4), CONNS (default 16),
# PIPE (default 8), SPREAD_SKUS (default 10000). Bounded: every run has its
# duration; each cluster is stopped (by pid, tools/cluster down) on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/bench/out/cluster.md}
stockd_bin=${STOCKD_BIN:-$root/build/stockd}
bench_bin=${STOCKBENCH_BIN:-$root/build/bench/stockbench}
nodes_list=${NODES:-1 2 3}
duration=${DURATION:-4}
conns=${CONNS:-16}
pipe=${PIPE:-8}
spread=${SPREAD_SKUS:-10000}
work=$(mktemp -d /tmp/stockd-bench-cluster.XXXXXX)
export CLUSTER_DIR=$work/cluster CLUSTER_DB_NAME=bench_cluster STOCKD_BIN=$stockd_bin

[ -x "$stockd_bin" ] || { echo "cluster.sh: no stockd at $stockd_bin" >&2; exit 2; }
[ -x "$bench_bin" ] || { echo "cluster.sh: no stockbench at $bench_bin" >&2; exit 2; }
if [ -z "${STOCKD_DB:-}" ]; then
    eval "$("$root/tools/stack" env)"
fi

cleanup() { "$root/tools/cluster" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

# One stockbench run; prints "req/s p50 p99 audit". A run whose setup
# failed (e.g. a sku.put answered unavailable on a cold cluster) is retried
# once with fresh SKUs, and the note says so.
run() {
    local json=$work/run.json try
    for try in 1 2; do
        if "$bench_bin" --no-progress --mode stockd --db "$STOCKD_CLUSTER_DB" \
            --duration "$duration" --warmup 1 --connections "$conns" --pipeline "$pipe" \
            --json "$json" "$@" >"$work/run.log" 2>&1; then
            break
        fi
        tail -3 "$work/run.log" >&2
        [ "$try" = 2 ] && { echo "- - - failed"; return; }
        echo "retry after a failed run: $(grep -m1 'not run\|FAILED' "$work/run.log")" >>"$work/notes"
    done
    /usr/bin/python3 - "$json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["modes"]["stockd"]
l = m["latency_us"]
print("%.0f %s %s %s" % (m["requests_per_s"], l.get("p50"), l.get("p99"), m["audit"]))
EOF
}

{
    echo "| instances | workload | path | requests/s | p50 µs | p99 µs | audit |"
    echo "|---|---|---|---|---|---|---|"
} >"$work/table.md"

for n in $nodes_list; do
    "$root/tools/cluster" up "$n" >/dev/null
    eval "$("$root/tools/cluster" env)"
    direct=$(echo "$STOCKD_CLUSTER_NODES" | tr ',' '\n' | cut -d= -f2 | paste -sd,)
    for wl in spread hot; do
        if [ "$wl" = spread ]; then skus=(--skus "$spread"); else skus=(--skus 1); fi
        for path in haproxy direct ring-aware; do
            case $path in
                haproxy) args=(--target "$STOCKD_CLUSTER_ADDR") ;;
                direct) args=(--target "$direct") ;;
                ring-aware) args=(--ring-aware --target "$STOCKD_CLUSTER_ADDR") ;;
            esac
            read -r rps p50 p99 audit < <(run "${skus[@]}" "${args[@]}")
            echo "| $n | $wl | $path | $rps | $p50 | $p99 | $audit |" | tee -a "$work/table.md"
        done
    done
    "$root/tools/cluster" down >/dev/null
done

mkdir -p "$(dirname "$out")"
{
    echo "# stockd sharded: bench/cluster.sh"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stockd $("$stockd_bin" --version 2>/dev/null | head -1)."
    echo "Closed loop, $conns connections x pipeline $pipe (ring-aware: $conns connections"
    echo "per instance, the same $((conns * pipe)) requests in flight), ${duration}s measured after"
    echo "1s warmup; spread = $spread SKUs uniform, hot = 1 SKU. All instances, HAProxy,"
    echo "MariaDB and stockbench share this machine."
    echo
    cat "$work/table.md"
    if [ -s "$work/notes" ]; then
        echo
        sed 's/^/- /' "$work/notes"
    fi
} >"$out"
echo "cluster.sh: wrote $out"
rm -rf "$work"
