#!/usr/bin/env python3
"""Renders bench/HISTORY.md from the JSON bench/history.sh writes.

    /usr/bin/python3 bench/history_report.py HISTORY.json HISTORY.md

Apart from the script so that a run's figures can be written again (a
change of wording, a note) without seeding and measuring again.
"""
import json
import os
import subprocess
import sys

GOAL_SKUS, GOAL_ORDERS = 1000000, 10000000
GOAL_RSS_MIB, GOAL_READY_MS = 64, 5000

if len(sys.argv) != 3:
    sys.exit("usage: history_report.py HISTORY.json HISTORY.md")
jpath, results = sys.argv[1:3]
doc = json.load(open(jpath))
M, LA = doc["machine"], doc["loadavg"]
skus, orders, n_orders_db = doc["skus"], doc["orders"], doc["orders_in_db"]
S = doc["starts"]
names = ("empty", "history", "full", "history-again")
traffic = doc["traffic"]
h, e, f, h2 = S["history"], S["empty"], S["full"], S["history-again"]


def mib(kb):
    return kb / 1024.0


def sec(ms):
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def opt(v, fmt):
    return "-" if v is None else fmt.format(v)


at_goal = skus >= GOAL_SKUS and orders >= GOAL_ORDERS
# Rendered again later (a change of wording): say by which commit, since the
# commit line names the one that measured.
try:
    rendered = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                              timeout=10).stdout.strip()
except (OSError, subprocess.SubprocessError):
    rendered = ""
cores = M["cores"]
busy = LA["max"] > cores
L = ["# Order history: memory and startup\n",
     "Written by `tools/bench history` (`bench/history.sh`, rendered by "
     "`bench/history_report.py`) from one real run; rerun it to refresh.\n",
     f"- date: {doc['date']}",
     f"- commit: {doc['commit']} (scripts); stockd binary built from: {doc['stockd_commit']}"
     + (f"; this text rendered again from the run's JSON at {rendered}"
        if rendered and not doc["commit"].startswith(rendered) else ""),
     f"- machine: {M['node']}, {cores} cores (nproc; {M['cpu']}), {M['mem_mib']:,} MiB RAM, "
     f"Linux {M['kernel']}",
     f"- stack: MariaDB from `tools/stack` on the same machine (innodb_buffer_pool_size "
     f"{M['buffer_pool_mib']:,} MiB), shared with other work; stockd and stockbench on it too",
     f"- machine load: the 1-minute load average, sampled every {LA['interval_s']} s through the "
     f"run ({len(LA['samples'])} samples), was {LA['min']:.2f} at least, {LA['mean']:.2f} on "
     f"average and {LA['max']:.2f} at most"
     + (f"; above {cores} (the cores) other work was waiting for CPU, so the times below are "
        "longer than on an idle machine" if busy else "")
     + "; each start's own figure is in the tables"
     + (f"; the stack's MariaDB was paused (stopped by a signal, as other tests on the shared "
        f"stack do) in {LA['db_paused_samples']} of the samples" if LA["db_paused_samples"]
        else "; the stack's MariaDB was not seen paused"),
     f"- sizes: {skus:,} SKUs, {orders:,} old final orders"
     + ("" if at_goal else f" (the goals name {GOAL_SKUS:,} and {GOAL_ORDERS:,}: "
        "these are smaller, so the goals are not judged)"),
     f"- seeding: SKUs (twice) {doc['seed_skus_s']} s, orders {doc['seed_orders_s']} s; "
     f"the history database holds {n_orders_db:,} order rows, {doc['db_mib']:,} MiB of data "
     f"and indexes; the whole run took {doc['suite_s']} s",
     f"- command: `{doc['command']}`\n"]

d_start = mib(h["rss_kb"] - e["rss_kb"])
d_traffic = mib(traffic["rss_after_kb"] - traffic["rss_before_kb"])
ok1 = e["ready"] and h["ready"] and abs(d_start) <= GOAL_RSS_MIB and d_traffic <= GOAL_RSS_MIB
g1 = (f"restart: stockd on {n_orders_db:,} old final orders + {skus:,} SKUs uses "
      f"{mib(h['rss_kb']):,.1f} MiB, on the same SKUs and no orders {mib(e['rss_kb']):,.1f} MiB: "
      f"**{d_start:+,.1f} MiB**; traffic: {traffic['orders_made']:,} orders made and ended "
      f"through one stockd moved its RSS **{d_traffic:+,.1f} MiB**")
ok2 = all(s["ready"] and s["ready_ms"] is not None and s["ready_ms"] < GOAL_READY_MS
          for s in (h, h2))
g2 = (f"**{sec(h['ready_ms'])}**, a second start **{sec(h2['ready_ms'])}** (load average "
      f"{h['loadavg']:.2f} and {h2['loadavg']:.2f} before them); loading every order instead "
      f"(`--order-retention-ms 0`): "
      + (sec(f["ready_ms"]) if f["ready"] else f"not ready after {f['limit_s']} s"))


def judge(ok):
    if not at_goal:
        return "not judged (smaller sizes)"
    return "**met**" if ok else "**missed**"


