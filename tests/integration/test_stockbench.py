"""stockbench against the real stack: correctness, not speed.

Goal: the bench client runs end to end in every mode against real servers and
its audits agree with what it did. Method: short runs (a second or two each)
of stockbench against the module's stockd and the stack's MariaDB and Redis;
assert exit status 0, `audit: ok` for every mode, the exact success count of
the `--stock 2` oversell check (64 connections on one SKU: exactly 2), that
the JSON report has the documented shape, and that the ceiling mode leaves
no scratch table behind. Figures are not asserted:
speed is measured by tools/bench, never by tests.
"""
import json
import os
import subprocess

import pytest

import itestlib


def stockbench_bin():
    p = os.environ.get("STOCKBENCH_BIN") or os.path.join(
        os.path.dirname(itestlib.stockd_bin()), "bench", "stockbench")
    if not os.access(p, os.X_OK):
        itestlib.skip_or_fail("stockbench not built: %s" % p)
    return p


def run_bench(args, timeout=60):
    cmd = [stockbench_bin(), "--no-progress"] + args
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, text=True)
    return r.returncode, r.stdout


def test_oversell_check_exactly_two(stockd, db, tmp_path):
    """--stock 2, 64 connections, one SKU: exactly 2 reservations succeed,
    MariaDB agrees, and the audit passes."""
    out_json = str(tmp_path / "stock2.json")
    rc, out = run_bench(["--mode", "stockd", "--target", stockd.addr, "--db", db.url,
                         "--skus", "1", "--stock", "2", "--connections", "64",
                         "--duration", "2", "--warmup", "0", "--json", out_json])
    assert rc == 0, out
    assert "audit: ok" in out, out
    res = json.load(open(out_json))
    m = res["modes"]["stockd"]
    assert m["audit"] == "ok", m
    assert m["successes"] == 2, m
    # This module's other runs use stock 5, so the stock-2 SKU is the only one
    # with own_on_hand 2: it holds exactly the two orders.
    sold = db.query("SELECT s.own_reserved AS r, COUNT(o.order_id) AS n FROM sku s "
                    "JOIN orders o ON o.sku = s.sku AND o.status = 'confirmed' "
                    "WHERE s.own_on_hand = 2 GROUP BY s.sku")
    assert len(sold) == 1 and int(sold[0]["r"]) == 2 and int(sold[0]["n"]) == 2, sold
    errs = m["errors"]
    assert set(errs) <= {"insufficient"}, errs


def test_stockd_mixed_workload_audit(stockd, db, tmp_path):
    """reserve + hold/confirm + release + stock.get over 100 SKUs with small
    stock: no error other than insufficient, audit ok."""
    out_json = str(tmp_path / "mix.json")
    rc, out = run_bench(["--mode", "stockd", "--target", stockd.addr, "--db", db.url,
                         "--skus", "100", "--stock", "5", "--connections", "16",
                         "--pipeline", "4", "--mix", "reserve=60,hold=15,release=15,get=10",
                         "--duration", "2", "--warmup", "0", "--json", out_json])
    assert rc == 0, out
    m = json.load(open(out_json))["modes"]["stockd"]
    assert m["audit"] == "ok", m
    assert set(m["errors"]) <= {"insufficient"}, m["errors"]
    for k in ("p50", "p90", "p99", "p999", "max"):
        assert k in m["latency_us"], m["latency_us"]
    itestlib.audit(db)


@pytest.mark.parametrize("mode", ["mariadb-row", "redis-lua", "seed-lock"])
def test_peer_modes_audit(mode, tmp_path):
    """Each recipe stockd is compared with runs and passes its own audit on a
    scarce SKU (no oversell in the safe recipes, nor in redis-lua's view)."""
    if not os.environ.get("STOCKD_REDIS") and mode != "mariadb-row":
        itestlib.skip_or_fail("STOCKD_REDIS not set")
    rc, out = run_bench(["--mode", mode, "--skus", "1", "--stock", "3",
                         "--connections", "16", "--duration", "1", "--warmup", "0"])
    assert rc == 0, out
    assert "audit: ok" in out, out


