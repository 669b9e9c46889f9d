"""The core issue's two concurrency checks, shared by the single-instance
tests (test_hoodie_race.py, test_concurrency.py) and the sharded cluster
behind HAProxy (test_cluster.py).

`target` is anything with `client(timeout=...)` returning a stockrpc.Rpc
(an itestlib.Stockd, or the cluster's HAProxy address); `db` is the
itestlib.Db the target writes to. Both functions assert everything the
tests assert and return a short summary line.
"""
import random
import threading
import time

from stockrpc import request_bytes
from itestlib import audit, check_order_map, compare_stock_with_db

HOODIE_TIME_LIMIT_S = 120.0


def hoodie_sku(i):
    return "hoodie-%04d" % i


def hoodie_oid(i, buyer):
    return "h%04d-b%d" % (i, buyer)


def hoodie_put_skus(target, n):
    with target.client(timeout=30) as c:
        for start in range(0, n, 200):
            ids = [c.send("sku.put", {"sku": hoodie_sku(i), "own_on_hand": 2})
                   for i in range(start, min(n, start + 200))]
            for m in ids:
                err, res = c.wait(m)
                assert err is None, err
                assert res["available"] == 2, res


def _hoodie_buyers(target, rounds):
    """Three connections race for each round's SKU; returns replies[round][buyer]."""
    barrier = threading.Barrier(3, timeout=30)
    replies = [[None] * 3 for _ in range(rounds)]
    failures = []
    t0 = time.monotonic()

    def buyer(b):
        try:
            with target.client(timeout=30) as c:
                frames = [request_bytes(i + 1, "reserve",
                                        {"order_id": hoodie_oid(i, b), "sku": hoodie_sku(i),
                                         "qty": 1})
                          for i in range(rounds)]
                for i in range(rounds):
                    barrier.wait()
                    if time.monotonic() - t0 > HOODIE_TIME_LIMIT_S:
                        raise AssertionError("hoodie rounds exceeded %.0fs at round %d"
                                             % (HOODIE_TIME_LIMIT_S, i))
                    c.send_raw(frames[i])
                    replies[i][b] = c.wait(i + 1)
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append("buyer %d: %r" % (b, e))
            barrier.abort()

    threads = [threading.Thread(target=buyer, args=(b,)) for b in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HOODIE_TIME_LIMIT_S + 60)
    assert not failures, failures
    return replies, time.monotonic() - t0


def hoodie_race(target, db, rounds):
    """Stock 2, three buyers at the same instant, `rounds` times: exactly 2
    confirmed and 1 insufficient per round, and MariaDB agrees."""
    hoodie_put_skus(target, rounds)
    replies, elapsed = _hoodie_buyers(target, rounds)

    bad_rounds = []
    confirmed = {}
    refused = []
    for i, rs in enumerate(replies):
        ok = [r for e, r in rs if e is None]
        errs = [e for e, r in rs if e is not None]
        if (len(ok) != 2 or len(errs) != 1 or errs[0].get("code") != "insufficient"
                or any(r["status"] != "confirmed" for r in ok)):
            bad_rounds.append((i, rs))
            continue
        for r in ok:
            check_order_map(r)
            assert r["from_own"] == 1 and r["from_supplier"] == 0, r
            confirmed[r["order_id"]] = i
        assert errs[0]["retryable"] is False, errs[0]
        assert errs[0].get("available") == 0, errs[0]
        refused.append(next(hoodie_oid(i, b) for b in range(3) if rs[b][0] is not None))
    assert not bad_rounds, "%d of %d rounds wrong, first: %r" % (
        len(bad_rounds), rounds, bad_rounds[:3])

    # MariaDB agrees with the replies.
    orders = db.orders("order_id LIKE 'h%%'")
    missing = [o for o in confirmed if o not in orders]
    assert not missing, "confirmed but no row: %r" % missing[:10]
    wrong = [(o, orders[o]["status"]) for o in confirmed if orders[o]["status"] != "confirmed"]
    assert not wrong, wrong[:10]
    ghosts = [o for o in refused if o in orders]
    assert not ghosts, "refused reserve left a row: %r" % ghosts[:10]
    assert len(orders) == 2 * rounds, len(orders)
    for o, i in confirmed.items():
        row = orders[o]
        assert row["sku"] == hoodie_sku(i) and row["qty"] == 1 and row["from_own"] == 1, row
    skus = audit(db, [hoodie_sku(i) for i in range(rounds)])
    assert len(skus) == rounds
    assert all(r["own_reserved"] == 2 and r["own_on_hand"] == 2 for r in skus.values())
    led = {r["order_id"]: r for r in db.query(
        "SELECT order_id, COUNT(*) AS n, SUM(d_own_reserved) AS d FROM ledger "
        "WHERE order_id LIKE 'h%%' GROUP BY order_id")}
    bad_led = [o for o in confirmed if o not in led or led[o]["d"] != 1]
    assert not bad_led, "ledger lacks the reservation of %r" % bad_led[:10]
    assert not [o for o in refused if o in led], "ledger has refused orders"
    return "hoodie race: %d rounds in %.1fs" % (rounds, elapsed)


CC_CLIENTS = 200
CC_PER_CLIENT = 50
CC_SKUS = ["c-%02d" % i for i in range(20)]
CC_TIME_LIMIT_S = 90.0


def _cc_put_skus(target):
    rnd = random.Random(20240602)
    with target.client() as c:
        for i, k in enumerate(CC_SKUS):
            p = {"sku": k, "own_on_hand": rnd.randint(50, 300)}
            if i % 2:
                p["supplier_reported"] = rnd.randint(1, 100)
            c.ok("sku.put", p)


def two_hundred_clients(target, db):
    """200 clients x 50 reserves of qty 1-3 on 20 scarce SKUs: no oversell,
    every success has its row, counters equal sums over live orders."""
    _cc_put_skus(target)
    acked = {}          # order_id -> status the last success reply said
    refused = {}        # order_id -> error code (reserve failed)
    unexpected = []
    lock = threading.Lock()
    t0 = time.monotonic()
    start = threading.Barrier(CC_CLIENTS, timeout=60)

    def client(n):
        r = random.Random(n)
        try:
            with target.client(timeout=30) as c:
                start.wait()
                for j in range(CC_PER_CLIENT):
                    if time.monotonic() - t0 > CC_TIME_LIMIT_S:
                        raise AssertionError("client %d out of time at %d" % (n, j))
                    oid = "cc-%03d-%02d" % (n, j)
                    p = {"order_id": oid, "sku": r.choice(CC_SKUS), "qty": r.randint(1, 3)}
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

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CC_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CC_TIME_LIMIT_S + 60)
    elapsed = time.monotonic() - t0
    assert not unexpected, "unexpected: %r" % unexpected[:10]
    assert len(acked) + len(refused) == CC_CLIENTS * CC_PER_CLIENT
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
    with target.client() as c:
        compare_stock_with_db(c, db, CC_SKUS)
    return "200x50: %d acked, %d refused in %.1fs" % (len(acked), len(refused), elapsed)