L += ["## Goals\n", "| goal | measured | status |", "|---|---|---|",
      f"| RSS with 10 M final orders in MariaDB within {GOAL_RSS_MIB} MiB of RSS with none | "
      f"{g1} | {judge(ok1)} |",
      f"| exec to ready with 1 M SKUs and 10 M old orders under {GOAL_READY_MS / 1000:.0f} s | "
      f"{g2} | {judge(ok2)} |"]
if traffic["orders_made"] < orders:
    L.append(f"\nThe traffic part made {traffic['orders_made']:,} orders, not {orders:,} (it is "
             f"bounded by time, {traffic['seconds']} s); the restart is the part with all "
             f"{n_orders_db:,}.")

# Where the history start's time went: each step from the log's times, the
# SKUs' share from the start without orders, MariaDB's from the query alone.
if h["ready"] and None not in (h["open_ms"], h["loaded_ms"], e["open_ms"], e["loaded_ms"]):
    open_ms = h["open_ms"]
    load_ms = h["loaded_ms"] - h["open_ms"]
    sku_ms = e["loaded_ms"] - e["open_ms"]
    rest_ms = h["ready_ms"] - h["loaded_ms"]
    steps = {"connecting and the schema check (exec to `store: open`)": open_ms,
             "loading SKUs and orders (`store: open` to `store: loaded`)": load_ms,
             "after the load (`store: loaded` to `stockd ready`: the Bloom filter over the "
             "SKU names, the listeners)": rest_ms}
    big = max(steps, key=steps.get)
    L += ["\n### Where the start's time goes\n",
          f"The start on the history (defaults) took {sec(h['ready_ms'])} to ready: "
          + "; ".join(f"{k} {sec(v)}" for k, v in steps.items()) + ". "
          f"The largest step is {big.split(' (')[0]}. "
          f"The start on the same SKUs without orders spent {sec(sku_ms)} loading, so the "
          f"{n_orders_db:,} old orders added about {sec(load_ms - sku_ms)} to the load. "
          f"MariaDB's order query alone (run after the starts, counted instead of fetched) "
          f"took {sec(doc['load_query_ms'])} for {doc['load_query_rows']:,} rows. "
          f"stockd itself used {opt(h['cpu_s'], '{:.2f}')} s of CPU until it answered and "
          f"MariaDB {opt(h['db_cpu_s'], '{:.2f}')} s (its whole server, which other work shares); "
          "the rest of the wall time stockd waited."]
    if h["db_cpu_s"] is not None and h["cpu_s"] is not None and h["ready_ms"]:
        wall = h["ready_ms"] / 1000
        if h["db_cpu_s"] > 0.5 * wall and h["db_cpu_s"] > 2 * h["cpu_s"]:
            L[-1] += (f" MariaDB was on a core for {h['db_cpu_s'] / wall:.0%} of the start's "
                      f"wall time and stockd for {h['cpu_s'] / wall:.0%}: the start waits "
                      "for MariaDB to scan `orders` (the plan below reads the whole primary "
                      f"key; the query alone took {sec(doc['load_query_ms'])}; the load average "
                      f"was {h['loadavg']:.2f} before this start, on {cores} cores).")

