"""Memory bounded by live orders, idempotency across eviction.

An order that has ended and holds no stock leaves memory
--order-retention-ms after its last change; startup loads only live and
recent orders. Asserted here against a real MariaDB:
- ended orders leave memory (stats), live ones stay, the counters do not move;
- order.get of an evicted order answers its stored record; of an order that
  never existed, not_found (after MariaDB said so);
- a retried reserve of an evicted order answers its original record, never a
  second reservation; one with another qty is a conflict;
- after a restart the old ended orders are not loaded, and a retried reserve
  of one is refused once by MariaDB's primary key (retryable, nothing moves)
  and then answers its original record;
- with --preload-skus no the SKU of an evicted order is loaded first;
- MariaDB's rows stay consistent (audit), one row per order.
"""
import time

from itestlib import audit

RETENTION_MS = 800
ARGS = ["--order-retention-ms", str(RETENTION_MS)]


def state(c):
    return c.ok("stats")["state"]


def wait_evicted(c, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        st = state(c)
        if st["orders_evicted"] >= n:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.1)


def reserve_until_answered(c, params, tries=5):
    """A gateway's retry loop: retryable errors are retried."""
    for _ in range(tries):
        err, res = c.call("reserve", params)
        if err is None or not err.get("retryable"):
            return err, res
        time.sleep(0.05)
    return err, res


def test_evicted_orders_read_back(make_stockd):
    s = make_stockd(args=ARGS, name="retention")
    with s.client() as c:
        c.ok("sku.put", {"sku": "ret-a", "own_on_hand": 10})
        first = {}
        for i in range(1, 6):
            first[i] = c.ok("reserve", {"order_id": "ret-o%d" % i, "sku": "ret-a", "qty": 1})
        c.ok("release", {"order_id": "ret-o1"})
        c.ok("release", {"order_id": "ret-o2"})
        c.ok("ship", {"order_id": "ret-o3"})
        before = state(c)
        st = wait_evicted(c, 3)
        assert st["orders"] == before["orders"] - 3, st
        assert st["order_retention_ms"] == RETENTION_MS
        avail = c.ok("stock.get", {"sku": "ret-a"})["available"]
        assert avail == 7   # 10, one shipped, two confirmed

        # order.get: the stored record, read back.
        got = c.ok("order.get", {"order_id": "ret-o1"})
        assert got["status"] == "released" and got["created_at"] == first[1]["created_at"]
        assert state(c)["orders_reloaded"] >= 1
        err, _ = c.call("order.get", {"order_id": "ret-never"})
        assert err["code"] == "not_found", err

        # A retried reserve of an evicted order: its record, nothing moves.
        err, res = reserve_until_answered(c, {"order_id": "ret-o2", "sku": "ret-a", "qty": 1})
        assert err is None, (err, state(c))
        assert res["status"] == "released" and res["created_at"] == first[2]["created_at"]
        err, _ = reserve_until_answered(c, {"order_id": "ret-o3", "sku": "ret-a", "qty": 2})
        assert err["code"] == "conflict", err
        assert c.ok("stock.get", {"sku": "ret-a"})["available"] == 7
        # A change of an evicted order is decided on its record, as in memory:
        # confirming a shipped order answers the shipped record.
        err, res = c.call("confirm", {"order_id": "ret-o3"})
        assert err is None and res["status"] == "shipped", (err, res)
    rows = s.db.query("SELECT order_id, COUNT(*) AS n FROM orders GROUP BY order_id, line_no"
                      " HAVING COUNT(*) > 1")
    assert rows == [], rows
    audit(s.db)


def test_restart_loads_live_orders_only(make_stockd):
    s = make_stockd(args=ARGS, name="retention-restart")
    with s.client() as c:
        c.ok("sku.put", {"sku": "rr-a", "own_on_hand": 10})
        first = c.ok("reserve", {"order_id": "rr-old", "sku": "rr-a", "qty": 3})
        c.ok("ship", {"order_id": "rr-old"})
        c.ok("reserve", {"order_id": "rr-live", "sku": "rr-a", "qty": 1})
    time.sleep(RETENTION_MS / 1000.0 + 0.3)
    s.restart()
    with s.client() as c:
        st = state(c)
        assert st["orders"] == 1, st      # rr-live only
        avail = c.ok("stock.get", {"sku": "rr-a"})["available"]
        assert avail == 6
        # Not in memory, not known to be stored: the primary key refuses the
        # first try (retryable, nothing moves), the retry reads it back.
        err, res = c.call("reserve", {"order_id": "rr-old", "sku": "rr-a", "qty": 3})
        if err is not None:
            assert err["retryable"] and err["code"] == "unavailable", err
            assert state(c)["order_key_refusals"] >= 1
            err, res = reserve_until_answered(c, {"order_id": "rr-old", "sku": "rr-a", "qty": 3})
        assert err is None, err
        assert res["status"] == "shipped" and res["created_at"] == first["created_at"]
        assert c.ok("stock.get", {"sku": "rr-a"})["available"] == avail
        assert c.ok("order.get", {"order_id": "rr-live"})["status"] == "confirmed"
    n = s.db.query("SELECT COUNT(*) AS n FROM orders WHERE order_id='rr-old'")[0]["n"]
    assert n == 1
    audit(s.db)


