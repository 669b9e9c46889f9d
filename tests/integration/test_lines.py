"""Orders of several lines on one instance.

Goals: two lines of the same SKU with stock 3 (2 + 2) fail and
1 + 2 succeed, never oversold; 1,000 random 1-5-line carts over 20 SKUs from
100 concurrent clients are all-or-nothing in MariaDB, no SKU is oversold and
the counters equal the sums over live orders; confirm, release, ship, hold
expiry and notifications act on the whole order; the lines survive kill -9.

Method: real stockd + MariaDB (tools/stack). Every check reads MariaDB's rows
(one row per line, keyed (order_id, line_no)) besides the replies: an order
that was acknowledged has all its n_lines rows with one status; one that was
refused has none. itestlib.audit() checks the counters against the sums over
live line rows. Bounded: the random run fails if it takes over 120 s.
"""
import random
import threading
import time

from itestlib import audit, wait_until


def rows_of(db, order_id):
    return db.query("SELECT * FROM orders WHERE order_id = %s ORDER BY line_no",
                    (order_id.encode(),))


def put(c, sku, own):
    c.ok("sku.put", {"sku": sku, "own_on_hand": own})


def test_same_sku_lines_are_summed(stockd, db):
    with stockd.client() as c:
        put(c, "ln-tee", 3)
        err = c.err("reserve", {"order_id": "ln-s1",
                                "lines": [{"sku": "ln-tee", "qty": 2}, {"sku": "ln-tee", "qty": 2}]})
        assert err["code"] == "insufficient", err
        assert err["available"] == 3 and err["line"] == 0 and err["sku"] == "ln-tee", err
        assert rows_of(db, "ln-s1") == []
        assert c.ok("stock.get", {"sku": "ln-tee"})["available"] == 3
        rec = c.ok("reserve", {"order_id": "ln-s2",
                               "lines": [{"sku": "ln-tee", "qty": 1}, {"sku": "ln-tee", "qty": 2}]})
        assert rec["status"] == "confirmed" and rec["qty"] == 3, rec
        assert c.ok("stock.get", {"sku": "ln-tee"})["available"] == 0
        rows = rows_of(db, "ln-s2")
        assert len(rows) == 1 and rows[0]["qty"] == 3 and rows[0]["from_own"] == 3
        # A third order finds nothing: never oversold.
        err = c.err("reserve", {"order_id": "ln-s3", "lines": [{"sku": "ln-tee", "qty": 1}]})
        assert err["code"] == "insufficient" and err["line"] == 0
    audit(db, ["ln-tee"])


def test_all_or_nothing_and_whole_order_calls(stockd, db):
    with stockd.client() as c:
        put(c, "ln-a", 5)
        put(c, "ln-b", 1)
        put(c, "ln-c", 5)
        lines = [{"sku": "ln-a", "qty": 2}, {"sku": "ln-c", "qty": 1},
                 {"sku": "ln-b", "qty": 2}, {"sku": "ln-a", "qty": 1}]
        err = c.err("reserve", {"order_id": "ln-x", "lines": lines})
        assert err["code"] == "insufficient" and err["line"] == 2, err
        assert err["sku"] == "ln-b" and err["available"] == 1, err
        assert rows_of(db, "ln-x") == []
        for sku, a in (("ln-a", 5), ("ln-b", 1), ("ln-c", 5)):
            assert c.ok("stock.get", {"sku": sku})["available"] == a
        err = c.err("reserve", {"order_id": "ln-u",
                                "lines": [{"sku": "ln-a", "qty": 1}, {"sku": "ln-nope", "qty": 1}]})
        assert err["code"] == "unknown_sku" and err["line"] == 1 and err["sku"] == "ln-nope", err

        lines[2]["qty"] = 1
        rec = c.ok("reserve", {"order_id": "ln-y", "lines": lines, "hold_ms": 60000})
        assert rec["status"] == "held" and rec["n_lines"] == 3 and rec["qty"] == 5, rec
        got = [(l["line"], l["sku"], l["qty"], l["status"]) for l in rec["lines"]]
        assert got == [(0, "ln-a", 3, "held"), (1, "ln-c", 1, "held"), (2, "ln-b", 1, "held")], got
        rows = rows_of(db, "ln-y")
        assert [r["sku"] for r in rows] == ["ln-a", "ln-c", "ln-b"]
        assert {r["status"] for r in rows} == {"held"} and {r["n_lines"] for r in rows} == {3}
        # A retry is the record; other lines under the same order_id conflict.
        again = c.ok("reserve", {"order_id": "ln-y", "lines": lines, "hold_ms": 60000})
        assert again["created_at"] == rec["created_at"]
        assert c.err("reserve", {"order_id": "ln-y", "lines": lines[:2]})["code"] == "conflict"
        assert c.err("reserve", {"order_id": "ln-y", "sku": "ln-a", "qty": 3})["code"] == "conflict"

        conf = c.ok("confirm", {"order_id": "ln-y"})
        assert conf["status"] == "confirmed" and all(l["status"] == "confirmed" for l in conf["lines"])
        assert {r["status"] for r in rows_of(db, "ln-y")} == {"confirmed"}
        got = c.ok("order.get", {"order_id": "ln-y"})
        assert got["n_lines"] == 3 and got["status"] == "confirmed"
        ship = c.ok("ship", {"order_id": "ln-y"})
        assert ship["status"] == "shipped"
        assert {r["status"] for r in rows_of(db, "ln-y")} == {"shipped"}
        err = c.err("release", {"order_id": "ln-y"})
        assert err["code"] == "invalid_state" and err["status"] == "shipped"
        assert c.ok("stock.get", {"sku": "ln-b"})["own_on_hand"] == 0

        # Release returns every line's stock.
        rec = c.ok("reserve", {"order_id": "ln-z", "lines": [{"sku": "ln-a", "qty": 2},
                                                             {"sku": "ln-c", "qty": 4}]})
        assert c.ok("release", {"order_id": "ln-z"})["status"] == "released"
        assert {r["status"] for r in rows_of(db, "ln-z")} == {"released"}
        assert c.ok("stock.get", {"sku": "ln-c"})["available"] == 4
    audit(db, ["ln-a", "ln-b", "ln-c"])


