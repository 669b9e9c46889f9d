"""What MariaDB holds never stops stockd.

A database is seeded (by SQL, the way an older version, a bug or a hand
would leave it) with every kind of row stockd cannot trust next to healthy
ones. stockd must start on it, serve the healthy SKUs (and the healthy part
of a SKU whose order was set aside), refuse what was set aside with a clear
`unavailable` (set_aside, not retryable), never sell from wrong counters,
and raise one support alert per thing set aside: alerts.list, MariaDB's
alerts table and the log. The same database is then loaded the other two
ways: SKUs loaded on first use (--preload-skus no) and takeovers (a
sharded node, --peers).

Bounded: every call has a timeout, every stockd is stopped by pid.
"""
import time

import pytest

from itestlib import alerts_list, wait_until

FAR = 4102444800000  # 2100-01-01, a hold that has not lapsed
NOW = int(time.time() * 1000)

HEALTHY = ["ok-a", "ok-b"]


def sql(db, stmt, args=None):
    db.query(stmt, args)


def put_sku(c, sku, own):
    c.ok("sku.put", {"sku": sku, "own_on_hand": own})


def order_row(db, order_id, sku, qty, status, own=None, sup=0, line_no=0, n_lines=1,
              hold=None, settled=0):
    """An orders row as stockd writes it (order_id may be bytes)."""
    own = qty - sup if own is None else own
    oid = order_id if isinstance(order_id, bytes) else order_id.encode()
    sql(db, "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,"
            "from_supplier,available,created_at,updated_at,hold_expires_at,supplier_settled)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,0,%s,%s,%s,%s)",
        (oid, line_no, n_lines, sku.encode(), qty, status, own, sup, NOW, NOW, hold, settled))


def sku_row(db, sku, own_on_hand, own_reserved=0, supplier_reserved=0, mapping="none"):
    sql(db, "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,"
            "supplier_reserved,supplier_synced_at,mapping,epoch,version,updated_at)"
            " VALUES (%s,%s,%s,0,0,%s,0,%s,1,0,%s)",
        (sku.encode() if isinstance(sku, str) else sku, own_on_hand, own_reserved,
         supplier_reserved, mapping, NOW))


def seed(db, s):
    """Healthy state through stockd, then the bad rows by hand (stockd stopped)."""
    with s.client() as c:
        for k in HEALTHY:
            put_sku(c, k, 10)
        c.ok("reserve", {"order_id": "good-1", "sku": "ok-a", "qty": 2, "hold_ms": 600000})
        c.ok("reserve", {"order_id": "good-2", "sku": "ok-b", "qty": 1, "hold_ms": 600000})
        c.ok("confirm", {"order_id": "good-2"})
    s.stop()
    # 1. A cart part without its siblings (what a forged part reserve left):
    #    line 0 of 2, its hold long lapsed; its SKU's counters hold its 2 units.
    sku_row(db, "part-sku", 10, own_reserved=2)
    order_row(db, "lone-part", "part-sku", 2, "held", n_lines=2, hold=NOW - 3600000)
    # 2. Counters that do not match the orders: 5 reserved, no orders.
    sku_row(db, "drift-sku", 10, own_reserved=5)
    # 3. An unknown status name: the order and its SKU (whose counters can
    #    no longer be checked) are set aside.
    sku_row(db, "status-sku", 10, own_reserved=1)
    order_row(db, "odd-status", "status-sku", 1, "cancelling")
    # 4. A SKU row that does not parse: an unknown mapping.
    sku_row(db, "map-sku", 10, mapping="weird")
    # 5. A counter out of range.
    sku_row(db, "neg-sku", -3)
    # 6. A held order without an expiry, on a SKU that serves the rest.
    sku_row(db, "hold-sku", 10, own_reserved=3)
    order_row(db, "no-expiry", "hold-sku", 3, "held", hold=None)
    # 7. A cart with a gap: lines 0 and 2 of 3.
    sku_row(db, "gap-a", 10, own_reserved=1)
    sku_row(db, "gap-b", 10, own_reserved=1)
    order_row(db, "gappy", "gap-a", 1, "held", line_no=0, n_lines=3, hold=FAR)
    order_row(db, "gappy", "gap-b", 1, "held", line_no=2, n_lines=3, hold=FAR)
    # 8. Lines that disagree on n_lines.
    sku_row(db, "nl-sku", 10, own_reserved=2)
    order_row(db, "nlines", "nl-sku", 1, "confirmed", line_no=0, n_lines=2)
    order_row(db, "nlines", "nl-sku", 1, "confirmed", line_no=1, n_lines=3)
    # 9. An order_id that is not UTF-8 (no client could have sent it).
    sku_row(db, "utf-sku", 10, own_reserved=1)
    order_row(db, b"\xff\xfe", "utf-sku", 1, "confirmed")
    # 10. An order whose SKU has no row.
    order_row(db, "orphan", "ghost-sku", 1, "confirmed")
    # 11. A supplier whose trust is out of range.
    sql(db, "INSERT INTO supplier (supplier_id,trust,trust_ceiling,event_mode,event_trust,"
            "updated_at) VALUES ('sup-bad',7,1,0,0.5,%s)", (NOW,))


