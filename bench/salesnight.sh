#!/usr/bin/env bash
# bench/salesnight.sh — the sales night (stockbench --mode salesnight) on this
# machine, written to bench/SALESNIGHT.md with its plot bench/SALESNIGHT.png.
# `tools/bench salesnight [options]` runs this.
#
#   tools/bench salesnight [--twice] [--seed N] [--skus N] [--minutes M]
#                          [--minute-ms MS] [--systems LIST] [--results FILE]
#
# Brings up the local stack (tools/stack; left running if it already was)
# for MariaDB and Redis, starts a private fake1688 and a fresh stockd (its
# own database, --supplier-* pointing at that fake, timers scaled with
# `stockbench --stockd-flags`), plays the night against every system, and
# renders the JSON into the results file. --twice plays the same seed a
# second time (fresh stockd and database) and reports which counts came out
# the same. Defaults: seed 1, 2,000 SKUs, 180 simulated minutes of 1 s each
# (about 3 minutes of wall time per system), all four systems.
#
# Binaries: $STOCKBENCH_BIN, $STOCKD_BIN, $FAKE1688_BIN, else build/ (built
# when missing). BENCH_COMMIT names the commit (default: the checkout's).
# Everything started is stopped by pid on exit; the databases are dropped
# unless BENCH_KEEP=1. Exit status: 0 the nights ran, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=/usr/bin/python3
seed=1 skus=2000 minutes=180 minute_ms=1000 twice=0
systems=naive,seed,stockd,stockd-checked
results=bench/SALESNIGHT.md
while [ $# -gt 0 ]; do
    case $1 in
        --twice) twice=1 ;;
        --seed|--skus|--minutes|--minute-ms|--systems|--results)
            [ $# -ge 2 ] || { echo "salesnight: $1 needs a value" >&2; exit 2; }
            v=$2
            case $1 in
                --seed) seed=$v ;; --skus) skus=$v ;; --minutes) minutes=$v ;;
                --minute-ms) minute_ms=$v ;; --systems) systems=$v ;; --results) results=$v ;;
            esac
            shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "salesnight: unknown argument '$1' (tools/bench salesnight --help)" >&2; exit 2 ;;
    esac
    shift
done

out=bench/out
mkdir -p "$out"
work=$(mktemp -d /tmp/stockd-salesnight.XXXXXX)
stockd_pid= fake_pid= bench_pid=
dbs=()
. bench/lib.sh

die() { echo "salesnight: $*" >&2; exit 1; }

cleanup() {
    set +e
    bench_stop_pid "$bench_pid"
    bench_stop_pid "$stockd_pid"
    bench_stop_pid "$fake_pid"
    bench_release
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_bin=${STOCKBENCH_BIN:-build/bench/stockbench}
stockd_bin=${STOCKD_BIN:-build/stockd}
fake_bin=${FAKE1688_BIN:-build/tools/fake1688/fake1688}
if [ -z "${STOCKBENCH_BIN:-}" ] || [ -z "${STOCKD_BIN:-}" ] || [ -z "${FAKE1688_BIN:-}" ]; then
    [ -d build/meson-private ] || meson setup build >/dev/null || die "meson setup failed"
    ninja -C build stockd bench/stockbench tools/fake1688/fake1688 >/dev/null ||
        die "build failed (ninja -C build)"
fi
for b in "$bench_bin" "$stockd_bin" "$fake_bin"; do [ -x "$b" ] || die "missing $b"; done

bench_stack_up

# A private fake: the night resets it before every system.
secret=sn-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
token=tok-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
"$fake_bin" --port 0 --control-port 0 --port-file "$work/fake.ports" --app-secret "$secret" \
    --access-token "$token" --quiet >"$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 50); do [ -s "$work/fake.ports" ] && break; sleep 0.1; done
read -r fake_api fake_ctl <"$work/fake.ports" || die "fake1688 did not start ($work/fake.log)"
stockd_flags=$("$bench_bin" --mode salesnight --stockd-flags --minute-ms "$minute_ms")

# start_stockd N: a fresh database and a stockd on a free port ($target, $db_url).
start_stockd() {
    local name=bench_sn_$$_$1
    bench_stop_pid "$stockd_pid"
    mariadb --no-defaults "${db_args[@]}" -e "DROP DATABASE IF EXISTS \`$name\`; CREATE DATABASE \`$name\`" ||
        die "cannot create database $name"
    dbs+=("$name")
    db_url="mysql://$db_user:$db_pass@$db_host:$db_port/$name"
    local port
    port=$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # shellcheck disable=SC2086  # the flags are words
    "$stockd_bin" --listen "127.0.0.1:$port" --db "$db_url" --node salesnight --log-level warn \
        --supplier-url "http://127.0.0.1:$fake_api" --supplier-app-key 1000000 \
        --supplier-app-secret "$secret" --supplier-token "$token" $stockd_flags \
        >"$out/salesnight-stockd-$1.log" 2>&1 &
    stockd_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        kill -0 "$stockd_pid" 2>/dev/null || die "stockd exited at start ($out/salesnight-stockd-$1.log)"
        sleep 0.1
    done
    target=127.0.0.1:$port
}

cmd=()
night() {
    local n=$1 plot=()
    [ "$n" = 1 ] && plot=(--plot "$out/salesnight.png")
    start_stockd "$n"
    cmd=(stockbench --mode salesnight --systems "$systems" --seed "$seed" --skus "$skus"
         --minutes "$minutes" --minute-ms "$minute_ms")
    echo "== night $n: ${cmd[*]}"
    # In the background and waited for, so that INT/TERM reach the trap at
    # once and cleanup stops it by pid.
    local nrc=0
    timeout -k 10 $((minutes * minute_ms / 1000 * 4 + 600)) "$bench_bin" "${cmd[@]:1}" \
        --target "$target" --db "$db_url" --fake "http://127.0.0.1:$fake_ctl" \
        --fake-app-secret "$secret" --fake-token "$token" --json "$out/salesnight-$n.json" \
        "${plot[@]}" --no-progress >"$out/salesnight-$n.txt" 2>&1 &
    bench_pid=$!
    wait "$bench_pid" || nrc=$?
    bench_pid=
    grep -v '^salesnight .*: minute ' "$out/salesnight-$n.txt" || true
    return $nrc
}

rc=0
night 1 || rc=1
jsons=("$out/salesnight-1.json")
if [ "$twice" = 1 ] && [ $rc = 0 ]; then
    night 2 || rc=1
    jsons+=("$out/salesnight-2.json")
fi
[ $rc = 0 ] || die "a night failed (see above and $out/)"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include bench tools/fake1688 2>/dev/null || commit="$commit (+ uncommitted changes)"
commit=${BENCH_COMMIT:-$commit}
stockd_line="stockd --supplier-url <fake> $stockd_flags (everything else default)"
cp "$out/salesnight.png" "${results%.md}.png"
$python bench/salesnight_report.py "$results" "$commit" "${cmd[*]}" "$stockd_line" "${jsons[@]}"
echo "salesnight: wrote $results and ${results%.md}.png"