def test_compare_table_and_ping(stockd, db):
    """--compare prints one row per mode with its ratio to the first."""
    rc, out = run_bench(["--compare", "ping,redis-ping", "--target", stockd.addr,
                         "--connections", "4", "--pipeline", "4", "--duration", "1",
                         "--warmup", "0"])
    assert rc == 0, out
    assert "ping" in out and "redis-ping" in out, out


def test_carts_of_three_lines_no_oversell(stockd, db, tmp_path):
    """--lines 3: carts of 3 distinct SKUs out of 8 with stock 4,
    so most carts are refused. No error but insufficient, the audit passes
    (all or nothing per cart, none oversold, counters = sums over lines),
    and MariaDB agrees on its own: every live cart has its 3 line rows and
    no SKU has more reserved than on hand."""
    out_json = str(tmp_path / "carts.json")
    rc, out = run_bench(["--mode", "stockd", "--target", stockd.addr, "--db", db.url,
                         "--skus", "8", "--stock", "4", "--lines", "3",
                         "--connections", "16", "--pipeline", "2",
                         "--duration", "2", "--warmup", "0", "--json", out_json])
    assert rc == 0, out
    assert "audit: ok" in out and "carts of 3 lines" in out, out
    res = json.load(open(out_json))
    assert res["workload"]["lines"] == 3, res["workload"]
    m = res["modes"]["stockd"]
    assert m["audit"] == "ok", m
    assert set(m["errors"]) <= {"insufficient"}, m["errors"]
    # 8 SKUs x 4 units, 3 per cart: at most 10 carts, and at least one.
    assert 1 <= m["successes"] <= 10, m
    assert m["lines_per_s"] == pytest.approx(3 * m["carts_per_s"]), m
    nonce_rows = db.query(
        "SELECT order_id, COUNT(*) AS n, MIN(n_lines) AS nl FROM orders"
        " WHERE status IN ('held','confirmed','purchased','shipped')"
        " AND order_id LIKE 'o%%' GROUP BY order_id HAVING nl = 3")
    assert all(int(r["n"]) == 3 for r in nonce_rows), nonce_rows
    itestlib.audit(db)


def test_ceiling_smoke(db, tmp_path):
    """--mode ceiling (the durable append ceiling): a one-second run appends
    whole 1,000-row statements, reports rows/s where the other modes report
    reservations/s, passes its audit, says which flush settings it ran
    under, and drops its scratch table; a flag that shapes orders is
    refused as a usage error (exit 2)."""
    out_json = str(tmp_path / "ceiling.json")
    rc, out = run_bench(["--mode", "ceiling", "--db", db.url, "--connections", "2",
                         "--duration", "1", "--warmup", "0", "--json", out_json])
    assert rc == 0, out
    assert "audit: ok" in out and "rows/s" in out, out
    m = json.load(open(out_json))["modes"]["ceiling"]
    assert m["audit"] == "ok", m
    assert m["rows_per_s"] > 0, m
    assert m["reservations_per_s"] == m["rows_per_s"], m
    assert m["rows_per_statement"] == 1000, m
    assert m["statements_per_s"] == pytest.approx(m["requests_per_s"]), m
    assert m["errors"] == {}, m
    assert "innodb_flush_log_at_trx_commit=" in m["server_settings"], m
    left = db.query("SELECT table_name AS t FROM information_schema.tables"
                    " WHERE table_schema = %s AND table_name LIKE 'bench\\_ceiling\\_%%'",
                    (db.database,))
    assert left == [], left

    rc, out = run_bench(["--mode", "ceiling", "--db", db.url, "--skus", "4", "--lines", "2",
                         "--duration", "1", "--warmup", "0"])
    assert rc == 2, out
    assert "ceiling: --lines does not apply" in out, out


