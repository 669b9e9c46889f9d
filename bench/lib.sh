# Sourced by the bench scripts (history.sh, salesnight.sh): stopping what a
# script started, by pid; the dev stack, used as found and stopped at the
# end only when the script brought it up; MariaDB's coordinates.
#
# The caller defines die() and keeps its databases in the array `dbs`.

# bench_stop_pid PID [TENTHS]: TERM, then up to TENTHS tenths of a second
# (default 50) for it to go, then KILL.
bench_stop_pid() {
    local pid=$1 tenths=${2:-50}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# bench_stack_up: the stack the environment names (tools/stack env exports
# STOCKD_STACK_DIR), else this checkout's; brought up and its environment
# loaded. bench_stack_started=1 only when no part of it was running: a
# stack even partly up is someone else's (tests share it), and `down`
# would stop all of it. Sets db_user, db_pass, db_host, db_port and
# db_args (mariadb's connection flags) from STOCKD_DB.
bench_stack_started=0
db_args=()
bench_stack_up() {
    export STACK_DIR=${STACK_DIR:-${STOCKD_STACK_DIR:-.stack}}
    # Read whole first: grep -q on a pipe could end it early, and pipefail
    # would take that for a stopped stack.
    local status
    status=$(tools/stack status 2>/dev/null || true)
    case $status in *': running'*) ;; *) bench_stack_started=1 ;; esac
    tools/stack up >/dev/null || die "tools/stack up failed"
    eval "$(tools/stack env)"
    [[ $STOCKD_DB =~ ^mysql://([^:@]+):([^@]*)@([^:/]+):([0-9]+)/ ]] ||
        die "unexpected STOCKD_DB format: $STOCKD_DB"
    db_user=${BASH_REMATCH[1]} db_pass=${BASH_REMATCH[2]}
    db_host=${BASH_REMATCH[3]} db_port=${BASH_REMATCH[4]}
    db_args=(-h "$db_host" -P "$db_port" -u "$db_user" "-p$db_pass" --protocol=tcp)
}

# bench_release: drops the databases in `dbs` (unless BENCH_KEEP=1) and
# stops the stack if bench_stack_up started it. For the EXIT trap.
bench_release() {
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ ${#db_args[@]} -gt 0 ]; then
        for d in "${dbs[@]}"; do
            mariadb --no-defaults "${db_args[@]}" -e "DROP DATABASE IF EXISTS \`$d\`" 2>/dev/null
        done
    fi
    if [ "$bench_stack_started" = 1 ]; then tools/stack down >/dev/null; fi
}
