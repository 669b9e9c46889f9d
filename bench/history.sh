#!/usr/bin/env bash
# bench/history.sh — memory and startup against order history: what stockd
# costs when MariaDB holds many orders that have ended. Written to
# bench/HISTORY.md. `tools/bench history [options]` runs this.
#
#   tools/bench history [--skus N] [--orders N] [--traffic-s S]
#                       [--full-timeout S] [--results FILE] [--json FILE]
#
# 1. Startup. A fresh database (stockd creates the schema: started once,
#    stopped), seeded directly with SQL from MariaDB's sequence engine:
#    --skus SKU rows and --orders old final order rows (released, shipped
#    from own stock, shipped from the supplier and settled; changed 30+ days
#    ago; the SKU counters are what such orders leave: nothing reserved).
#    Then stockd is started three times and each time measured from exec to
#    "stockd ready" (and to its first ping answer), with VmRSS / VmHWM from
#    /proc and `stats` state.orders:
#      empty    the same SKUs, no orders (a second database)
#      history  the SKUs and the old orders, --order-retention-ms default
#      full     the same with --order-retention-ms 0 (every order loaded),
#               stopped after --full-timeout seconds (default 600) if not ready
# 2. Traffic. A third, empty database and a stockd with
#    --order-retention-ms 2000: stockbench makes orders and ends them
#    (--mix release=100: reserve, then release) for --traffic-s seconds
#    (default 180) after a 10 s warm-up of the same; RSS is read after the
#    warm-up's orders were evicted and again after the run's were.
#
# Defaults are the goals' sizes: --skus 1000000 (HISTORY_SKUS), --orders
# 10000000 (HISTORY_ORDERS). Seeding that takes minutes; the script prints
# how long each part took and HISTORY.md says so.
#
# The figures go to --json (default bench/out/history.json) and
# bench/history_report.py renders --results from it. The machine may be
# shared: the 1-minute load average is sampled every 5 s through the run
# and read before each start, and the report states it.
#
# Binaries: $STOCKBENCH_BIN, $STOCKD_BIN, $STOCKCTL_BIN (default: stockctl
# beside stockd), else build/ (built when missing). BENCH_COMMIT names the
# commit of the scripts, STOCKD_COMMIT the stockd binary's (default: the
# same). Everything started is stopped by pid on exit; the databases are
# dropped unless BENCH_KEEP=1. Exit status: 0 every part ran (whatever the
# figures), 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=/usr/bin/python3
skus=${HISTORY_SKUS:-1000000}
orders=${HISTORY_ORDERS:-10000000}
traffic_s=${HISTORY_TRAFFIC_S:-180}
full_timeout=${HISTORY_FULL_TIMEOUT:-600}
results=bench/HISTORY.md
out=bench/out
json=$out/history.json
while [ $# -gt 0 ]; do
    case $1 in
        --skus|--orders|--traffic-s|--full-timeout|--results|--json)
            [ $# -ge 2 ] || { echo "history: $1 needs a value" >&2; exit 2; }
            v=$2
            case $1 in
                --skus) skus=$v ;; --orders) orders=$v ;; --traffic-s) traffic_s=$v ;;
                --full-timeout) full_timeout=$v ;; --results) results=$v ;; --json) json=$v ;;
            esac
            shift ;;
        -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "history: unknown argument '$1' (tools/bench history --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in "$skus" "$orders" "$traffic_s" "$full_timeout"; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "history: '$v' is not a count" >&2; exit 2; }
done
[ "$skus" -ge 1 ] || { echo "history: --skus must be at least 1" >&2; exit 2; }
[ "$traffic_s" -ge 1 ] || { echo "history: --traffic-s must be at least 1" >&2; exit 2; }

mkdir -p "$out" "$(dirname "$results")" "$(dirname "$json")"
work=$(mktemp -d /tmp/stockd-history.XXXXXX)
stockd_pid= bench_pid= sampler_pid=
dbs=()
. bench/lib.sh

say() { printf '\n== %s\n' "$*"; }
die() { echo "history: $*" >&2; exit 1; }

# A stockd still loading millions of rows may take a while to notice.
stop_pid() { bench_stop_pid "$1" 100; }

