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
        -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
stack_started=0 stockd_pid= bench_pid=
dbs=()
db_args=()

say() { printf '\n== %s\n' "$*"; }
die() { echo "history: $*" >&2; exit 1; }

stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    # A stockd still loading millions of rows may take a while to notice.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    stop_pid "$bench_pid"
    stop_pid "$stockd_pid"
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ ${#db_args[@]} -gt 0 ]; then
        for d in "${dbs[@]}"; do
            mariadb --no-defaults "${db_args[@]}" -e "DROP DATABASE IF EXISTS \`$d\`" 2>/dev/null
        done
    fi
    rm -rf "$work"
    if [ "$stack_started" = 1 ]; then tools/stack down >/dev/null; fi
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

# The stack the environment names (tools/stack env exports STOCKD_STACK_DIR),
# else this checkout's.
export STACK_DIR=${STACK_DIR:-${STOCKD_STACK_DIR:-.stack}}
# Stopped at the end only if nothing of it ran before: a stack that is even
# partly up is someone else's (tests share it), and `down` would stop all.
# (The status is read whole first: grep -q on a pipe could end it early and
# pipefail would take that for a stopped stack.)
stack_status=$(tools/stack status 2>/dev/null || true)
case $stack_status in *': running'*) ;; *) stack_started=1 ;; esac
tools/stack up >/dev/null || die "tools/stack up failed"
eval "$(tools/stack env)"
[[ $STOCKD_DB =~ ^mysql://([^:@]+):([^@]*)@([^:/]+):([0-9]+)/ ]] ||
    die "unexpected STOCKD_DB format: $STOCKD_DB"
db_user=${BASH_REMATCH[1]} db_pass=${BASH_REMATCH[2]} db_host=${BASH_REMATCH[3]} db_port=${BASH_REMATCH[4]}
db_args=(-h "$db_host" -P "$db_port" -u "$db_user" "-p$db_pass" --protocol=tcp)
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
stats_json() { "$ctl_bin" --addr "$target" --json --timeout 30000 stats; }
state_field() { $python -c 'import json, sys; print(json.load(sys.stdin)["state"][sys.argv[1]])' "$1"; }

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
        kill -0 "$stockd_pid" 2>/dev/null || { tail -n 5 "$log" >&2; die "stockd exited at start ($log)"; }
        [ "$(now_ms)" -lt "$deadline" ] || return 0
        sleep 0.02
    done
}

# ---- 1. startup ------------------------------------------------------------------
# measure NAME DB TIMEOUT_S [FLAGS...]: one start, written to $work/NAME.tsv.
measure() {
    local name=$1 db=$2 limit=$3
    shift 3
    local log=$out/history-stockd-$name.log
    say "start $name: stockd $* (database $db)"
    sync
    start_stockd "$db" "$log" "$limit" "$@"
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$ready" "$t_exec" \
        "${t_ready:-}" "$t_ping" "${t_open:-}" "${t_loaded:-}" "$rss" "$hwm" "$st_orders" \
        "$st_skus" "${loaded:-}" "$limit" "${flags:--}" >"$work/$name.tsv"
    if [ "$ready" = 1 ]; then
        echo "$name: ready in $((t_ready - t_exec)) ms (ping $((t_ping - t_exec)) ms), RSS $((rss / 1024)) MiB" \
             "(peak $((hwm / 1024)) MiB), state.orders $st_orders, state.skus $st_skus, loaded $loaded"
    fi
}

# schema DB: stockd creates the schema it loads; started once and stopped.
schema() {
    start_stockd "$1" "$out/history-stockd-schema.log" 60
    [ "$ready" = 1 ] || die "stockd did not start on the empty database $1"
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
# ORDERS_LIVE_SINCE (src/store_load.c, src/store_internal.h): keep it in step.
live_since() {
    echo "FROM orders WHERE order_id IN (SELECT order_id FROM orders WHERE updated_at>=$1
        OR status IN ('held','confirmed') OR (status='purchased' AND from_own>0)
        OR (status IN ('purchased','shipped') AND from_supplier>0 AND supplier_settled=0))"
}
explain_load() {
    local cutoff=$(($(now_ms) - 3600000))
    sql "$db_hist" --column-names -t -e "EXPLAIN SELECT order_id,sku,qty,status,from_own,from_supplier,available,
        created_at,updated_at,hold_expires_at,upstream_order_id,reason,purchased_at,
        supplier_settled,line_no,n_lines $(live_since "$cutoff") ORDER BY order_id,line_no" \
        >"$out/history-explain.txt"
    local t=$(now_ms) n
    n=$(sql "$db_hist" -e "SELECT COUNT(*) $(live_since "$cutoff")")
    query_ms=$(($(now_ms) - t))
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
say "traffic: orders made and ended through stockd --order-retention-ms 2000"
new_db traffic db_traffic
tlog=$out/history-stockd-traffic.log
start_stockd "$db_traffic" "$tlog" 60 --order-retention-ms 2000
[ "$ready" = 1 ] || die "stockd did not start for the traffic ($tlog)"

# wait_evicted: until state.orders is 0 (or 60 s); prints the last stats.
wait_evicted() {
    local s n
    for _ in $(seq 300); do
        s=$(stats_json) || die "stats failed ($tlog)"
        n=$(state_field orders <<<"$s")
        [ "$n" -gt 0 ] || break
        sleep 0.2
    done
    echo "$s"
}
# The same 1,000 SKUs in both runs (--sku-prefix): they are made once, so
# the second run adds orders only. Runs with --sku-prefix are not audited
# by stockbench; the script checks the rows itself below.
traffic_args=(--mode stockd --target "$target" --db "$(db_url "$db_traffic")" --no-progress
              --skus 1000 --sku-prefix hist --mix release=100 --connections 32 --pipeline 4
              --warmup 0)
traffic_run() {
    local name=$1 secs=$2 rc=0
    "$bench_bin" "${traffic_args[@]}" --duration "$secs" --json "$out/history-$name.json" \
        >"$out/history-$name.txt" 2>&1 &
    bench_pid=$!
    wait "$bench_pid" || rc=$?
    bench_pid=
    grep -E 'reservations/s|errors|requests' "$out/history-$name.txt" | head -5 || true
    [ "$rc" = 0 ] || die "stockbench ($name) exited with $rc ($out/history-$name.txt)"
}
warmup_s=$((traffic_s < 10 ? traffic_s : 10))
traffic_run warmup "$warmup_s"
s_before=$(wait_evicted)
rss_before=$(proc_kb "$stockd_pid" VmRSS)
echo "after the warm-up's evictions: RSS $((rss_before / 1024)) MiB, state.orders $(state_field orders <<<"$s_before")"
t=$SECONDS
traffic_run traffic "$traffic_s"
t_run=$((SECONDS - t))
rss_peak_run=$(proc_kb "$stockd_pid" VmHWM)
t=$SECONDS
s_after=$(wait_evicted)
t_evict=$((SECONDS - t))
rss_after=$(proc_kb "$stockd_pid" VmRSS)
echo "after the run's evictions ($t_evict s later): RSS $((rss_after / 1024)) MiB, state.orders $(state_field orders <<<"$s_after")"
# Every order the runs made is stored and ended: nothing live is left.
read -r db_orders db_live < <(sql "$db_traffic" -e "SELECT COUNT(DISTINCT order_id),
    COALESCE(SUM(status IN ('held','confirmed','purchased')), 0) FROM orders")
stop_pid "$stockd_pid"
stockd_pid=
printf '%s\n' "$s_before" >"$work/stats-before.json"
printf '%s\n' "$s_after" >"$work/stats-after.json"
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$traffic_s" "$t_run" "$t_evict" "$rss_before" \
    "$rss_after" "$rss_peak_run" "$db_orders" "$db_live" "${traffic_args[*]}" "$warmup_s" >"$work/traffic.tsv"
suite_s=$((SECONDS - t_suite))

# ---- report ------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include bench tools/bench 2>/dev/null || commit="$commit (+ uncommitted changes)"
commit=${BENCH_COMMIT:-$commit}
stockd_commit=${STOCKD_COMMIT:-$commit}
$python - "$work" "$json" "$results" "$commit" "$stockd_commit" "$skus" "$orders" "$seed_sku_s" \
    "$seed_order_s" "$n_orders_db" "$size_mb" "$suite_s" "$out" "$query_ms" <<'PYEOF'
import json, os, platform, sys, time
(work, jpath, results, commit, stockd_commit, skus, orders, seed_sku_s, seed_order_s, n_orders_db,
 size_mb, suite_s, out, query_ms) = sys.argv[1:15]
skus, orders, n_orders_db = int(skus), int(orders), int(n_orders_db)
GOAL_SKUS, GOAL_ORDERS = 1000000, 10000000

def start(name):
    f = open(os.path.join(work, name + ".tsv")).read().rstrip("\n").split("\t")
    keys = ["name", "ready", "t_exec", "t_ready", "t_ping", "t_open", "t_loaded", "rss_kb",
            "hwm_kb", "state_orders", "state_skus", "loaded", "limit_s", "flags"]
    r = dict(zip(keys, f))
    ms = lambda k: int(r[k]) - int(r["t_exec"]) if r.get(k) else None
    return {"name": name, "ready": r["ready"] == "1", "ready_ms": ms("t_ready"),
            "ping_ms": ms("t_ping"), "open_ms": ms("t_open"), "loaded_ms": ms("t_loaded"),
            "rss_kb": int(r["rss_kb"] or 0), "peak_rss_kb": int(r["hwm_kb"] or 0),
            "state_orders": None if r["state_orders"] == "-" else int(r["state_orders"]),
            "state_skus": None if r["state_skus"] == "-" else int(r["state_skus"]),
            "orders_loaded": int(r["loaded"]) if r["loaded"].isdigit() else None,
            "limit_s": int(r["limit_s"]), "flags": "" if r["flags"] == "-" else r["flags"]}

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
           "warmup_s": int(t[9]),
           "orders_made": made(runs["traffic"]), "warmup_orders": made(runs["warmup"]),
           "orders_per_s": made(runs["traffic"]) / runs["traffic"]["elapsed_s"],
           "errors": runs["traffic"]["errors"], "state_before": before, "state_after": after}
doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit,
       "stockd_commit": stockd_commit, "skus": skus, "orders": orders,
       "orders_in_db": n_orders_db, "db_mib": int(size_mb), "seed_skus_s": int(seed_sku_s),
       "seed_orders_s": int(seed_order_s), "suite_s": int(suite_s),
       "load_query_ms": int(query_ms),
       "starts": {s["name"]: s for s in starts}, "traffic": traffic}
json.dump(doc, open(jpath, "w"), indent=2)

S = doc["starts"]
mib = lambda kb: kb / 1024.0
sec = lambda ms: "not ready" if ms is None else f"{ms / 1000:.2f} s"
at_goal = skus >= GOAL_SKUS and orders >= GOAL_ORDERS
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo")
            if l.startswith("MemTotal")), 0)