SKUS_ASIDE = ["drift-sku", "status-sku", "map-sku", "neg-sku"]
ORDERS_ASIDE = {"lone-part": "part-sku", "odd-status": "status-sku", "no-expiry": "hold-sku",
                "gappy": "gap-a", "nlines": "nl-sku", "orphan": "ghost-sku"}
# SKUs that serve, with what they can sell (units of orders set aside stay held).
SERVING = {"ok-a": 8, "ok-b": 9, "part-sku": 8, "hold-sku": 7, "gap-a": 9, "gap-b": 9,
           "nl-sku": 8, "utf-sku": 9}


def assert_set_aside(err, what):
    assert err is not None, what
    assert err["code"] == "unavailable", err
    assert err["retryable"] is False, err
    assert err.get("set_aside") is True, err
    assert "set aside" in err["message"] and what in err["message"], err


def check_serving(s, skip=()):
    with s.client() as c:
        for sku, avail in SERVING.items():
            if sku in skip:
                continue
            st = c.ok("stock.get", {"sku": sku})
            assert st["available"] == avail, (sku, st)
        # The healthy orders are there.
        assert c.ok("order.get", {"order_id": "good-1"})["status"] == "held"
        assert c.ok("order.get", {"order_id": "good-2"})["status"] == "confirmed"
        # A SKU with an order set aside sells the rest, never its units.
        oid = "new-%d-%d" % (s.port, s.starts)
        r = c.ok("reserve", {"order_id": oid, "sku": "part-sku", "qty": 8, "hold_ms": 600000})
        assert r["status"] == "held"
        err, _ = c.call("reserve", {"order_id": oid + "x", "sku": "part-sku", "qty": 1})
        assert err is not None and err["code"] == "insufficient", err
        c.ok("release", {"order_id": oid})
        # What was set aside is refused, reads included, with why.
        for sku in SKUS_ASIDE:
            err, _ = c.call("stock.get", {"sku": sku})
            assert_set_aside(err, sku)
            err, _ = c.call("reserve", {"order_id": "try-" + sku, "sku": sku, "qty": 1})
            assert_set_aside(err, sku)
            err, _ = c.call("sku.put", {"sku": sku, "own_on_hand": 1})
            assert_set_aside(err, sku)
        for oid in ORDERS_ASIDE:
            err, _ = c.call("order.get", {"order_id": oid})
            assert_set_aside(err, oid)
            err, _ = c.call("release", {"order_id": oid})
            assert_set_aside(err, oid)
        # Reusing a set-aside order_id would collide with its rows.
        err, _ = c.call("reserve", {"order_id": "lone-part", "sku": "ok-b", "qty": 1})
        assert_set_aside(err, "lone-part")
        # A supplier whose row could not be used trusts nothing until set again.
        sup = c.ok("supplier.get", {"supplier_id": "sup-bad"})
        assert sup["trust"] == 0, sup