cleanup() {
    set +e
    stop_pid "$sampler_pid"
    stop_pid "$bench_pid"
    stop_pid "$stockd_pid"
    bench_release
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_bin=${STOCKBENCH_BIN:-build/bench/stockbench}
stockd_bin=${STOCKD_BIN:-build/stockd}
ctl_bin=${STOCKCTL_BIN:-$(dirname "$stockd_bin")/stockctl}
if [ -z "${STOCKBENCH_BIN:-}" ] || [ -z "${STOCKD_BIN:-}" ]; then
    [ -d build/meson-private ] || meson setup build >/dev/null || die "meson setup failed"
    ninja -C build stockd stockctl bench/stockbench >/dev/null || die "build failed (ninja -C build)"
fi
for b in "$bench_bin" "$stockd_bin" "$ctl_bin"; do [ -x "$b" ] || die "missing $b"; done

bench_stack_up
sql() { mariadb --no-defaults "${db_args[@]}" -N -B "$@"; }


now_ms() { date +%s%3N; }
free_port() {
    $python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# ms since the epoch of a log line's ts=... (UTC, milliseconds)
log_ts_ms() {
    local line
    line=$(grep -m1 -F "msg=\"$2\"" "$1" 2>/dev/null) || { echo ""; return; }
    [[ $line =~ ts=([0-9T:.-]+)Z ]] || { echo ""; return; }
    $python -c 'import sys, datetime as d
t = d.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=d.timezone.utc)
print(round(t.timestamp() * 1000))' "${BASH_REMATCH[1]}"
}
proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || true; }
# CPU time (user + system) a process has used, in clock ticks; empty when
# it is gone. Field 2 of /proc/PID/stat is "(comm)", without spaces here.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }
clk_tck=$(getconf CLK_TCK)
load1() { cut -d' ' -f1 /proc/loadavg; }
stats_json() { "$ctl_bin" --addr "$target" --json --timeout 30000 stats; }
state_field() { $python -c 'import json, sys; print(json.load(sys.stdin)["state"][sys.argv[1]])' "$1"; }

# The stack's MariaDB, for its CPU time across each start: it is shared with
# whatever else runs on the machine, so that figure is an upper bound of
# what stockd's load cost it.
mariadb_pid=$(tools/stack pid mariadb 2>/dev/null || true)
buffer_pool_mib=$(sql -e 'SELECT @@innodb_buffer_pool_size DIV 1048576')

# The 1-, 5- and 15-minute load averages every 5 s while the script runs
# (this machine may be running other work: the report says how busy it was),
# with the state of the MariaDB server: tests on the shared stack pause it
# (SIGSTOP, state T), and a start during a pause would time the pause.
loadavg_tsv=$out/history-loadavg.tsv
: >"$loadavg_tsv"
(
    while kill -0 $$ 2>/dev/null; do
        st=$(awk '{print $3}' "/proc/$mariadb_pid/stat" 2>/dev/null || echo -)
        printf '%s\t%s\t%s\n' "$(date +%s)" "$(cut -d' ' -f1-3 /proc/loadavg)" "${st:--}" \
            >>"$loadavg_tsv"
        sleep 5
    done
) &
sampler_pid=$!

# new_db SUFFIX VAR: a fresh database hist_<pid>_SUFFIX, its name in VAR.
# Not run in $(...): the name must reach dbs (dropped on exit) in this shell.
new_db() {
    local name=hist_$$_$1
    dbs+=("$name")
    sql -e "DROP DATABASE IF EXISTS \`$name\`; CREATE DATABASE \`$name\`" ||
        die "cannot create database $name"
    printf -v "$2" '%s' "$name"
}
db_url() { echo "mysql://$db_user:$db_pass@$db_host:$db_port/$1"; }

# start_stockd DB LOG TIMEOUT_S [FLAGS...]: exec stockd and wait until it
# answers ping. Sets stockd_pid, target, t_exec, t_ping (ms), ready (1/0).
# Returns 1 when stockd exited instead (its last lines on stderr).
start_stockd() {
    local db=$1 log=$2 limit=$3
    shift 3
    local port
    port=$(free_port)
    target=127.0.0.1:$port
    ready=0 t_ping=
    t_exec=$(now_ms)
    "$stockd_bin" --listen "$target" --db "$(db_url "$db")" --node history --log-level info \
        "$@" >"$log" 2>&1 &
    stockd_pid=$!
    local deadline=$((t_exec + limit * 1000))
    while :; do
        if "$ctl_bin" --addr "$target" --timeout 1000 ping >/dev/null 2>&1; then
            t_ping=$(now_ms) ready=1
            return 0
        fi
        if ! kill -0 "$stockd_pid" 2>/dev/null; then
            tail -n 5 "$log" >&2
            wait "$stockd_pid" 2>/dev/null || true
            stockd_pid=
            return 1
        fi
        [ "$(now_ms)" -lt "$deadline" ] || return 0
        sleep 0.02
    done
}

