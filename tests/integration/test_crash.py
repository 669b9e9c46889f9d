"""Crash under load.

Goal: under load, `kill -9` stockd and start it
again: every order that got a success reply is in MariaDB with that status;
counters equal the sums over live orders; nothing is oversold.

Method: 16 threads run reserve / confirm / release on 10 SKUs (own and
manual-supplier stock, some holds) and log every success reply; an
operation sent but not answered is logged as in flight. After 1.5 s stockd
is killed with SIGKILL, the threads stop on the closed connections, and
stockd is started again on the same database. Checks: each acknowledged
order has its row with the acknowledged status (or, if a later operation on
it was in flight at the kill, that operation's status); audit of counters
against live orders and oversell; stockd's reloaded view (stock.get,
order.get) equals MariaDB; retries of in-flight reserves settle; new work is
served. Two crash cycles. Bounded: ~20 s.
"""
import random
import threading
import time

from stockrpc import RpcClosed, RpcTimeout
from itestlib import audit, compare_stock_with_db

SKUS = ["crash-%02d" % i for i in range(10)]
THREADS = 16


def run_load(stockd, cycle, seconds):
    acked, inflight = {}, {}
    reserves = {}       # order_id -> reserve params (for retries)
    lock = threading.Lock()
    stop = threading.Event()
    problems = []

    def worker(n):
        r = random.Random(cycle * 1000 + n)
        j = 0
        try:
            c = stockd.client(timeout=10)
        except OSError as e:
            problems.append(repr(e))
            return
        try:
            while not stop.is_set():
                j += 1
                oid = "k%d-%02d-%05d" % (cycle, n, j)
                p = {"order_id": oid, "sku": r.choice(SKUS), "qty": r.randint(1, 2)}
                if r.random() < 0.2:
                    p["hold_ms"] = 60000
                with lock:
                    reserves[oid] = p
                    inflight[oid] = ("held" if "hold_ms" in p else "confirmed")
                err, res = c.call("reserve", p)
                with lock:
                    del inflight[oid]
                    if err is None:
                        acked[oid] = res["status"]
                    elif err["code"] not in ("insufficient", "busy", "deadline"):
                        problems.append((oid, err))
                if err is not None or r.random() < 0.6:
                    continue
                op, target = r.choice([("release", "released"), ("confirm", "confirmed")])
                with lock:
                    inflight[oid] = target
                err, res = c.call(op, {"order_id": oid})
                with lock:
                    del inflight[oid]
                    if err is None:
                        acked[oid] = res["status"]
                    elif err["code"] != "invalid_state":
                        problems.append((oid, op, err))
        except (RpcClosed, RpcTimeout, OSError):
            pass  # the kill: whatever is in inflight stays unanswered
        finally:
            c.close()

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in ts:
        t.start()
    time.sleep(seconds)
    stockd.kill9()
    stop.set()
    for t in ts:
        t.join(30)
    assert not any(t.is_alive() for t in ts), "workers hung after the kill"
    assert not problems, problems[:10]
    return acked, inflight, reserves


def test_kill9_under_load(stockd, db):
    with stockd.client() as c:
        for i, k in enumerate(SKUS):
            p = {"sku": k, "own_on_hand": 40}
            if i % 3 == 0:
                p["supplier_reported"] = 20
            c.ok("sku.put", p)

    for cycle in range(2):
        # Fresh stock each cycle (cycle 0 sells most of it), more on some SKUs
        # so that both exhaustion and plain success are under load.
        with stockd.client() as c:
            for i, k in enumerate(SKUS):
                c.ok("stock.adjust", {"sku": k, "delta": 40 + 100 * (i % 4),
                                      "reason": "cycle %d" % cycle})
        acked, inflight, reserves = run_load(stockd, cycle, 1.5)
        assert len(acked) > 20, "too little load before the kill: %d acks" % len(acked)
        print("crash cycle %d: %d acknowledged, %d in flight at the kill"
              % (cycle, len(acked), len(inflight)))
        stockd.start()

        rows = db.orders("order_id LIKE %s", ("k%d-%%" % cycle,))
        missing = [o for o in acked if o not in rows]
        assert not missing, "acknowledged orders lost by the crash: %r" % missing[:10]
        wrong = [(o, s, rows[o]["status"]) for o, s in acked.items()
                 if rows[o]["status"] != s and rows[o]["status"] != inflight.get(o)]
        assert not wrong, "status differs from the acknowledged one: %r" % wrong[:10]
        audit(db)
        with stockd.client() as c:
            compare_stock_with_db(c, db, SKUS)
            for o, s in acked.items():
                g = c.ok("order.get", {"order_id": o})
                assert g["status"] == rows[o]["status"], (o, g, rows[o])
            # Retries of reserves that were in flight settle: same record or
            # decided anew; either way exactly one row afterwards.
            for o, target in inflight.items():
                if o in acked:
                    continue
                err, res = c.call("reserve", reserves[o])
                assert err is None or err["code"] == "insufficient", (o, err)
                if err is None:
                    assert db.order(o) is not None, o
            c.ok("stock.adjust", {"sku": SKUS[1], "delta": 5, "reason": "after crash"})
            r = c.ok("reserve", {"order_id": "after-crash-%d" % cycle, "sku": SKUS[1], "qty": 1})
            assert r["status"] == "confirmed", r
        audit(db)
