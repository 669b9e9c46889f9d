"""Idempotent reserve.

Goal: one order_id sent 100 times concurrently over
10 connections yields one order; a retry after a stockd restart returns the
same record. Also: a reserve that failed leaves no record, so its retry is
decided anew; the same order_id with another sku or qty is `conflict`.

Method: 10 threads with one connection each meet at a barrier and then
pipeline 10 identical reserves each (one write per connection). Every reply
must be a success carrying the same order (same created_at, split and
status); MariaDB must hold one order row, one reservation in the ledger and
own_reserved equal to the qty. stockd is then stopped (SIGTERM) and started
again on the same database, and later killed with SIGKILL and started again;
each time the retry returns the same record and moves nothing.
"""
import threading

from stockrpc import request_bytes
from itestlib import audit, check_order_map

SAME = ("order_id", "sku", "qty", "status", "from_own", "from_supplier", "created_at")


def same_record(a, b):
    return {k: a.get(k) for k in SAME + ("hold_expires_at",)} == \
           {k: b.get(k) for k in SAME + ("hold_expires_at",)}


def test_100_concurrent_retries_one_order(stockd, db):
    with stockd.client() as c:
        c.ok("sku.put", {"sku": "idem-1", "own_on_hand": 5})
    params = {"order_id": "idem-o1", "sku": "idem-1", "qty": 2}
    barrier = threading.Barrier(10, timeout=30)
    replies, errors = [], []
    lock = threading.Lock()

    def conn(n):
        try:
            with stockd.client(timeout=30) as c:
                frames = b"".join(request_bytes(100 * n + k + 1, "reserve", params)
                                  for k in range(10))
                barrier.wait()
                c.send_raw(frames)
                got = [c.wait(100 * n + k + 1) for k in range(10)]
            with lock:
                replies.extend(got)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))
            barrier.abort()

    ts = [threading.Thread(target=conn, args=(n,)) for n in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert len(replies) == 100
    errs = [e for e, r in replies if e is not None]
    assert not errs, "retries must all succeed: %r" % errs[:5]
    recs = [r for e, r in replies]
    for r in recs:
        check_order_map(r)
    first = recs[0]
    assert first["status"] == "confirmed" and first["from_own"] == 2, first
    diff = [r for r in recs if not same_record(r, first)]
    assert not diff, "retries returned different records: %r vs %r" % (first, diff[:3])

    rows = db.orders("order_id = %s", (b"idem-o1",))
    assert len(rows) == 1
    assert db.sku("idem-1")["own_reserved"] == 2
    led = db.query("SELECT COUNT(*) AS n, SUM(d_own_reserved) AS d FROM ledger "
                   "WHERE order_id = %s", (b"idem-o1",))[0]
    assert (led["n"], led["d"]) == (1, 2), led
    audit(db)

    for kill in (False, True):
        stockd.restart(kill=kill)
        with stockd.client() as c:
            r = c.ok("reserve", params)
            assert same_record(r, first), ("after restart (kill=%s)" % kill, first, r)
            g = c.ok("order.get", {"order_id": "idem-o1"})
            assert same_record(g, first), g
            st = c.ok("stock.get", {"sku": "idem-1"})
            assert (st["own_reserved"], st["available"]) == (2, 3), st
        assert db.sku("idem-1")["own_reserved"] == 2
        assert len(db.orders("order_id = %s", (b"idem-o1",))) == 1
        audit(db)


def test_conflict_and_failed_retry(stockd, db):
    with stockd.client() as c:
        c.ok("sku.put", {"sku": "idem-2", "own_on_hand": 1})
        c.ok("sku.put", {"sku": "idem-3", "own_on_hand": 1})
        e = c.err("reserve", {"order_id": "idem-o2", "sku": "idem-2", "qty": 3})
        assert e["code"] == "insufficient" and e["available"] == 1, e
        assert db.order("idem-o2") is None
        c.ok("stock.adjust", {"sku": "idem-2", "delta": 5, "reason": "restock"})
        r = c.ok("reserve", {"order_id": "idem-o2", "sku": "idem-2", "qty": 3})
        assert r["status"] == "confirmed" and r["from_own"] == 3, r
        e = c.err("reserve", {"order_id": "idem-o2", "sku": "idem-2", "qty": 2})
        assert e["code"] == "conflict" and e["retryable"] is False, e
        e = c.err("reserve", {"order_id": "idem-o2", "sku": "idem-3", "qty": 3})
        assert e["code"] == "conflict", e
        # A held order's retry returns it as it is now (here: still held).
        h = c.ok("reserve", {"order_id": "idem-o3", "sku": "idem-3", "qty": 1, "hold_ms": 60000})
        h2 = c.ok("reserve", {"order_id": "idem-o3", "sku": "idem-3", "qty": 1, "hold_ms": 60000})
        assert same_record(h, h2), (h, h2)
        # After release, the retry returns the released record, not a new order.
        c.ok("release", {"order_id": "idem-o3"})
        h3 = c.ok("reserve", {"order_id": "idem-o3", "sku": "idem-3", "qty": 1, "hold_ms": 60000})
        assert h3["status"] == "released" and h3["created_at"] == h["created_at"], h3
        assert c.ok("stock.get", {"sku": "idem-3"})["available"] == 1
    audit(db)