def test_cold_sku_of_an_evicted_order(make_stockd):
    s = make_stockd(args=ARGS + ["--preload-skus", "no"], name="retention-cold")
    with s.client() as c:
        c.ok("sku.put", {"sku": "rc-a", "own_on_hand": 4})
        first = c.ok("reserve", {"order_id": "rc-o", "sku": "rc-a", "qty": 1})
        c.ok("release", {"order_id": "rc-o"})
    time.sleep(RETENTION_MS / 1000.0 + 0.3)
    s.restart()
    with s.client() as c:
        st = state(c)
        assert st["orders"] == 0 and st["skus"] == 0, st   # nothing live: nothing loaded
        got = c.ok("order.get", {"order_id": "rc-o"})
        assert got["status"] == "released" and got["created_at"] == first["created_at"]
        assert c.ok("stock.get", {"sku": "rc-a"})["available"] == 4
    audit(s.db)


def test_retention_zero_keeps_everything(make_stockd):
    s = make_stockd(args=["--order-retention-ms", "0"], name="retention-off")
    with s.client() as c:
        c.ok("sku.put", {"sku": "rz-a", "own_on_hand": 2})
        c.ok("reserve", {"order_id": "rz-o", "sku": "rz-a", "qty": 1})
        c.ok("release", {"order_id": "rz-o"})
        time.sleep(0.5)
        st = state(c)
        assert st["orders_evicted"] == 0 and st["orders"] == 1 and st["order_retention_ms"] == 0
        err, _ = c.call("order.get", {"order_id": "rz-never"})
        assert err["code"] == "not_found"
        assert state(c)["order_reads"] == 0   # memory is the whole truth: no read


def test_restart_finds_old_live_orders(make_stockd):
    """Startup reads live orders through the indexes of schema 7, whatever
    their age: rows written long ago by hand, one of each kind. Loaded:
    held, confirmed, purchased with own units, purchased or shipped with
    supplier units not yet settled. Not loaded: what has ended (released,
    shipped and settled, shipped from own stock, failed). The SKU's counters
    are the sums over the loaded lines, so a miss would set it aside."""
    s = make_stockd(args=ARGS, name="retention-old-live")
    s.stop()
    old = int(time.time() * 1000) - 40 * 86400 * 1000
    far = int(time.time() * 1000) + 86400 * 1000
    rows = [  # order_id, status, from_own, from_supplier, settled, hold, live
        ("ol-held", "held", 1, 0, 0, far, True),
        ("ol-conf", "confirmed", 1, 1, 0, None, True),
        ("ol-pur-own", "purchased", 1, 1, 1, None, True),
        ("ol-pur-sup", "purchased", 0, 2, 0, None, True),
        ("ol-ship-sup", "shipped", 0, 1, 0, None, True),
        ("ol-ship-done", "shipped", 0, 1, 1, None, False),
        ("ol-ship-own", "shipped", 2, 0, 0, None, False),
        ("ol-rel", "released", 1, 0, 0, None, False),
        ("ol-fail", "failed", 0, 1, 0, None, False),
    ]
    own_res = sum(r[2] for r in rows if r[1] in ("held", "confirmed", "purchased"))
    sup_res = sum(r[3] for r in rows if r[1] in ("held", "confirmed") or
                  (r[1] in ("purchased", "shipped") and r[4] == 0))
    s.db.query("INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,"
               "supplier_sellable,supplier_reserved,supplier_synced_at,mapping,epoch,version,"
               "updated_at) VALUES ('ol-a',20,%s,0,0,%s,0,'none',1,0,%s)",
               (own_res, sup_res, old))
    for oid, status, own, sup, settled, hold, _ in rows:
        s.db.query("INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,"
                   "from_supplier,available,created_at,updated_at,hold_expires_at,"
                   "supplier_settled) VALUES (%s,0,1,'ol-a',%s,%s,%s,%s,0,%s,%s,%s,%s)",
                   (oid, own + sup, status, own, sup, old, old, hold, settled))
    s.start()
    with s.client() as c:
        st = state(c)
        assert st["orders"] == sum(1 for r in rows if r[6]), st
        assert st["skus_set_aside"] == 0 and st["orders_set_aside"] == 0, st
        assert st["orders_reloaded"] == 0, st
        for oid, status, *_ in rows:
            assert c.ok("order.get", {"order_id": oid})["status"] == status
        # The ended ones came back from MariaDB on demand, the live ones
        # were there already.
        assert state(c)["orders_reloaded"] == sum(1 for r in rows if not r[6])