def test_cpu_report(stockd, db, tmp_path):
    """--cpu NAME=PID: each run reports the cores stockbench and the named
    processes used in its measured window, their sum, and the microseconds
    of CPU per reservation; a process that ended before the window is
    "unknown" (null in the JSON, left out of the sum), not an error; bad
    lists are usage errors (exit 2)."""
    gone = int(subprocess.run(["sh", "-c", "sleep 0.3 & echo $!"], stdout=subprocess.PIPE,
                              text=True, check=True).stdout)
    out_json = str(tmp_path / "cpu.json")
    rc, out = run_bench(["--mode", "stockd", "--target", stockd.addr, "--db", db.url,
                         "--skus", "10", "--stock", "unlimited", "--connections", "8",
                         "--duration", "1.5", "--warmup", "1", "--json", out_json,
                         "--cpu", "stockd=%d,gone=%d" % (stockd.pid, gone)])
    assert rc == 0, out
    assert "cpu: stockbench" in out and "gone unknown" in out, out
    m = json.load(open(out_json))["modes"]["stockd"]
    c = m["cpu"]
    assert 1.0 < c["window_s"] < 3.0, c
    assert c["machine_cores"] == os.cpu_count(), c
    for name in ("stockbench", "stockd"):
        p = c["processes"][name]
        # Both did work (reservations were made); stockd is one thread.
        assert 0 < p["cores"] <= 1.05, (name, c)
        assert p["us_per_reservation"] == pytest.approx(p["cores"] * 1e6 / m["reservations_per_s"]), c
    assert c["processes"]["stockd"]["pid"] == stockd.pid, c
    assert c["processes"]["gone"] == {"cores": None, "us_per_reservation": None, "pid": gone}, c
    both = c["processes"]["stockbench"]["cores"] + c["processes"]["stockd"]["cores"]
    assert c["total_cores"] == pytest.approx(both), c
    assert c["total_cores"] <= c["machine_cores"] + 0.05, c

    for bad, msg in (("x", "is not NAME=PID"), ("stockbench=1", "always reported"),
                     ("a=0", "out of range"), ("a=4194304x", "not a non-negative integer"),
                     ("a b=1", "must be 1..15"), ("a=1,a=1", "given twice"),
                     ("a=1,b=1,c=1,d=1,e=1", "at most 4"), ("", "empty"),
                     ("a=%d" % gone, "no process")):
        rc, out = run_bench(["--mode", "stockd", "--target", stockd.addr, "--cpu", bad])
        assert rc == 2 and msg in out, (bad, out)
    rc, out = run_bench(["--mode", "salesnight", "--cpu", "stockd=%d" % stockd.pid])
    assert rc == 2 and "--cpu" in out, out


@pytest.mark.not_sanitized("bench/history.sh and its report; evicting and reading back old orders "
                           "is test_order_retention's, which runs there")