def test_cart_hold_expires_whole(stockd, db):
    with stockd.client() as c:
        put(c, "ln-h1", 2)
        put(c, "ln-h2", 2)
        sub = stockd.client()
        sub.subscribe()
        c.ok("reserve", {"order_id": "ln-h", "hold_ms": 1000,
                         "lines": [{"sku": "ln-h1", "qty": 2}, {"sku": "ln-h2", "qty": 1}]})
        assert c.ok("stock.get", {"sku": "ln-h1"})["available"] == 0
        wait_until(lambda: {r["status"] for r in rows_of(db, "ln-h")} == {"expired"}, 10,
                   what="the whole cart expired")
        # MariaDB shows the commit a moment before stockd has read its reply
        # (readers see a batch once stockd knows it committed): wait for that.
        wait_until(lambda: c.ok("stock.get", {"sku": "ln-h1"})["available"] == 2, 2,
                   what="stockd saw the expiry commit")
        assert c.ok("stock.get", {"sku": "ln-h2"})["available"] == 2
        assert c.err("confirm", {"order_id": "ln-h"})["code"] == "expired"
        # One notification, of the whole order.
        upd = sub.next_order_update(timeout=5)
        assert upd is not None and upd["order_id"] == "ln-h" and upd["status"] == "expired", upd
        assert upd["n_lines"] == 2 and len(upd["lines"]) == 2
        assert sub.next_order_update(timeout=0.5) is None
        sub.close()
    audit(db, ["ln-h1", "ln-h2"])


def test_lines_survive_kill9(stockd, db):
    with stockd.client() as c:
        put(c, "ln-k1", 4)
        put(c, "ln-k2", 4)
        c.ok("reserve", {"order_id": "ln-k", "hold_ms": 60000,
                         "lines": [{"sku": "ln-k1", "qty": 1}, {"sku": "ln-k2", "qty": 3}]})
    stockd.kill9()
    stockd.start()
    with stockd.client() as c:
        got = c.ok("order.get", {"order_id": "ln-k"})
        assert got["n_lines"] == 2 and got["status"] == "held", got
        assert [l["sku"] for l in got["lines"]] == ["ln-k1", "ln-k2"]
        assert c.ok("confirm", {"order_id": "ln-k"})["status"] == "confirmed"
        assert {r["status"] for r in rows_of(db, "ln-k")} == {"confirmed"}
    audit(db, ["ln-k1", "ln-k2"])


N_SKUS = 20
N_CLIENTS = 100
N_CARTS = 1000


def random_carts(seed):
    rnd = random.Random(seed)
    carts = []
    for i in range(N_CARTS):
        n = rnd.randint(1, 5)
        lines = [{"sku": "ln-r%02d" % rnd.randrange(N_SKUS), "qty": rnd.randint(1, 3)}
                 for _ in range(n)]
        hold = rnd.random() < 0.5
        then = rnd.choice(["confirm", "release", "none"]) if hold else "none"
        carts.append(("ln-rc%04d" % i, lines, hold, then))
    return carts


def run_random_carts(addr_client, db, seed, stock_of):
    """Sends the carts from N_CLIENTS concurrent connections; returns
    {order_id: (error or None, result, lines, final)} once all are answered."""
    carts = random_carts(seed)
    outcome = {}
    problems = []
    lock = threading.Lock()

    def worker(k):
        try:
            with addr_client() as c:
                for order_id, lines, hold, then in carts[k::N_CLIENTS]:
                    p = {"order_id": order_id, "lines": lines}
                    if hold:
                        p["hold_ms"] = 60000
                    err, res = c.call("reserve", p, timeout=60)
                    final = None
                    if err is None and then != "none":
                        err2, res2 = c.call(then, {"order_id": order_id}, timeout=60)
                        if err2 is not None:
                            raise AssertionError("%s %s: %r" % (then, order_id, err2))
                        final = res2["status"]
                    elif err is None:
                        final = res["status"]
                    with lock:
                        outcome[order_id] = (err, res, lines, final)
        except Exception as e:  # noqa: BLE001
            with lock:
                problems.append(repr(e))

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(N_CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts), "carts did not finish in 120 s"
    assert not problems, problems[:5]
    assert len(outcome) == N_CARTS
    return outcome, time.monotonic() - t0


