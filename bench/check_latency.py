#!/usr/bin/env python3
"""The latency cost of "check": true on reserve, measured on this machine.

    eval "$(tools/stack env)"   # MariaDB (STOCKD_DB)
    STOCKD_BIN=build/stockd FAKE1688_BIN=build/tools/fake1688/fake1688 \
        python3 bench/check_latency.py [N]

Starts a private fake1688 and a stockd on a fresh database (dropped at the
end; both stopped by pid), maps SKUs with supplier stock only (every reserve
takes supplier units: the case that is checked), then sends N reserves one
at a time (qty 1, confirmed at once, spread over 50 SKUs) without the
option and N with it, alternating in blocks of 100 so both see the same
machine, and prints p50 / p90 / p99 / max of the reply time. Own-stock
reserves are not measured: they are never checked (the same code path).
"""
import os
import secrets
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import itestlib  # noqa: E402
from itestlib import Db, Stockd, supplier_flags, wait_until  # noqa: E402
from test_supplier_sync import Fake  # noqa: E402

OFFER = 650000000001
SKUS = 50


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    secret, token = "sec-" + secrets.token_hex(8), "tok-" + secrets.token_hex(8)
    fake = Fake(secret, token)
    db = Db(os.environ["STOCKD_DB"], "bench_check_%d" % os.getpid())
    db.create()
    s = None
    try:
        fake.ok("POST", "/catalogue", {"products": [{
            "offer_id": OFFER, "subject": "latency", "skus": [
                {"sku_id": 5500000000000 + k, "spec_id": "lat%029d" % k, "price": 3,
                 "real": 10 * n} for k in range(SKUS)]}]})
        s = Stockd(db.url, tempfile.mkdtemp(prefix="check-lat-"), name="check-latency",
                   args=supplier_flags(fake.port, secret, token, sync_ms=60000,
                                       validate_ms=60000, rate_per_s=100000,
                                       purchase_concurrency=8) + ["--log-level", "warn"])
        s.start()
        c = s.client()
        for k in range(SKUS):
            c.ok("sku.put", {"sku": "lat-%d" % k, "own_on_hand": 0, "supplier": {
                "supplier_id": "1688-lat", "offer_id": OFFER, "spec_id": "lat%029d" % k}})
        for k in range(SKUS):
            wait_until(lambda: c.ok("stock.get", {"sku": "lat-%d" % k})["supplier_reported"] > 0,
                       10, what="synced")
        times = {False: [], True: []}
        i = 0
        while len(times[True]) < n:
            for check in (False, True):
                for _ in range(100):
                    i += 1
                    p = {"order_id": "lat-%d" % i, "sku": "lat-%d" % (i % SKUS), "qty": 1}
                    if check:
                        p["check"] = True
                    t0 = time.perf_counter()
                    o = c.ok("reserve", p)
                    times[check].append((time.perf_counter() - t0) * 1000.0)
                    assert o["from_supplier"] == 1 and o["status"] == "confirmed", o
        for check in (False, True):
            xs = times[check]
            print("reserve %-13s n=%d  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms"
                  % ("check: true" if check else "(no check)", len(xs), pct(xs, 50),
                     pct(xs, 90), pct(xs, 99), max(xs)))
        calls = fake.ok("GET", "/counters")["calls"]
        print("fake1688 calls:", {k: v for k, v in sorted(calls.items())})
        c.close()
    finally:
        if s is not None:
            s.stop()
        fake.stop()
        db.drop()


if __name__ == "__main__":
    itestlib.check_prereqs() if hasattr(itestlib, "check_prereqs") else None
    main()
