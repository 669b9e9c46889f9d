"""Holds and their expiry.

Goal: a held order expires on time (within a
second) and its stock is available again; confirm after expiry answers
`expired`. Also: a hold confirmed in time does not expire; a released hold
returns its stock at once; hold_ms outside 1,000..86,400,000 is `invalid`.

Method: reserve with hold_ms 1000 on a SKU of stock 1, then poll order.get
every 20 ms; the status must turn `expired` no later than hold_expires_at +
1 s (same machine clock), and must not turn before hold_expires_at. Then
stock.get shows the unit back, confirm answers `expired`, and MariaDB holds
the expired row with counters equal to the sums over live orders.
"""
import time

from itestlib import audit, check_order_map, wait_until


def now_ms():
    return int(time.time() * 1000)


def test_hold_expires_on_time(client, db):
    client.ok("sku.put", {"sku": "hold-1", "own_on_hand": 1})
    h = client.ok("reserve", {"order_id": "hold-o1", "sku": "hold-1", "qty": 1, "hold_ms": 1000})
    check_order_map(h)
    assert h["status"] == "held", h
    exp = h["hold_expires_at"]
    assert abs(exp - (h["created_at"] + 1000)) <= 200, h
    assert abs(h["created_at"] - now_ms()) < 5000, "created_at is not unix ms: %r" % h
    assert h["available"] == 0, h
    e = client.err("reserve", {"order_id": "hold-o2", "sku": "hold-1", "qty": 1})
    assert e["code"] == "insufficient", e

    seen_at = None
    while now_ms() < exp + 3000:
        g = client.ok("order.get", {"order_id": "hold-o1"})
        t = now_ms()
        if g["status"] != "held":
            seen_at = t
            break
        time.sleep(0.02)
    assert g["status"] == "expired", g
    assert seen_at >= exp - 50, "expired early: seen %d, hold_expires_at %d" % (seen_at, exp)
    assert seen_at <= exp + 1000, "expired late: seen %d ms after hold_expires_at" % (seen_at - exp)
    check_order_map(g)

    st = client.ok("stock.get", {"sku": "hold-1"})
    assert (st["available"], st["own_reserved"]) == (1, 0), st
    e = client.err("confirm", {"order_id": "hold-o1"})
    assert e["code"] == "expired", e

    row = db.order("hold-o1")
    assert row["status"] == "expired", row
    assert db.sku("hold-1")["own_reserved"] == 0
    audit(db)
    # The freed unit can be sold again.
    r = client.ok("reserve", {"order_id": "hold-o3", "sku": "hold-1", "qty": 1})
    assert r["status"] == "confirmed", r


def test_confirmed_hold_does_not_expire(client, db):
    client.ok("sku.put", {"sku": "hold-2", "own_on_hand": 2})
    client.ok("reserve", {"order_id": "hold-o4", "sku": "hold-2", "qty": 1, "hold_ms": 1000})
    c = client.ok("confirm", {"order_id": "hold-o4"})
    assert c["status"] == "confirmed", c
    client.ok("reserve", {"order_id": "hold-o5", "sku": "hold-2", "qty": 1, "hold_ms": 1000})
    r = client.ok("release", {"order_id": "hold-o5"})
    assert r["status"] == "released", r
    assert client.ok("stock.get", {"sku": "hold-2"})["available"] == 1
    time.sleep(2.0)
    assert client.ok("order.get", {"order_id": "hold-o4"})["status"] == "confirmed"
    assert client.ok("order.get", {"order_id": "hold-o5"})["status"] == "released"
    st = client.ok("stock.get", {"sku": "hold-2"})
    assert (st["own_reserved"], st["available"]) == (1, 1), st
    audit(db)


def test_many_holds_expire(client, db):
    """200 holds of 1 s on one SKU all expire within about a second of their time."""
    client.ok("sku.put", {"sku": "hold-3", "own_on_hand": 200})
    ids = [client.send("reserve", {"order_id": "hm-%03d" % i, "sku": "hold-3", "qty": 1,
                                   "hold_ms": 1000}) for i in range(200)]
    recs = [client.wait(m) for m in ids]
    assert all(e is None for e, r in recs), [e for e, r in recs if e][:3]
    last_exp = max(r["hold_expires_at"] for e, r in recs)
    wait_until(lambda: client.ok("stock.get", {"sku": "hold-3"})["available"] == 200,
               timeout=(last_exp - now_ms()) / 1000.0 + 1.5, step=0.05,
               what="200 holds to expire")
    assert now_ms() <= last_exp + 1200
    rows = db.orders("order_id LIKE 'hm-%%'")
    assert len(rows) == 200 and all(r["status"] == "expired" for r in rows.values())
    audit(db)


def test_hold_ms_range(client):
    client.ok("sku.put", {"sku": "hold-4", "own_on_hand": 1})
    for bad in (0, 999, 86400001, -1000):
        e = client.err("reserve", {"order_id": "hold-bad", "sku": "hold-4", "qty": 1,
                                   "hold_ms": bad})
        assert e["code"] == "invalid" and e.get("field") == "hold_ms", (bad, e)
    r = client.ok("reserve", {"order_id": "hold-max", "sku": "hold-4", "qty": 1,
                              "hold_ms": 86400000})
    assert r["status"] == "held" and r["hold_expires_at"] - r["created_at"] == 86400000, r