L = ["# Order history: memory and startup\n",
     "Written by `tools/bench history` (`bench/history.sh`) from real runs; rerun it to refresh.\n",
     f"- date: {doc['date']}",
     f"- commit: {commit} (scripts); stockd binary: {stockd_commit}",
     f"- machine: {platform.node()}, {os.cpu_count()} cores ({cpu}), {mem} MiB RAM, "
     f"Linux {platform.release()}",
     "- stack: MariaDB from `tools/stack` on the same machine (innodb_buffer_pool_size 512 MiB), "
     "stockd and stockbench on it too",
     f"- sizes: {skus:,} SKUs, {orders:,} old final orders"
     + ("" if at_goal else f" (the goals name {GOAL_SKUS:,} and {GOAL_ORDERS:,}: "
        "these are smaller, so the goals are not judged)"),
     f"- seeding: SKUs (twice) {seed_sku_s} s, orders {seed_order_s} s; "
     f"the history database holds {n_orders_db:,} order rows, {size_mb} MiB of data and indexes; "
     f"the whole run took {suite_s} s\n"]

def status(ok):
    return "met" if ok else "missed"

h, e, f = S["history"], S["empty"], S["full"]
d_start = mib(h["rss_kb"] - e["rss_kb"])
d_traffic = mib(traffic["rss_after_kb"] - traffic["rss_before_kb"])
L += ["## Goals\n",
      "| goal | measured | status |", "|---|---|---|"]
