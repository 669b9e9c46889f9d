#!/usr/bin/python3
"""bench/sqlcost.py — what MariaDB spends on stockd-shaped batches.

usage: bench/sqlcost.py --db mysql://user:pass@host:port/db [--rows N[,N...]]
                        [--batches K] [--latency-s S] [--mariadbd-pid PID]

Replays batches shaped like stockd's commit of a hot SKU (the batch_log row,
the epoch-fenced SKU upsert, N orders rows and N ledger rows in one compound
block) back to back on one connection, against the tables of a database a
stockd has created (its schema), and prints per batch: wall time, and with
--mariadbd-pid the server's CPU from /proc (10 ms ticks: use K >= 300 for a
figure). Variants show what each part costs: the same SQL as a
multi-statement text, without the ledger rows, and the fixed parts alone.
--latency-s S then plays 8-row batches for S seconds and prints the commit
latency percentiles (the floor under stockd's p99). Rows are written with
the SKU "sqlcost-hot", order ids "sqlcost-..." and node "sqlcost", and
deleted again at the end. Exit 2 on bad arguments.
Needs Debian's python3-pymysql (/usr/bin/python3).
"""
import argparse
import re
import sys
import time

import pymysql

COLS_FENCED = ["own_on_hand", "own_reserved", "supplier_reported", "supplier_sellable",
               "supplier_reserved", "supplier_synced_at", "mapping", "supplier_id", "offer_id",
               "spec_id", "sku_id", "supplier_cap", "fingerprint", "updated_at"]
SKU = "sqlcost-hot"


def hx(s):
    return "X'" + s.encode().hex() + "'"


class Batches:
    def __init__(self, n):
        self.n = n
        self.seq = int(time.time() * 1000) % 10**9 * 100

    def parts(self, ledger=True, sku=True, orders=True):
        self.seq += 1
        b, n = self.seq, self.n
        out = ["INSERT INTO batch_log (batch_id,node,state,at) VALUES (%d,'sqlcost','committed',%d)"
               % (b, b)]
        if sku:
            out.append(
                "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,"
                "supplier_reserved,supplier_synced_at,mapping,supplier_id,offer_id,spec_id,sku_id,"
                "epoch,version,updated_at,supplier_cap,fingerprint) VALUES\n"
                "(%s,1000000000,%d,0,0,0,0,'none',NULL,NULL,NULL,NULL,1,0,%d,NULL,NULL)\n"
                "ON DUPLICATE KEY UPDATE " % (hx(SKU), b % 10**6, b)
                + "".join("%s=IF(epoch=VALUES(epoch),VALUES(%s),%s)," % (c, c, c) for c in COLS_FENCED)
                + "version=IF(epoch=VALUES(epoch),version+1,version)")
        ids = [hx("sqlcost-%d-%d" % (b, i)) for i in range(n)]
        if orders and n:
            out.append("INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,"
                       "from_supplier,available,created_at,updated_at,hold_expires_at,"
                       "upstream_order_id,reason,purchased_at,supplier_settled) VALUES\n"
                       + ",\n".join("(%s,0,1,%s,1,'confirmed',1,0,1,%d,%d,NULL,NULL,NULL,NULL,0)"
                                    % (i, hx(SKU), b, b) for i in ids))
        if ledger and n:
            out.append("INSERT INTO ledger (sku,order_id,move,d_own_on_hand,d_own_reserved,"
                       "d_supplier_reserved,d_supplier_reported,reason,at,batch_id) VALUES\n"
                       + ",\n".join("(%s,%s,'reserve',0,1,0,0,NULL,%d,%d)" % (hx(SKU), i, b, b)
                                    for i in ids))
        return out

    def compound(self, **kw):
        p = self.parts(**kw)
        if kw.get("sku", True):
            # stockd checks the fenced upsert's affected rows right after it
            p[1] += (";\nIF ROW_COUNT() NOT IN (1,2) THEN SIGNAL SQLSTATE '45000'"
                     " SET MESSAGE_TEXT='epoch fence'; END IF")
        return ("BEGIN NOT ATOMIC\nDECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
                "START TRANSACTION;\n" + ";\n".join(p) + ";\nCOMMIT;\nEND")

    def multi(self, **kw):
        return "START TRANSACTION;\n" + ";\n".join(self.parts(**kw)) + ";\nCOMMIT"