# wait_db: until MariaDB answers a query (at most 120 s). Tests on the shared
# stack pause it for seconds at a time; a start is not measured into a pause.
wait_db() {
    local i
    for i in $(seq 24); do
        timeout 10 mariadb --no-defaults "${db_args[@]}" --connect-timeout=5 -N -B \
            -e 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 5
    done
    die "MariaDB does not answer at $db_host:$db_port"
}

# ---- 1. startup ------------------------------------------------------------------
# measure NAME DB TIMEOUT_S [FLAGS...]: one start, written to $work/NAME.tsv.
# A start whose stockd cannot reach MariaDB ("store open failed": the shared
# server paused or restarting) measured nothing; it is tried again, at most
# three times in all, and the report says how many it took.
measure() {
    local name=$1 db=$2 limit=$3
    shift 3
    local log=$out/history-stockd-$name.log
    say "start $name: stockd $* (database $db)"
    local la db0 db1 cpu attempt=0
    while :; do
        attempt=$((attempt + 1))
        wait_db
        sync
        la=$(load1)
        db0=$(proc_ticks "$mariadb_pid")
        start_stockd "$db" "$log" "$limit" "$@" && break
        grep -qF 'msg="store open failed"' "$log" && [ "$attempt" -lt 3 ] ||
            die "stockd exited at start ($log)"
        cp "$log" "$log.failed-$attempt"
        echo "history: $name: stockd could not reach MariaDB (attempt $attempt); again" >&2
    done
    cpu=$(proc_ticks "$stockd_pid")
    db1=$(proc_ticks "$mariadb_pid")
    local rss=0 hwm=0 st_orders=- st_skus=- t_ready= t_open= t_loaded= loaded=-
    if [ "$ready" = 1 ]; then
        local s
        s=$(stats_json) || die "stats failed ($log)"
        st_orders=$(state_field orders <<<"$s")
        st_skus=$(state_field skus <<<"$s")
        rss=$(proc_kb "$stockd_pid" VmRSS)
        hwm=$(proc_kb "$stockd_pid" VmHWM)
        t_ready=$(log_ts_ms "$log" "stockd ready")
        t_open=$(log_ts_ms "$log" "store: open")
        t_loaded=$(log_ts_ms "$log" "store: loaded")
        loaded=$(grep -m1 -F 'msg="store: loaded"' "$log" | sed -n 's/.* orders=\([0-9]*\).*/\1/p')
    else
        hwm=$(proc_kb "$stockd_pid" VmHWM)
        rss=$(proc_kb "$stockd_pid" VmRSS)
        echo "history: $name: not ready after $limit s; stopped" >&2
    fi
    stop_pid "$stockd_pid"
    stockd_pid=
    local flags="$*"
    local db_ticks=
    [ -z "$db0" ] || [ -z "$db1" ] || db_ticks=$((db1 - db0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$ready" \
        "$t_exec" "${t_ready:-}" "$t_ping" "${t_open:-}" "${t_loaded:-}" "$rss" "$hwm" "$st_orders" \
        "$st_skus" "${loaded:-}" "$limit" "$la" "${cpu:-}" "$db_ticks" "$attempt" "${flags:--}" \
        >"$work/$name.tsv"
    if [ "$ready" = 1 ]; then
        echo "$name: ready in $((t_ready - t_exec)) ms (ping $((t_ping - t_exec)) ms), RSS $((rss / 1024)) MiB" \
             "(peak $((hwm / 1024)) MiB), state.orders $st_orders, state.skus $st_skus, loaded $loaded," \
             "stockd CPU $((cpu * 1000 / clk_tck)) ms, load average before $la"
    fi
}

# schema DB: stockd creates the schema it loads; started once and stopped.
schema() {
    start_stockd "$1" "$out/history-stockd-schema.log" 60 && [ "$ready" = 1 ] ||
        die "stockd did not start on the empty database $1"
    stop_pid "$stockd_pid"
    stockd_pid=
}

w_sku=${#skus}
w_ord=${#orders}
chunk=${HISTORY_CHUNK:-500000}

# seed_skus DB: SKUs hs-<n>, n = 1..skus zero-padded, as sku.put leaves
# them (mapping none, epoch 1) with 100 units on hand and nothing reserved:
# the final orders below hold nothing.
seed_skus() {
    local db=$1 at a b
    at=$(now_ms)
    for ((a = 1; a <= skus; a += chunk)); do
        b=$((a + chunk - 1)); [ "$b" -le "$skus" ] || b=$skus
        sql "$db" -e "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,
            supplier_sellable,supplier_reserved,supplier_synced_at,mapping,supplier_id,offer_id,
            spec_id,sku_id,epoch,version,updated_at,supplier_cap,fingerprint)
            SELECT CONCAT('hs-', LPAD(seq, $w_sku, '0')), 100, 0, 0, 0, 0, 0, 'none', NULL, NULL,
                   NULL, NULL, 1, 0, $at, NULL, NULL FROM seq_${a}_to_${b}" ||
            die "seeding SKUs $a..$b into $db failed"
    done
}

# seed_orders DB: orders hist-<k>, one line each, in three kinds by k mod 3
# (the rows stockd itself writes for them, src/store_sql.c):
#   0 released:                   from_own = qty, nothing else set
#   1 shipped from own stock:     from_own = qty, supplier_settled 0 (as stockd writes it)
#   2 shipped from the supplier:  from_supplier = qty, upstream order, purchased_at,
#                                 supplier_settled 1
# created 40 days ago plus 50 ms per order, last changed a minute later:
# older than any retention below 30 days. Order k is on SKU 1 + (k-1)*skus
# div orders, so every SKU has its share and both keys grow with k (the
# rows go in in key order, which keeps the seeding fast).
seed_orders() {
    local db=$1 t0 a b
    t0=$(($(now_ms) - 40 * 86400000))
    for ((a = 1; a <= orders; a += chunk)); do
        b=$((a + chunk - 1)); [ "$b" -le "$orders" ] || b=$orders
        sql "$db" -e "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,
            from_supplier,available,created_at,updated_at,hold_expires_at,upstream_order_id,
            reason,purchased_at,supplier_settled)
            SELECT CONCAT('hist-', LPAD(seq, $w_ord, '0')), 0, 1,
                   CONCAT('hs-', LPAD(1 + (seq - 1) * $skus DIV $orders, $w_sku, '0')),
                   1 + seq MOD 3, IF(seq MOD 3 = 0, 'released', 'shipped'),
                   IF(seq MOD 3 = 2, 0, 1 + seq MOD 3), IF(seq MOD 3 = 2, 1 + seq MOD 3, 0),
                   100, $t0 + seq * 50, $t0 + seq * 50 + 60000, NULL,
                   IF(seq MOD 3 = 2, CONCAT('up-', seq), NULL), NULL,
                   IF(seq MOD 3 = 2, $t0 + seq * 50 + 1000, NULL), IF(seq MOD 3 = 2, 1, 0)
            FROM seq_${a}_to_${b}" || die "seeding orders $a..$b into $db failed"
        printf '\r  orders %d / %d' "$b" "$orders"
    done
    [ "$orders" -eq 0 ] || echo
}

t_suite=$SECONDS
say "databases: $skus SKUs with $orders old final orders, and $skus SKUs alone"
new_db hist db_hist
new_db empty db_empty
# The seeding needs the sequence engine (seq_1_to_N tables).
[ "$(sql "$db_hist" -e 'SELECT COUNT(*) FROM seq_1_to_3' 2>/dev/null)" = 3 ] ||
    die "MariaDB's sequence engine is not available (SELECT * FROM seq_1_to_3 fails)"
schema "$db_hist"
schema "$db_empty"
t=$SECONDS
seed_skus "$db_hist"
seed_skus "$db_empty"
seed_sku_s=$((SECONDS - t))
echo "seeded $skus SKUs twice in $seed_sku_s s"
t=$SECONDS
seed_orders "$db_hist"
seed_order_s=$((SECONDS - t))
echo "seeded $orders orders in $seed_order_s s"
sql "$db_hist" -e "ANALYZE TABLE orders, sku" >/dev/null
read -r n_skus_db n_orders_db size_mb < <(sql "$db_hist" -e "SELECT (SELECT COUNT(*) FROM sku),
    (SELECT COUNT(*) FROM orders), (SELECT ROUND(SUM(data_length + index_length) / 1048576)
    FROM information_schema.tables WHERE table_schema = DATABASE())")
echo "database $db_hist: $n_skus_db SKU rows, $n_orders_db order rows, $size_mb MiB on disk"

# MariaDB's side of the load alone: the plan and the time of the query
# stockd sends for its orders at startup. A copy of ORDER_SELECT with
# LIVE_ORDERS (src/store_load.c, src/store_internal.h): keep it in step. (On
# a history few lines are live, so stockd leaves MariaDB's plan as it is.)
live_since() {
    echo "FROM orders WHERE order_id IN (SELECT order_id FROM orders WHERE load_key>=$1)"
}
explain_load() {
    local cutoff=$(($(now_ms) - 3600000))
    sql "$db_hist" --column-names -t -e "EXPLAIN SELECT order_id,sku,qty,status,from_own,from_supplier,available,
        created_at,updated_at,hold_expires_at,upstream_order_id,reason,purchased_at,
        supplier_settled,line_no,n_lines $(live_since "$cutoff") ORDER BY order_id,line_no" \
        >"$out/history-explain.txt"
    local t=$(now_ms) n
    n=$(sql "$db_hist" -e "SELECT COUNT(*) $(live_since "$cutoff")")
    query_ms=$(($(now_ms) - t)) query_rows=$n
    echo "the load's order query alone: $n rows in $query_ms ms; plan in $out/history-explain.txt"
    cat "$out/history-explain.txt"
}

measure empty "$db_empty" 300
measure history "$db_hist" 300
measure full "$db_hist" "$full_timeout" --order-retention-ms 0
# Once more after the full load, with the table in the page cache.
measure history-again "$db_hist" 300
explain_load

# ---- 2. traffic --------------------------------------------------------------------
# wait_evicted LOG: until state.orders is 0 (or 60 s); prints the last stats.
wait_evicted() {
    local s n
    for _ in $(seq 300); do
        s=$(stats_json) || die "stats failed ($1)"
        n=$(state_field orders <<<"$s")
        [ "$n" -gt 0 ] || break
        sleep 0.2
    done
    echo "$s"
}
# traffic_run NAME SECONDS [ARGS...]: one stockbench run; returns its status.
traffic_run() {
    local name=$1 secs=$2 rc=0
    shift 2
    "$bench_bin" "${traffic_args[@]}" "$@" --duration "$secs" --json "$out/history-$name.json" \
        >"$out/history-$name.txt" 2>&1 &
    bench_pid=$!
    wait "$bench_pid" || rc=$?
    bench_pid=
    grep -E 'reservations/s|errors|requests|not run' "$out/history-$name.txt" | head -5 || true
    return "$rc"
}
# MariaDB did not answer a commit within stockd's timeout during the attempt:
# the shared server was paused or restarted by other work, and what the
# attempt measured is that, not stockd.
db_stalled() { grep -qF 'msg="store: connection down"' "$tlog"; }

# traffic_attempt N: a fresh database and stockd, the warm-up, the run.
# Sets stalled=1 when MariaDB stalled under it (the caller tries again); any
# other failure ends the script. (Called as a plain command, not in a
# condition, so that set -e still holds inside.)
traffic_attempt() {
    local n=$1 rc
    stalled=0
    new_db "traffic$n" db_traffic
    tlog=$out/history-stockd-traffic.log
    wait_db
    start_stockd "$db_traffic" "$tlog" 60 --order-retention-ms 2000 && [ "$ready" = 1 ] ||
        die "stockd did not start for the traffic ($tlog)"
    # The same 1,000 SKUs in both runs (--sku-prefix): the warm-up makes
    # them, the run (--no-setup) adds orders only. Runs with --sku-prefix are
    # not audited by stockbench; the script checks the rows itself below.
    traffic_args=(--mode stockd --target "$target" --db "$(db_url "$db_traffic")" --no-progress
                  --skus 1000 --sku-prefix hist --mix release=100 --connections 32 --pipeline 4
                  --warmup 0)
    traffic_load_before=$(load1)
    rc=0; traffic_run warmup "$warmup_s" || rc=$?
    if [ "$rc" != 0 ]; then
        if db_stalled; then stalled=1; return 0; fi
        die "stockbench (warm-up) exited with $rc ($out/history-warmup.txt)"
    fi
    s_before=$(wait_evicted "$tlog")
    rss_before=$(proc_kb "$stockd_pid" VmRSS)
    echo "after the warm-up's evictions: RSS $((rss_before / 1024)) MiB, state.orders $(state_field orders <<<"$s_before")"
    t=$SECONDS
    rc=0; traffic_run traffic "$traffic_s" --no-setup || rc=$?
    t_run=$((SECONDS - t))
    traffic_load_after=$(load1)
    if [ "$rc" != 0 ]; then
        if db_stalled; then stalled=1; return 0; fi
        die "stockbench (traffic) exited with $rc ($out/history-traffic.txt)"
    fi
    rss_peak_run=$(proc_kb "$stockd_pid" VmHWM)
    t=$SECONDS
    s_after=$(wait_evicted "$tlog")
    t_evict=$((SECONDS - t))
    rss_after=$(proc_kb "$stockd_pid" VmRSS)
    echo "after the run's evictions ($t_evict s later): RSS $((rss_after / 1024)) MiB, state.orders $(state_field orders <<<"$s_after")"
    if db_stalled; then stalled=1; return 0; fi
    # Every order the runs made is stored and ended: nothing live is left.
    read -r db_orders db_live < <(sql "$db_traffic" -e "SELECT COUNT(DISTINCT order_id),
        COALESCE(SUM(status IN ('held','confirmed','purchased')), 0) FROM orders")
    stop_pid "$stockd_pid"
    stockd_pid=
    return 0
}

say "traffic: orders made and ended through stockd --order-retention-ms 2000"
warmup_s=$((traffic_s < 10 ? traffic_s : 10))
traffic_attempts=1
while :; do
    traffic_attempt "$traffic_attempts"
    [ "$stalled" = 1 ] || break
    stop_pid "$stockd_pid"
    stockd_pid=
    cp "$tlog" "$tlog.stalled-$traffic_attempts"
    [ "$traffic_attempts" -lt 3 ] || die "MariaDB stalled under all three traffic attempts ($tlog.stalled-*)"
    echo "history: MariaDB stalled under traffic attempt $traffic_attempts (its log: $tlog.stalled-$traffic_attempts); again" >&2
    traffic_attempts=$((traffic_attempts + 1))
done
printf '%s\n' "$s_before" >"$work/stats-before.json"
printf '%s\n' "$s_after" >"$work/stats-after.json"
# The command as HISTORY.md shows it: the port and the database are the run's own.
shown_args=("${traffic_args[@]}")
for i in "${!shown_args[@]}"; do
    case ${shown_args[$i]} in
        "$target") shown_args[$i]='<stockd>' ;;
        "$(db_url "$db_traffic")") shown_args[$i]='<its database>' ;;
    esac
done
shown_args+=(--no-setup)
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$traffic_s" "$t_run" "$t_evict" "$rss_before" \
    "$rss_after" "$rss_peak_run" "$db_orders" "$db_live" "${shown_args[*]}" "$warmup_s" \
    "$traffic_load_before" "$traffic_load_after" "$traffic_attempts" >"$work/traffic.tsv"
suite_s=$((SECONDS - t_suite))
stop_pid "$sampler_pid"
sampler_pid=

# ---- report ------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include bench tools/bench 2>/dev/null || commit="$commit (+ uncommitted changes)"
commit=${BENCH_COMMIT:-$commit}
stockd_commit=${STOCKD_COMMIT:-$commit}
command="tools/bench history --skus $skus --orders $orders --traffic-s $traffic_s --full-timeout $full_timeout"
$python - "$work" "$json" "$commit" "$stockd_commit" "$skus" "$orders" "$seed_sku_s" \
    "$seed_order_s" "$n_orders_db" "$size_mb" "$suite_s" "$out" "$query_ms" "$query_rows" \
    "$clk_tck" "$buffer_pool_mib" "$loadavg_tsv" "$command" "${dbs[*]}" <<'PYEOF'
import json, os, platform, sys, time
(work, jpath, commit, stockd_commit, skus, orders, seed_sku_s, seed_order_s, n_orders_db,
 size_mb, suite_s, out, query_ms, query_rows, clk_tck, buffer_pool_mib, loadavg_tsv,
 command, databases) = sys.argv[1:20]
clk_tck = int(clk_tck)

def start(name):
    f = open(os.path.join(work, name + ".tsv")).read().rstrip("\n").split("\t")
    keys = ["name", "ready", "t_exec", "t_ready", "t_ping", "t_open", "t_loaded", "rss_kb",
            "hwm_kb", "state_orders", "state_skus", "loaded", "limit_s", "loadavg", "cpu_ticks",
            "db_ticks", "attempts", "flags"]
    r = dict(zip(keys, f))
    ms = lambda k: int(r[k]) - int(r["t_exec"]) if r.get(k) else None
    secs = lambda k: round(int(r[k]) / clk_tck, 2) if r.get(k) else None
    return {"name": name, "ready": r["ready"] == "1", "ready_ms": ms("t_ready"),
            "ping_ms": ms("t_ping"), "open_ms": ms("t_open"), "loaded_ms": ms("t_loaded"),
            "rss_kb": int(r["rss_kb"] or 0), "peak_rss_kb": int(r["hwm_kb"] or 0),
            "state_orders": None if r["state_orders"] == "-" else int(r["state_orders"]),
            "state_skus": None if r["state_skus"] == "-" else int(r["state_skus"]),
            "orders_loaded": int(r["loaded"]) if r["loaded"].isdigit() else None,
            "limit_s": int(r["limit_s"]), "loadavg": float(r["loadavg"]),
            "cpu_s": secs("cpu_ticks"), "db_cpu_s": secs("db_ticks"),
            "attempts": int(r["attempts"]),
            "flags": "" if r["flags"] == "-" else r["flags"]}

starts = [start(n) for n in ("empty", "history", "full", "history-again")]
t = open(os.path.join(work, "traffic.tsv")).read().rstrip("\n").split("\t")
before = json.load(open(os.path.join(work, "stats-before.json")))["state"]
after = json.load(open(os.path.join(work, "stats-after.json")))["state"]
runs = {n: json.load(open(os.path.join(out, f"history-{n}.json")))["modes"]["stockd"]
        for n in ("warmup", "traffic")}
# With --mix release every request is one order (reserve, then release) and
# reservations/s counts none of them: an order is a reply without an error.
made = lambda r: r["requests"] - sum(r["errors"].values())
traffic = {"seconds": int(t[0]), "wall_s": int(t[1]), "evict_wait_s": int(t[2]),
           "rss_before_kb": int(t[3]), "rss_after_kb": int(t[4]), "peak_rss_kb": int(t[5]),
           "orders_stored": int(t[6]), "orders_live_in_db": int(t[7]), "command": t[8],
           "warmup_s": int(t[9]), "loadavg_before": float(t[10]), "loadavg_after": float(t[11]),
           "attempts": int(t[12]),
           "orders_made": made(runs["traffic"]), "warmup_orders": made(runs["warmup"]),
           "orders_per_s": made(runs["traffic"]) / runs["traffic"]["elapsed_s"],
           "errors": runs["traffic"]["errors"], "state_before": before, "state_after": after}
samples = []
for line in open(loadavg_tsv):
    ts, avgs, db_state = line.rstrip("\n").split("\t")
    l1, l5, l15 = (float(x) for x in avgs.split()[:3])
    samples.append([int(ts), l1, l5, l15, db_state])
l1s = [x[1] for x in samples] or [0.0]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo")
            if l.startswith("MemTotal")), 0)
doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit,
       "stockd_commit": stockd_commit, "command": command, "skus": int(skus),
       "orders": int(orders), "orders_in_db": int(n_orders_db), "db_mib": int(size_mb),
       "seed_skus_s": int(seed_sku_s), "seed_orders_s": int(seed_order_s),
       "databases": databases.split(), "dropped": os.environ.get("BENCH_KEEP", "0") != "1",
       "suite_s": int(suite_s), "load_query_ms": int(query_ms), "load_query_rows": int(query_rows),
       "load_query_plan": open(os.path.join(out, "history-explain.txt")).read().rstrip("\n"),
       "machine": {"node": platform.node(), "cores": os.cpu_count(), "cpu": cpu, "mem_mib": mem,
                   "kernel": platform.release(), "buffer_pool_mib": int(buffer_pool_mib)},
       "loadavg": {"interval_s": 5, "samples": samples, "min": min(l1s), "max": max(l1s),
                   "mean": round(sum(l1s) / len(l1s), 2),
                   "db_paused_samples": sum(1 for x in samples if x[4] == "T")},
       "starts": {s["name"]: s for s in starts}, "traffic": traffic}
json.dump(doc, open(jpath, "w"), indent=2)
PYEOF
$python bench/history_report.py "$json" "$results" || die "bench/history_report.py failed on $json"