def wait_alerts(s, want_skus, want_orders, timeout=15):
    def seen():
        with s.client() as c:
            al = [a for a in alerts_list(c) if a.get("kind") == "set_aside"]
        return al if (want_skus <= {a["sku"] for a in al} and
                      want_orders <= {a.get("order_id") for a in al}) else None
    return wait_until(seen, timeout, step=0.2, what="set_aside alerts")


@pytest.fixture(scope="module")
def seeded(make_stockd):
    s = make_stockd(name="itest-rows")
    seed(s.db, s)
    return s


def test_starts_serves_and_alerts(seeded):
    s = seeded
    s.start()
    check_serving(s)
    al = wait_alerts(s, set(SKUS_ASIDE) | {"sup-bad"}, set(ORDERS_ASIDE) | {"x'fffe'"})
    reasons = {a.get("order_id") or a["sku"]: a["reason"] for a in al}
    assert "2 lines" in reasons["lone-part"] and "1 of its" in reasons["lone-part"], reasons
    assert "counters do not match" in reasons["drift-sku"], reasons
    assert "cancelling" in reasons["odd-status"], reasons
    assert "odd-status" in reasons["status-sku"], reasons
    assert "mapping" in reasons["map-sku"], reasons
    assert "own_on_hand" in reasons["neg-sku"], reasons
    assert "hold_expires_at" in reasons["no-expiry"], reasons
    assert "ghost-sku" in reasons["orphan"], reasons
    # The same alerts are in MariaDB (written by a batch, like every alert)...
    rows = s.db.query("SELECT sku, order_id, reason FROM alerts WHERE kind='set_aside'")
    keys = {r["order_id"] or r["sku"] for r in rows}
    assert set(SKUS_ASIDE) <= keys and set(ORDERS_ASIDE) <= keys, keys
    # ... and in the log, naming each.
    with open(s.log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    for k in SKUS_ASIDE + list(ORDERS_ASIDE):
        assert "set aside" in log and k in log, k
    # Nothing was rewritten: the bad rows are as they were, for support.
    assert s.db.sku("drift-sku")["own_reserved"] == 5
    assert s.db.order("lone-part")["status"] == "held"
    # And it starts again on the same rows.
    s.restart()
    check_serving(s)


def test_cold_loads(seeded, make_stockd):
    """SKUs loaded on first use: a SKU row that cannot be trusted is set
    aside at that load, the others load."""
    s = make_stockd(args=["--preload-skus", "no"], db=seeded.db, name="itest-rows-cold")
    before = len(s.db.query("SELECT id FROM alerts WHERE sku='drift-sku'"))
    check_serving(s)
    wait_until(lambda: len(s.db.query("SELECT id FROM alerts WHERE sku='drift-sku'")) > before,
               15, step=0.2, what="a new alert for drift-sku")
    s.stop()


def test_takeover(seeded, make_stockd):
    """A sharded node takes every SKU over on first use: the same rows are
    set aside there, the healthy ones served."""
    s = make_stockd(db=seeded.db, name="itest-rows-shard", start=False)
    s.args += ["--peers", "%s=%s" % (s.name, s.addr)]
    s.start()
    with s.client() as c:
        for sku, avail in SERVING.items():
            if sku == "part-sku":
                continue  # sharded, the lone part is a part: its lapse gets settled
            assert c.ok("stock.get", {"sku": sku})["available"] == avail, sku
        for sku in SKUS_ASIDE:
            err, _ = c.call("stock.get", {"sku": sku})
            assert_set_aside(err, sku)
        err, _ = c.call("reserve", {"order_id": "t-1", "sku": "drift-sku", "qty": 1})
        assert_set_aside(err, "drift-sku")
        r = c.ok("reserve", {"order_id": "t-2", "sku": "ok-b", "qty": 1, "hold_ms": 600000})
        assert r["status"] == "held"
    s.stop()