def check_all_or_nothing(db, outcome):
    """Every acknowledged cart has all its line rows with one status (the
    one it ended in); every refused cart has none; the refusals are ones
    the protocol allows."""
    rows = {}
    for r in db.query("SELECT order_id, line_no, n_lines, sku, qty, status FROM orders "
                      "WHERE order_id LIKE 'ln-rc%%'"):
        oid = r["order_id"].decode() if isinstance(r["order_id"], bytes) else r["order_id"]
        rows.setdefault(oid, []).append(r)
    ok = refused = 0
    for oid, (err, res, lines, final) in outcome.items():
        got = rows.get(oid, [])
        if err is not None:
            assert err["code"] == "insufficient", (oid, err)
            assert 0 <= err["line"] < len(lines) and err["sku"] == lines[err["line"]]["sku"], err
            assert got == [], (oid, got)
            refused += 1
            continue
        ok += 1
        want = {}
        for l in lines:
            want[l["sku"]] = want.get(l["sku"], 0) + l["qty"]
        assert len(got) == len(want), (oid, got)
        assert {r["n_lines"] for r in got} == {len(want)}, (oid, got)
        assert {r["sku"]: r["qty"] for r in got} == want, (oid, got)
        assert {r["status"] for r in got} == {final}, (oid, final, got)
    return ok, refused


def test_random_carts_100_clients(stockd, db):
    stock = {}
    rnd = random.Random(8)
    with stockd.client() as c:
        for i in range(N_SKUS):
            stock["ln-r%02d" % i] = rnd.randint(40, 120)
            put(c, "ln-r%02d" % i, stock["ln-r%02d" % i])
    outcome, secs = run_random_carts(lambda: stockd.client(timeout=60), db, 8, stock)
    ok, refused = check_all_or_nothing(db, outcome)
    assert ok > 100 and refused > 100, (ok, refused)  # both paths were exercised
    rows = audit(db, list(stock))
    for sku, r in rows.items():
        assert r["own_on_hand"] == stock[sku]
    print("1000 carts from 100 clients: %d acknowledged, %d refused, %.1f s" % (ok, refused, secs))


def test_carts_while_mariadb_stopped(make_stockd):
    """Carts in flight when MariaDB freezes: none is acknowledged; each is
    `unavailable` (maybe outcome unknown: its batch, spanning several SKUs,
    stays blocked until settled) or `deadline`. After SIGCONT a retry of
    every order_id settles it: all lines in MariaDB or none, counters =
    sums (the unknown batches were resolved whole, never half)."""
    from itestlib import mariadb_stopped
    s = make_stockd(args=["--commit-timeout-ms", "1000", "--default-deadline-ms", "1000"],
                    name="itest-lines-stop")
    db = s.db
    skus = ["ln-st%d" % i for i in range(4)]
    with s.client() as c:
        for k in skus:
            put(c, k, 100)
    conns = [s.client(timeout=15) for _ in range(2)]
    carts = {}
    replies = {}
    try:
        with mariadb_stopped():
            sent = {}
            for i in range(16):
                lines = [{"sku": skus[(i + j) % 4], "qty": 1 + j} for j in range(2 + i % 3)]
                oid = "ln-stop-%02d" % i
                carts[oid] = lines
                c = conns[i % 2]
                sent[oid] = (c, c.send("reserve", {"order_id": oid, "lines": lines}))
            for oid, (c, mid) in sent.items():
                replies[oid] = c.wait(mid, timeout=10)
            time.sleep(2.0)  # the first settling attempts time out too
    finally:
        for c in conns:
            c.close()
    codes = {}
    for oid, (err, res) in replies.items():
        assert err is not None, "a cart was acknowledged while MariaDB was stopped: %s" % oid
        assert err["code"] in ("unavailable", "deadline"), err
        codes[oid] = err["code"]

    def settled():
        with s.client(timeout=5) as c:
            err, _ = c.call("reserve", {"order_id": "ln-stop-probe",
                                        "lines": [{"sku": skus[0], "qty": 1}]}, timeout=5)
            return err is None
    wait_until(settled, timeout=30, step=0.25, what="reserve to succeed after SIGCONT")
    with s.client(timeout=10) as c:
        for oid, lines in carts.items():
            rec = c.ok("reserve", {"order_id": oid, "lines": lines})
            assert rec["status"] == "confirmed", rec
    for oid, lines in carts.items():
        rows = rows_of(db, oid)
        n = len({l["sku"] for l in lines})
        assert len(rows) == n and {r["status"] for r in rows} == {"confirmed"}, (oid, rows)
    audit(db, skus)
    print("carts while MariaDB stopped: %s" % sorted(set(codes.values())))
