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
#
# Carts: for every cluster size, carts of CART_LINES (default
# "1 3 10") distinct SKUs drawn uniformly from SPREAD_SKUS (stockbench
# --lines), via HAProxy (the receiving instance coordinates: a cart whose
# lines have several owners is placed as parts on each owner, then all are
# confirmed or all released) and ring-aware (sent to line 0's owner, which
# coordinates the rest). With 1 instance every cart is single-shard; with n
# instances a cart of L lines spans several shards with probability
# 1 - (1/n)^(L-1). A second table. CARTS_ONLY=1 runs only the carts.
#
# Cart contest: CONTEST=1 runs only `stockbench --cart-contest`: one seeded
# sequence of CONTEST_CARTS (default 300) carts of 2-5 lines over 20 SKUs of
# 6-15 units, all at once, on one plain instance (no --peers) and on
# CONTEST_NODES (default 3) shards via HAProxy; seeds CONTEST_SEEDS
# (default "1 2 3"). A table per seed: confirmed, refused, carts/s, SKUs
# sold out, the cluster's confirmed carts as a share of the instance's.
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

single_pid=
cleanup() {
    "$root/tools/cluster" down >/dev/null 2>&1 || true
    if [ -n "$single_pid" ]; then kill "$single_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The contest: one plain instance and a cluster, one table per seed.
if [ "${CONTEST:-0}" = 1 ]; then
    read -r single_port single_url < <(/usr/bin/python3 - "$STOCKD_DB" bench_contest_one <<'EOF'
import socket, sys, urllib.parse
import pymysql
u = urllib.parse.urlparse(sys.argv[1])
c = pymysql.connect(host=u.hostname, port=u.port or 3306, user=urllib.parse.unquote(u.username),
                    password=urllib.parse.unquote(u.password or ""), autocommit=True)
with c.cursor() as cur:
    cur.execute("DROP DATABASE IF EXISTS `%s`" % sys.argv[2])
    cur.execute("CREATE DATABASE `%s`" % sys.argv[2])
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
print(port, u._replace(path="/" + sys.argv[2]).geturl())
EOF
)
    env -u STOCKD_DB -u STOCKD_REDIS "$stockd_bin" --listen "127.0.0.1:$single_port" \
        --db "$single_url" --node one --default-deadline-ms 3000 >"$work/one.log" 2>&1 &
    single_pid=$!
    export CLUSTER_STOCKD_ARGS="--default-deadline-ms 3000"
    "$root/tools/cluster" up "${CONTEST_NODES:-3}" >/dev/null
    eval "$("$root/tools/cluster" env)"
    mkdir -p "$(dirname "$out")"
    {
        echo "# stockd: cart contest (bench/cluster.sh, CONTEST=1)"
        echo
        echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stockd $("$stockd_bin" --version 2>/dev/null | head -1)."
        echo "One plain instance against ${CONTEST_NODES:-3} shards via HAProxy, on one MariaDB."
        for seed in ${CONTEST_SEEDS:-1 2 3}; do
            echo
            "$bench_bin" --cart-contest --single-target "127.0.0.1:$single_port" \
                --target "$STOCKD_CLUSTER_ADDR" --seed "$seed" --carts "${CONTEST_CARTS:-300}"
        done
    } | tee "$out"
    echo "cluster.sh: wrote $out"
    rm -rf "$work"
    exit 0
fi

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

# One cart run; prints "carts/s lines/s p50 p99 errors audit" (errors as
# code=n,... or "none"; audit last: it may hold spaces).
run_cart() {
    local json=$work/cart.json
    if ! "$bench_bin" --no-progress --mode stockd --db "$STOCKD_CLUSTER_DB" \
        --duration "$duration" --warmup 1 --connections "$conns" --pipeline "$pipe" \
        --json "$json" "$@" >"$work/cart.log" 2>&1; then
        tail -3 "$work/cart.log" >&2
        grep -q '"modes"' "$json" 2>/dev/null ||
            { echo "- - - - - failed: $(grep -m1 'not run' "$work/cart.log")"; return; }
    fi
    /usr/bin/python3 - "$json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["modes"]["stockd"]
if "error" in m:
    print("- - - - - not run: %s" % m["error"]); sys.exit(0)
l = m["latency_us"]
errs = ",".join("%s=%d" % kv for kv in m["errors"].items()) or "none"
print("%.0f %.0f %s %s %s %s" % (m.get("carts_per_s", 0), m.get("lines_per_s", 0), l.get("p50"),
                                 l.get("p99"), errs, m["audit_detail"]))
EOF
    rm -f "$json"
}

{
    echo "| instances | workload | path | requests/s | p50 µs | p99 µs | audit |"
    echo "|---|---|---|---|---|---|---|"
} >"$work/table.md"
{
    echo "| instances | lines | path | carts/s | lines/s | p50 µs | p99 µs | errors | audit |"
    echo "|---|---|---|---|---|---|---|---|---|"
} >"$work/carts.md"
cart_lines=${CART_LINES:-1 3 10}

for n in $nodes_list; do
    "$root/tools/cluster" up "$n" >/dev/null
    eval "$("$root/tools/cluster" env)"
    direct=$(echo "$STOCKD_CLUSTER_NODES" | tr ',' '\n' | cut -d= -f2 | paste -sd,)
    for l in $cart_lines; do
        for path in haproxy ring-aware; do
            case $path in
                haproxy) args=(--target "$STOCKD_CLUSTER_ADDR") ;;
                ring-aware) args=(--ring-aware --target "$STOCKD_CLUSTER_ADDR") ;;
            esac
            read -r cps lps p50 p99 errs audit < <(run_cart --skus "$spread" --lines "$l" "${args[@]}")
            echo "| $n | $l | $path | $cps | $lps | $p50 | $p99 | $errs | $audit |" | tee -a "$work/carts.md"
        done
    done
    for wl in spread hot; do
        [ "${CARTS_ONLY:-0}" = 1 ] && break
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
    if [ "${CARTS_ONLY:-0}" != 1 ]; then cat "$work/table.md"; fi
    echo
    echo "Carts of $cart_lines lines over $spread uniform SKUs (stockbench --lines; carts/s counts"
    echo "successful carts, lines/s = lines x carts/s, latency per cart):"
    echo
    cat "$work/carts.md"
    if [ -s "$work/notes" ]; then
        echo
        sed 's/^/- /' "$work/notes"
    fi
} >"$out"
echo "cluster.sh: wrote $out"
rm -rf "$work"
