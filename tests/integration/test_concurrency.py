"""200 clients x 50 reserves on 20 scarce SKUs.

Goal (issue 2, "Done when" 3): 200 clients x 50 reserves of random qty 1-3
on 20 SKUs with small stock: no SKU oversold, every success reply has its
order row, every counter equals the sum over its live orders.

Method: 20 SKUs with own stock 50..300, half of them also with a manual
supplier figure (about a quarter of the 20,000 units asked for); 200
threads, each with its own connection, send 50 reserves
each (random SKU and qty 1-3, seeded; one in ten with a 60 s hold) as fast as
the replies come back; about one success in ten is released again right
away. Then MariaDB is audited: no oversell, counters equal sums over live
orders, every success has its row with the acknowledged status, refused or
deadline-expired reserves left no row, and stockd's stock.get agrees with
MariaDB. Bounded: each thread stops after 90 s.
"""
import random
import threading
import time

from itestlib import audit, check_order_map, compare_stock_with_db

CLIENTS = 200
PER_CLIENT = 50
SKUS = ["c-%02d" % i for i in range(20)]
TIME_LIMIT_S = 90.0


def test_200_clients_50_reserves(stockd, db):
    rnd = random.Random(20240602)
    with stockd.client() as c:
        for i, k in enumerate(SKUS):
            p = {"sku": k, "own_on_hand": rnd.randint(50, 300)}
            if i % 2:
                p["supplier_reported"] = rnd.randint(1, 100)
            c.ok("sku.put", p)

    acked = {}          # order_id -> status the last success reply said
    refused = {}        # order_id -> error code (reserve failed)
    unexpected = []
    lock = threading.Lock()
    t0 = time.monotonic()
    start = threading.Barrier(CLIENTS, timeout=60)

    def client(n):
        r = random.Random(n)
        try:
            with stockd.client(timeout=30) as c:
                start.wait()
                for j in range(PER_CLIENT):
                    if time.monotonic() - t0 > TIME_LIMIT_S:
                        raise AssertionError("client %d out of time at %d" % (n, j))
                    oid = "cc-%03d-%02d" % (n, j)
                    p = {"order_id": oid, "sku": r.choice(SKUS), "qty": r.randint(1, 3)}
                    if r.random() < 0.1:
                        p["hold_ms"] = 60000
                    err, res = c.call("reserve", p)
                    if err is not None:
                        with lock:
                            refused[oid] = err["code"]
                            if err["code"] not in ("insufficient", "busy", "deadline"):
                                unexpected.append((oid, err))
                        continue
                    check_order_map(res)
                    with lock:
                        acked[oid] = (res["status"], res["sku"], res["from_own"],
                                      res["from_supplier"])
                    if r.random() < 0.1:
                        err, rel = c.call("release", {"order_id": oid})
                        with lock:
                            if err is None:
                                acked[oid] = ("released",) + acked[oid][1:]
                            else:
                                unexpected.append((oid, err))
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                unexpected.append(("client %d" % n, repr(e)))
            start.abort()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_LIMIT_S + 60)
    elapsed = time.monotonic() - t0
    assert not unexpected, "unexpected: %r" % unexpected[:10]
    assert len(acked) + len(refused) == CLIENTS * PER_CLIENT
    assert acked, "no reserve succeeded"
    assert any(v == "insufficient" for v in refused.values()), "stock was never exhausted"

    audit(db)
    rows = db.orders("order_id LIKE 'cc-%%'")
    missing = [o for o in acked if o not in rows]
    assert not missing, "acknowledged but no row: %r" % missing[:10]
    wrong = [(o, s, rows[o]["status"]) for o, (s, *_r) in acked.items() if rows[o]["status"] != s]
    assert not wrong, "row status differs from the reply: %r" % wrong[:10]
    split = [(o, a, rows[o]) for o, a in acked.items()
             if (rows[o]["sku"], rows[o]["from_own"], rows[o]["from_supplier"]) != a[1:]]
    assert not split, split[:5]
    ghosts = [o for o in refused if o in rows]
    assert not ghosts, "failed reserves left rows: %r" % ghosts[:10]
    with stockd.client() as c:
        compare_stock_with_db(c, db, SKUS)
    print("200x50: %d acked, %d refused in %.1fs" % (len(acked), len(refused), elapsed))