def cpu_ticks(pid):
    if pid is None:
        return 0
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def run(cur, pid, name, fn, k, n):
    c0, t0 = cpu_ticks(pid), time.perf_counter()
    for _ in range(k):
        cur.execute(fn())
        while cur.nextset():
            pass
    dt = time.perf_counter() - t0
    line = "%-34s wall %7.3f ms/batch" % (name, dt / k * 1e3)
    if pid is not None:
        cpu = (cpu_ticks(pid) - c0) / 100.0
        line += "  mariadbd cpu %6.0f us/batch" % (cpu / k * 1e6)
        if n:
            line += " = %5.1f us/reservation" % (cpu / k / n * 1e6)
    print(line, flush=True)


def cleanup(cur):
    cur.execute("DELETE FROM ledger WHERE sku=%s" % hx(SKU))
    cur.execute("DELETE FROM orders WHERE sku=%s" % hx(SKU))
    cur.execute("DELETE FROM sku WHERE sku=%s" % hx(SKU))
    cur.execute("DELETE FROM batch_log WHERE node='sqlcost'")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--rows", default="1,8,32,128")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--latency-s", type=float, default=0.0)
    ap.add_argument("--mariadbd-pid", type=int)
    a = ap.parse_args()
    m = re.match(r"^mysql://([^:@/]+):([^@]*)@([^:/]+):(\d+)/([A-Za-z0-9_]+)$", a.db)
    try:
        rows = [int(x) for x in a.rows.split(",")]
    except ValueError:
        rows = []
    if (not m or not rows or any(r < 0 or r > 4096 for r in rows) or not 1 <= a.batches <= 100000
            or not 0 <= a.latency_s <= 600):
        print("sqlcost: bad arguments (--db mysql://user:pass@host:port/db, --rows 0..4096 "
              "comma-separated, --batches 1..100000, --latency-s 0..600)", file=sys.stderr)
        return 2
    if a.mariadbd_pid is not None:
        try:
            cpu_ticks(a.mariadbd_pid)
        except (OSError, IndexError, ValueError):
            print("sqlcost: no process %d" % a.mariadbd_pid, file=sys.stderr)
            return 2
    c = pymysql.connect(host=m.group(3), port=int(m.group(4)), user=m.group(1),
                        password=m.group(2), database=m.group(5), autocommit=True,
                        client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    cur = c.cursor()
    try:
        for n in rows:
            bt = Batches(n)
            print("-- %d reservations a batch, %d batches" % (n, a.batches))
            run(cur, a.mariadbd_pid, "compound block (as stockd)", bt.compound, a.batches, n)
            run(cur, a.mariadbd_pid, "multi-statement text", bt.multi, a.batches, n)
            run(cur, a.mariadbd_pid, "compound block, no ledger rows",
                lambda: bt.compound(ledger=False), a.batches, n)
        bt = Batches(0)
        print("-- fixed parts")
        run(cur, a.mariadbd_pid, "batch_log row only", lambda: bt.multi(sku=False), a.batches, 0)
        run(cur, a.mariadbd_pid, "batch_log row + SKU upsert", bt.compound, a.batches, 0)
        run(cur, a.mariadbd_pid, "SELECT 1", lambda: "SELECT 1", a.batches, 0)
        if a.latency_s > 0:
            bt, lat = Batches(8), []
            end = time.monotonic() + a.latency_s
            while time.monotonic() < end:
                q = bt.compound()
                t0 = time.perf_counter()
                cur.execute(q)
                while cur.nextset():
                    pass
                lat.append((time.perf_counter() - t0) * 1e3)
            lat.sort()
            k = len(lat)
            print("-- commit latency, 8-row batches back to back for %.0f s: %d batches, ms: "
                  "p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f"
                  % (a.latency_s, k, lat[k // 2], lat[int(k * .9)], lat[int(k * .99)],
                     lat[int(k * .999)], lat[-1]))
    finally:
        cleanup(cur)
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