g1 = (f"restart: stockd on {orders:,} old final orders + {skus:,} SKUs uses {mib(h['rss_kb']):,.0f} MiB, "
      f"on the same SKUs and no orders {mib(e['rss_kb']):,.0f} MiB: **{d_start:+,.1f} MiB**; "
      f"traffic: {traffic['orders_made']:,} orders made and ended through one stockd moved its RSS "
      f"**{d_traffic:+,.1f} MiB**")
ok1 = h["ready"] and abs(d_start) <= 64 and d_traffic <= 64
g2 = (f"{sec(h['ready_ms'])} (again, warm page cache: {sec(S['history-again']['ready_ms'])}); "
      f"loading every order instead (`--order-retention-ms 0`): {sec(f['ready_ms'])}")
ok2 = h["ready"] and h["ready_ms"] < 5000 and S["history-again"]["ready_ms"] is not None \
    and S["history-again"]["ready_ms"] < 5000
judge = (lambda ok: status(ok)) if at_goal else (lambda ok: "not judged (smaller sizes)")
L.append(f"| RSS after 10 M final orders within 64 MiB of RSS after none | {g1} | {judge(ok1)} |")
L.append(f"| time to ready with 1 M SKUs and 10 M old orders under 5 s | {g2} | {judge(ok2)} |")
if at_goal and traffic["orders_made"] < GOAL_ORDERS:
    L.append(f"\nThe traffic part made {traffic['orders_made']:,} orders, not 10 M (it is bounded "
             f"by time, {traffic['seconds']} s); the restart part is the one with 10 M.")

