#!/usr/bin/env bash
# bench/ab.sh OLD_STOCKD NEW_STOCKD [ROUNDS]
#
# Two stockd binaries side by side in one sitting: for each round, each
# binary on a fresh database, stockbench's hot SKU (--skus 1) and 10,000
# uniform SKUs, 64 connections, pipeline 1, 5 s after 1 s of warm-up.
# Alternating the binaries spreads the machine's drift over both; compare
# the rounds, not one figure (this machine moves by about 10 % run to run).
#
# Needs the dev stack (tools/stack up) and a built stockbench
# ($STOCKBENCH_BIN, else build/bench/stockbench). AB_DURATION (1..60 s,
# default 5) sets the measured seconds of each run. Every stockd it starts is
# stopped by pid, every database it makes is dropped.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bench/ab.sh OLD_STOCKD NEW_STOCKD [ROUNDS (1..20, default 2)]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
old=$1 new=$2 rounds=${3:-2}
[[ $rounds =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ] || usage
for b in "$old" "$new"; do [ -x "$b" ] || { echo "bench/ab.sh: not executable: $b" >&2; exit 2; }; done
dur=${AB_DURATION:-5}
[[ $dur =~ ^[0-9]+$ ]] && [ "$dur" -ge 1 ] && [ "$dur" -le 60 ] ||
    { echo "bench/ab.sh: AB_DURATION must be 1..60 (seconds)" >&2; exit 2; }
sb=${STOCKBENCH_BIN:-build/bench/stockbench}
[ -x "$sb" ] || { echo "bench/ab.sh: no stockbench at $sb (ninja -C build)" >&2; exit 2; }

eval "$(tools/stack env)"
[[ $STOCKD_DB =~ ^mysql://([^:@]+):([^@]*)@([^:/]+):([0-9]+)/ ]] ||
    { echo "bench/ab.sh: cannot read STOCKD_DB (tools/stack up?)" >&2; exit 2; }
user=${BASH_REMATCH[1]} pw=${BASH_REMATCH[2]} host=${BASH_REMATCH[3]} port=${BASH_REMATCH[4]}
sql() { mariadb --no-defaults -h "$host" -P "$port" -u "$user" -p"$pw" --protocol=tcp -e "$1"; }

work=$(mktemp -d) pid= db=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ -n "$db" ]; then sql "DROP DATABASE IF EXISTS \`$db\`" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf '%-5s %-4s %-8s %14s %10s\n' round bin workload "reservations/s" "p99 us"
for r in $(seq "$rounds"); do
    for which in old new; do
        bin=$old; [ "$which" = new ] && bin=$new
        db=ab_${which}_$$_$r
        sql "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`"
        url=mysql://$user:$pw@$host:$port/$db
        lp=$(free_port)
        "$bin" --listen 127.0.0.1:"$lp" --db "$url" --node ab --log-level warn >"$work/$which.log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$lp") 2>/dev/null && break; sleep 0.1; done
        for mode in hot uniform; do
            skus=1; [ "$mode" = uniform ] && skus=10000
            "$sb" --mode stockd --target 127.0.0.1:"$lp" --db "$url" --no-progress --warmup 1 \
                --duration "$dur" --skus "$skus" --connections 64 --json "$work/r.json" >/dev/null
            /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["modes"]["stockd"]
print("%-5s %-4s %-8s %14.0f %10d" % (sys.argv[2], sys.argv[3], sys.argv[4],
      d.get("reservations_per_s", 0), d["latency_us"]["p99"]))' "$work/r.json" "$r" "$which" "$mode"
        done
        kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
        sql "DROP DATABASE IF EXISTS \`$db\`"; db=
    done
done