def test_history_smoke(db, tmp_path):
    """`tools/bench history` (bench/history.sh) at tiny sizes: 2,000 SKUs and
    20,000 old final orders seeded with SQL, then three starts and a short
    run of orders made and ended. The script exits 0 and writes its tables;
    stockd with the default retention starts with none of the old orders in
    memory, with --order-retention-ms 0 with all of them; the orders made
    through it are evicted again and none is left live in MariaDB. The
    report names the machine, its load, the commit and the command, and the
    script's databases are gone afterwards. Figures are not asserted."""
    env = dict(os.environ, STOCKBENCH_BIN=stockbench_bin(), STOCKD_BIN=itestlib.stockd_bin(),
               STOCKCTL_BIN=itestlib.stockctl_bin())
    # The stack the suite runs on, never a second one under this checkout.
    if os.environ.get("STOCKD_STACK_DIR"):
        env["STACK_DIR"] = os.environ["STOCKD_STACK_DIR"]
    results, out_json = tmp_path / "HISTORY.md", tmp_path / "history.json"
    r = subprocess.run([os.path.join(itestlib.ROOT, "tools", "bench"), "history",
                        "--skus", "2000", "--orders", "20000", "--traffic-s", "2",
                        "--full-timeout", "60", "--results", str(results), "--json", str(out_json)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout
    text = results.read_text()
    for head in ("## Goals", "## Startup", "| start | SKUs | orders in MariaDB |",
                 "## Orders made and ended through stockd", "### Where the start's time goes",
                 "- machine: ", "- machine load: ", "- commit: ",
                 "- command: `tools/bench history --skus 2000 --orders 20000 --traffic-s 2 "):
        assert head in text, text
    assert "not judged (smaller sizes)" in text, text
    d = json.load(open(out_json))
    assert d["orders_in_db"] == 20000, d
    for name in ("empty", "history", "history-again"):
        s = d["starts"][name]
        assert s["ready"] and s["state_orders"] == 0 and s["orders_loaded"] == 0, s
        assert s["state_skus"] == 2000, s
    full = d["starts"]["full"]
    assert full["ready"] and full["state_orders"] == 20000, full
    t = d["traffic"]
    assert t["orders_made"] > 0 and t["errors"] == {}, t
    assert t["state_before"]["orders"] == 0 and t["state_after"]["orders"] == 0, t
    assert t["state_after"]["orders_evicted"] >= t["orders_made"] + t["warmup_orders"], t
    assert t["orders_stored"] >= t["orders_made"] + t["warmup_orders"], t
    assert t["orders_live_in_db"] == 0, t
    assert d["machine"]["cores"] >= 1 and d["machine"]["mem_mib"] > 0, d["machine"]
    assert d["loadavg"]["samples"], d["loadavg"]
    assert len(d["databases"]) >= 3 and d["dropped"], d["databases"]
    left = db.query("SELECT schema_name AS s FROM information_schema.schemata WHERE schema_name IN ("
                    + ",".join(["%s"] * len(d["databases"])) + ")", tuple(d["databases"]))
    assert left == [], left


@pytest.mark.not_sanitized("bench/ab.sh, a shell script around two short runs of the reserve path "
                           "every other test exercises")
def test_ab_smoke(db):
    """bench/ab.sh with the same binary twice, one round of 1 s runs: a line
    per binary and workload with a rate, exit 0, and its databases gone;
    usage errors exit 2."""
    env = dict(os.environ, STOCKBENCH_BIN=stockbench_bin(), AB_DURATION="1")
    ab = os.path.join(itestlib.ROOT, "bench", "ab.sh")
    r = subprocess.run([ab, itestlib.stockd_bin(), itestlib.stockd_bin(), "1"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    rows = [l.split() for l in r.stdout.splitlines()[1:] if l.strip()]
    assert sorted((x[1], x[2]) for x in rows) == [("new", "hot"), ("new", "uniform"),
                                                  ("old", "hot"), ("old", "uniform")], r.stdout
    assert all(float(x[3]) > 0 for x in rows), r.stdout
    left = db.query("SHOW DATABASES LIKE 'ab\\_%%'")
    assert not left, left
    for argv, env_extra in (([itestlib.stockd_bin()], {}),
                            ([itestlib.stockd_bin(), "/no/such/stockd"], {}),
                            ([itestlib.stockd_bin(), itestlib.stockd_bin()], {"AB_DURATION": "0"})):
        r = subprocess.run([ab] + argv, env=dict(env, **env_extra), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        assert r.returncode == 2 and "bench/ab.sh" in r.stdout, r.stdout


def test_sqlcost_smoke(stockd, db):
    """bench/sqlcost.py (what MariaDB spends on stockd-shaped batches) on the
    schema a stockd created: a line per variant with its wall time and, given
    mariadbd's pid, its CPU; the latency line; every row it wrote deleted
    again; bad arguments exit 2."""
    script = os.path.join(itestlib.ROOT, "bench", "sqlcost.py")
    args = ["/usr/bin/python3", script, "--db", db.url, "--rows", "0,3", "--batches", "5",
            "--latency-s", "0.3", "--mariadbd-pid", str(itestlib.mariadb_pid())]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout
    out = r.stdout
    for name in ("compound block (as stockd)", "multi-statement text",
                 "compound block, no ledger rows", "batch_log row + SKU upsert", "SELECT 1"):
        assert name in out, out
    assert out.count("mariadbd cpu") == 9 and "us/reservation" in out, out
    assert "-- commit latency, 8-row batches" in out and " p99 " in out, out
    for q in ("SELECT COUNT(*) AS n FROM orders WHERE sku = 'sqlcost-hot'",
              "SELECT COUNT(*) AS n FROM ledger WHERE sku = 'sqlcost-hot'",
              "SELECT COUNT(*) AS n FROM sku WHERE sku = 'sqlcost-hot'",
              "SELECT COUNT(*) AS n FROM batch_log WHERE node = 'sqlcost'"):
        assert int(db.query(q)[0]["n"]) == 0, q
    for bad in (["--db", "mysql://nope"], ["--db", db.url, "--rows", "x"],
                ["--db", db.url, "--batches", "0"], ["--db", db.url, "--mariadbd-pid", "999999999"]):
        r = subprocess.run(["/usr/bin/python3", script] + bad, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        assert r.returncode == 2 and "sqlcost:" in r.stdout, (bad, r.stdout)