L += ["\n## Startup\n",
      "Each start is a fresh stockd process. Times from exec: to the log lines `store: open` "
      "(connected, schema checked), `store: loaded` (SKUs and orders read) and `stockd ready`, "
      "and to the first `ping` answer (polled every 20 ms). CPU: the user + system time of "
      "stockd until it answered, and of the stack's MariaDB server over the same span (shared: "
      "an upper bound of what the start cost it). Load avg: the 1-minute load average just "
      "before the exec.\n",
      "| start | SKUs | orders in MariaDB | stockd flags | to open | to loaded | to ready | "
      "to ping | stockd CPU | MariaDB CPU | load avg |",
      "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
desc = {"empty": ("no orders", 0), "history": ("old orders", n_orders_db),
        "full": ("old orders, every one loaded", n_orders_db),
        "history-again": ("old orders, second start", n_orders_db)}
for n in names:
    s = S[n]
    what, k = desc[n]
    flags = f"`{s['flags']}`" if s["flags"] else "defaults (retention 1 h)"
    ready = sec(s["ready_ms"]) if s["ready"] else f"not ready after {s['limit_s']} s (stopped)"
    L.append(f"| {what} | {skus:,} | {k:,} | {flags} | {sec(s['open_ms'])} | "
             f"{sec(s['loaded_ms'])} | {ready} | {sec(s['ping_ms'])} | "
             f"{opt(s['cpu_s'], '{:.2f} s')} | {opt(s['db_cpu_s'], '{:.2f} s')} | "
             f"{s['loadavg']:.2f} |")
retried = [f"{desc[n][0]} ({S[n]['attempts']} attempts)" for n in names if S[n]["attempts"] > 1]
if retried:
    L += ["", "Started again because stockd could not reach MariaDB (the shared server paused or "
          "restarting; the failed start measured nothing): " + ", ".join(retried) + "."]
L += ["", "Memory once it answered (at the stop, for a start that never did): VmRSS and VmHWM "
      "from /proc; `stats` state.orders and state.skus; the orders the log's `store: loaded` "
      "counts.\n",
      "| start | RSS MiB | peak RSS MiB | state.orders | state.skus | orders loaded |",
      "|---|---:|---:|---:|---:|---:|"]
for n in names:
    s = S[n]
    L.append(f"| {desc[n][0]} | {mib(s['rss_kb']):,.1f} | {mib(s['peak_rss_kb']):,.1f} | "
             f"{opt(s['state_orders'], '{:,}')} | {opt(s['state_skus'], '{:,}')} | "
             f"{opt(s['orders_loaded'], '{:,}')} |")

L += ["", "MariaDB's part: the query stockd sends for its orders at startup, with the default "
      f"retention's cutoff, counted instead of fetched and run alone after the starts, took "
      f"{sec(doc['load_query_ms'])} ({doc['load_query_rows']:,} rows). Its plan:\n",
      "```", doc["load_query_plan"], "```"]

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
      f"| after the warm-up | {traffic['warmup_orders']:,} | {tb['orders']:,} | "
      f"{tb['orders_evicted']:,} | {tb['orders_reloaded']:,} | {tb['order_reads']:,} | "
      f"{mib(traffic['rss_before_kb']):,.1f} |",
      f"| after the run | {traffic['orders_made']:,} more | {ta['orders']:,} | "
      f"{ta['orders_evicted']:,} | {ta['orders_reloaded']:,} | {ta['order_reads']:,} | "
      f"{mib(traffic['rss_after_kb']):,.1f} |",
      "",
      f"- run: {traffic['seconds']} s, {traffic['orders_per_s']:,.0f} orders/s (each a reserve "
      f"and a release), errors: {errs}; the evictions caught up {traffic['evict_wait_s']} s "
      f"after it ended; load average {traffic['loadavg_before']:.2f} before the warm-up, "
      f"{traffic['loadavg_after']:.2f} at the end of the run",
      f"- RSS moved {d_traffic:+,.1f} MiB over {traffic['orders_made']:,} orders"
      + (f" ({d_traffic * 1024 * 1024 / traffic['orders_made']:+,.1f} bytes per order)"
         if traffic["orders_made"] else "")
      + f"; peak RSS of the process {mib(traffic['peak_rss_kb']):,.1f} MiB",
      f"- MariaDB afterwards: {traffic['orders_stored']:,} orders stored, "
      f"{traffic['orders_live_in_db']:,} of them live (held, confirmed or purchased)",
      f"- command: `stockbench {traffic['command']} --duration {traffic['seconds']}` "
      f"(the warm-up: the same without `--no-setup`, so that it makes the SKUs, and with "
      f"`--duration {traffic['warmup_s']}`)"
      + (f"; attempt {traffic['attempts']}: MariaDB stalled (stockd's commits timed out) under "
         "the earlier ones, which were set aside" if traffic["attempts"] > 1 else "")]

L += ["\n## How\n",
      "- The databases are fresh ones on the stack's MariaDB, dropped after the run. stockd "
      "creates the schema (started once, stopped); the rows are then written with SQL, "
      "`INSERT ... SELECT` from MariaDB's sequence engine (`seq_A_to_B`), in chunks of 500,000 "
      "rows, each chunk one transaction.",
      "- SKUs `hs-<n>` as `sku.put` leaves them (mapping none, epoch 1), 100 units on hand, "
      "nothing reserved. Orders `hist-<k>`, one line each, the columns stockd writes "
      "(`src/store_sql.c`), a third each: released; shipped from own stock; shipped from the "
      "supplier with its purchase settled (`supplier_settled` 1). Created 40 days ago, last "
      "changed a minute after: none holds stock, so the SKU counters need no change and "
      "stockd's load audit passes them; no ledger rows (the load does not read them). Order k "
      "is on SKU 1 + (k-1) x SKUs / orders (every SKU has its share, keys in insertion order).",
      "- Each start runs with `--log-level info` (for the log's times) and otherwise the "
      "defaults unless the table says otherwise (SKUs preloaded; Redis from the stack). The "
      "times include MariaDB's own work: with a retention, the load asks for the orders "
      "changed within it or still live, and `orders` has no index on `updated_at`, so MariaDB "
      "reads the whole table to answer.",
      "- `--order-retention-ms 0` is stockd as it was before: every order is loaded.",
      f"- RSS is VmRSS of the stockd process; the {GOAL_RSS_MIB} MiB goal is read two ways: a "
      "restart on the history against one on the same SKUs without it, and one process before "
      "and after it made and ended orders itself. Both have to hold for it to be met; the time "
      "goal is met when both starts on the history are ready in time.",
      "- Every stockd log and stockbench report of the run: `bench/out/history-*` (the load "
      "average samples: `bench/out/history-loadavg.tsv`)."]
open(results, "w").write("\n".join(L) + "\n")
print(f"history: wrote {results} from {jpath}")