L += ["\n## Startup\n",
      "Time from exec to the log line `stockd ready` (the ping column: to the first `ping` "
      "answer, polled every 20 ms); RSS (VmRSS) and peak RSS (VmHWM) read from /proc once it "
      "answers; `stats` state.orders and state.skus at that moment; orders loaded as the log's "
      "`store: loaded` counts them; load = exec to `store: loaded` (connect, schema check, SKUs, "
      "orders), the rest is the Bloom filter's scan of the SKU names and the listeners.\n",
      "| start | SKUs | orders in MariaDB | stockd flags | time to ready | to ping | load | RSS MiB | peak RSS MiB | state.orders | state.skus | orders loaded |",
      "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
desc = {"empty": ("no orders", 0), "history": ("old orders", n_orders_db),
        "full": ("old orders, every one loaded", n_orders_db),
        "history-again": ("old orders, second start", n_orders_db)}
for s in starts:
    what, n = desc[s["name"]]
    flags = f"`{s['flags']}`" if s["flags"] else "defaults (retention 1 h)"
    if not s["ready"]:
        L.append(f"| {what} | {skus:,} | {n:,} | {flags} | not ready after {s['limit_s']} s "
                 f"(stopped) | - | - | {mib(s['rss_kb']):,.0f} at the stop | "
                 f"{mib(s['peak_rss_kb']):,.0f} | - | - | - |")
        continue
    L.append(f"| {what} | {skus:,} | {n:,} | {flags} | {sec(s['ready_ms'])} | {sec(s['ping_ms'])} | "
             f"{sec(s['loaded_ms'])} | {mib(s['rss_kb']):,.1f} | {mib(s['peak_rss_kb']):,.1f} | "
             f"{s['state_orders']:,} | {s['state_skus']:,} | {s['orders_loaded']:,} |")

plan = open(os.path.join(out, "history-explain.txt")).read().rstrip("\n")
L += ["", f"MariaDB's part: the query stockd sends for its orders at startup (with the default "
      f"retention's cutoff, counted instead of fetched), run alone after the starts, took "
      f"{doc['load_query_ms'] / 1000:.2f} s. Its plan:\n", "```", plan, "```"]

tb, ta = traffic["state_before"], traffic["state_after"]
errs = ", ".join(f"{k}={v:,}" for k, v in traffic["errors"].items()) or "none"
L += ["\n## Orders made and ended through stockd\n",
      "One stockd on an empty database with `--order-retention-ms 2000`; stockbench makes orders "
      "and ends them at once (`--mix release=100`: `reserve`, then `release`) on the same 1,000 "
      "SKUs (`--sku-prefix`, made by the first run). A warm-up run first; RSS is read when "
      "its orders have left memory (state.orders 0), then the measured run, then RSS again when "
      "its orders have left too.\n",
      "| | orders made | state.orders | orders_evicted | orders_reloaded | order_reads | RSS MiB |",
      "|---|---:|---:|---:|---:|---:|---:|",
      f"| after the warm-up | {traffic['warmup_orders']:,} | {tb['orders']:,} | {tb['orders_evicted']:,} | "
      f"{tb['orders_reloaded']:,} | {tb['order_reads']:,} | {mib(traffic['rss_before_kb']):,.1f} |",
      f"| after the run | {traffic['orders_made']:,} more | {ta['orders']:,} | {ta['orders_evicted']:,} | "
      f"{ta['orders_reloaded']:,} | {ta['order_reads']:,} | {mib(traffic['rss_after_kb']):,.1f} |",
      "",
      f"- run: {traffic['seconds']} s, {traffic['orders_per_s']:,.0f} orders/s (each a reserve and a "
      f"release), errors: {errs}; the evictions caught up {traffic['evict_wait_s']} s after it ended",
      f"- RSS moved {d_traffic:+,.1f} MiB over {traffic['orders_made']:,} orders"
      + (f" ({d_traffic * 1024 * 1024 / traffic['orders_made']:+,.1f} bytes per order)"
         if traffic["orders_made"] else "")
      + f"; peak RSS during the run {mib(traffic['peak_rss_kb']):,.1f} MiB",
      f"- MariaDB afterwards: {traffic['orders_stored']:,} orders stored, "
      f"{traffic['orders_live_in_db']:,} of them live (held, confirmed or purchased)",
      f"- command: `stockbench {traffic['command']} --duration {traffic['seconds']}` "
      f"(the warm-up: the same with `--duration {traffic['warmup_s']}`)"]

L += ["\n## How\n",
      "- The databases are fresh ones on the stack's MariaDB. stockd creates the schema (started "
      "once, stopped); the rows are then written with SQL, `INSERT ... SELECT` from MariaDB's "
      "sequence engine (`seq_A_to_B`), in chunks of 500,000 rows, each chunk one transaction.",
      f"- SKUs `hs-<n>` as `sku.put` leaves them (mapping none, epoch 1), 100 units on hand, "
      "nothing reserved. Orders `hist-<k>`, one line each, the columns stockd writes "
      "(`src/store_sql.c`), a third each: released; shipped from own stock; shipped from the "
      "supplier with its purchase settled (`supplier_settled` 1). Created 40 days ago, last "
      "changed a minute after: none holds stock, so the SKU counters need no change and "
      "stockd's load audit passes them; no ledger rows (the load does not read them). Order k "
      "is on SKU 1 + (k-1) x SKUs / orders (every SKU has its share, keys in insertion order).",
      "- Each start is a fresh stockd process on the seeded database (`--log-level info` for the "
      "log's times, everything else default unless the table says otherwise; Redis from the stack). "
      "The times include MariaDB's own work: with a retention, the load asks for the orders "
      "changed within it or still live, and `orders` has no index on `updated_at`, so MariaDB "
      "reads the whole table to answer.",
      "- `--order-retention-ms 0` is stockd as it was before: every order is loaded.",
      "- RSS is VmRSS of the stockd process; the 64 MiB goal is read two ways: a restart on the "
      "history against one on the same SKUs without it, and one process before and after it "
      "made and ended orders itself.",
      "\nCommand: `tools/bench history" + ("" if at_goal else f" --skus {skus} --orders {orders}")
      + (f" --traffic-s {traffic['seconds']}" if traffic["seconds"] != 180 else "") + "`; every "
      "stockd log and stockbench report of the run: `bench/out/history-*`."]
open(results, "w").write("\n".join(L) + "\n")
print(f"history: wrote {results} and {jpath}")
PYEOF
