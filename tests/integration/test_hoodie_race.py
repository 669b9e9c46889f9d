"""Hoodie race: three buyers, two hoodies, the same instant.

Goal (issue 2, "Done when" 1): stock 2, three clients on three connections
reserve the same SKU at the same instant; over 1,000 rounds with fresh stock
every round gives exactly 2 `confirmed` and 1 `insufficient`, and MariaDB's
rows agree with the replies.

Method: 1,000 SKUs with own_on_hand 2 are created up front (pipelined
sku.put). Three threads, each with its own connection, meet at a barrier at
the start of every round and then write a pre-encoded reserve (qty 1) for
that round's SKU in one sendall, so the three requests reach stockd within
microseconds of each other. After all rounds, MariaDB is checked: exactly the
two confirmed order_ids of each round have rows (status confirmed, from_own 1),
the refused one has none, each SKU has own_reserved 2, and the ledger has one
reservation per confirmed order. Bounded: ITEST_HOODIE_ROUNDS (default 1000),
fails if the rounds take longer than 120 s.
"""
import os
import threading
import time

from stockrpc import request_bytes
from itestlib import audit, check_order_map

ROUNDS = int(os.environ.get("ITEST_HOODIE_ROUNDS", "1000"))
TIME_LIMIT_S = 120.0


def sku_of(i):
    return "hoodie-%04d" % i


def oid(i, buyer):
    return "h%04d-b%d" % (i, buyer)


def put_skus(stockd, n):
    with stockd.client(timeout=30) as c:
        for start in range(0, n, 200):
            ids = [c.send("sku.put", {"sku": sku_of(i), "own_on_hand": 2})
                   for i in range(start, min(n, start + 200))]
            for m in ids:
                err, res = c.wait(m)
                assert err is None, err
                assert res["available"] == 2, res


def test_hoodie_race(stockd, db):
    put_skus(stockd, ROUNDS)
    barrier = threading.Barrier(3, timeout=30)
    replies = [[None] * 3 for _ in range(ROUNDS)]
    failures = []
    t0 = time.monotonic()

    def buyer(b):
        try:
            with stockd.client(timeout=30) as c:
                frames = [request_bytes(i + 1, "reserve",
                                        {"order_id": oid(i, b), "sku": sku_of(i), "qty": 1})
                          for i in range(ROUNDS)]
                for i in range(ROUNDS):
                    barrier.wait()
                    if time.monotonic() - t0 > TIME_LIMIT_S:
                        raise AssertionError("hoodie rounds exceeded %.0fs at round %d"
                                             % (TIME_LIMIT_S, i))
                    c.send_raw(frames[i])
                    replies[i][b] = c.wait(i + 1)
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append("buyer %d: %r" % (b, e))
            barrier.abort()

    threads = [threading.Thread(target=buyer, args=(b,)) for b in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_LIMIT_S + 60)
    assert not failures, failures
    elapsed = time.monotonic() - t0

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
        refused.append(next(oid(i, b) for b in range(3) if rs[b][0] is not None))
    assert not bad_rounds, "%d of %d rounds wrong, first: %r" % (
        len(bad_rounds), ROUNDS, bad_rounds[:3])

    # MariaDB agrees with the replies.
    orders = db.orders("order_id LIKE 'h%%'")
    missing = [o for o in confirmed if o not in orders]
    assert not missing, "confirmed but no row: %r" % missing[:10]
    wrong = [(o, orders[o]["status"]) for o in confirmed if orders[o]["status"] != "confirmed"]
    assert not wrong, wrong[:10]
    ghosts = [o for o in refused if o in orders]
    assert not ghosts, "refused reserve left a row: %r" % ghosts[:10]
    assert len(orders) == 2 * ROUNDS, len(orders)
    for o, i in confirmed.items():
        row = orders[o]
        assert row["sku"] == sku_of(i) and row["qty"] == 1 and row["from_own"] == 1, row
    skus = audit(db, [sku_of(i) for i in range(ROUNDS)])
    assert len(skus) == ROUNDS
    assert all(r["own_reserved"] == 2 and r["own_on_hand"] == 2 for r in skus.values())
    led = {r["order_id"]: r for r in db.query(
        "SELECT order_id, COUNT(*) AS n, SUM(d_own_reserved) AS d FROM ledger "
        "WHERE order_id LIKE 'h%%' GROUP BY order_id")}
    bad_led = [o for o in confirmed if o not in led or led[o]["d"] != 1]
    assert not bad_led, "ledger lacks the reservation of %r" % bad_led[:10]
    assert not [o for o in refused if o in led], "ledger has refused orders"
    print("hoodie race: %d rounds in %.1fs" % (ROUNDS, elapsed))
