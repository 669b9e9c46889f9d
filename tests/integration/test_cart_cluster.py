"""Orders of several lines across shards: the receiving node
coordinates, every line is a part on its SKU's owner, one decision row in
MariaDB (cart_decisions) settles the order, all lines or none.

Method: `tools/cluster up 3` (n1..n3 on one fresh database, HAProxy in
front), every node with --cart-hold-ms 2000 so that parts left behind by a
dead coordinator settle within seconds. Then, reading MariaDB:
- a 3-line cart over SKUs of three different owners: confirmed whole, the
  stock of each owner moved; a cart with one short line fails whole, naming
  the client's line and SKU with its availability, nothing stays held;
  order.get through every node shows the same merged record; held carts are
  confirmed and released through other nodes; lines of one SKU are summed;
- 1,000 random 1-5-line carts over 20 SKUs from 100 concurrent clients
  through HAProxy (retrying unavailable/busy with the same order_id): every
  order is all-or-nothing in MariaDB (all lines with one status, or no line
  live), nothing oversold, counters equal the sums over live orders, every
  success the client was told about is there whole;
- held carts confirmed / released through every node at once, with and
  without a "sku" hint (line 0's, another line's, a SKU not in the order):
  every call answers the whole order, and right after nothing is partial;
- the coordinator killed (SIGKILL) while carts entering through it run, on
  SKUs it does not own: after the hold TTL no part stays held, every order
  is all-or-nothing, and a retry of each order_id through another node ends
  consistent with MariaDB.
Skipped (with the reason) until a cluster accepts reserve with lines.
Bounded: every loop has a time limit; the module takes well under 90 s.
"""
import random
import threading
import time

import pytest

from itestlib import audit, wait_until
from stockrpc import RpcClosed, RpcTimeout
from test_cluster import Cluster, print_logs_on_failure

HOLD_MS = 2000            # --cart-hold-ms: parts of a crashed coordinator settle after this
RETRYABLE = ("unavailable", "busy", "deadline")
LIVE = ("held", "confirmed", "purchased")


@pytest.fixture(scope="module")
def cluster(prereqs, tmp_path_factory):
    with Cluster.running(tmp_path_factory, "cart", stockd_args=(
            "--default-deadline-ms 3000 --cart-hold-ms %d" % HOLD_MS)) as cl:
        yield cl


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    print_logs_on_failure(request, "cluster")


# ---------------------------------------------------------------- helpers
def one_per_owner(ring, prefix, names):
    """One SKU name per node in names (prefix + i), in the order of names."""
    out = {}
    i = 0
    while len(out) < len(names) and i < 10000:
        k = "%s%d" % (prefix, i)
        o = ring.owner(k)
        if o in names and o not in out:
            out[o] = k
        i += 1
    return [out[n] for n in names]


def put_stock(c, skus, qty):
    for k in skus:
        c.ok("sku.put", {"sku": k, "own_on_hand": qty})


def available(c, sku):
    return c.ok("stock.get", {"sku": sku})["available"]


def lines_of(db, order_id):
    return db.query("SELECT line_no, n_lines, sku, qty, status, from_own, from_supplier "
                    "FROM orders WHERE order_id = %s ORDER BY line_no", (order_id.encode(),))


def all_or_nothing(db, like):
    """Orders whose order_id is LIKE like that break all-or-nothing: some
    line live while a line is missing or another status. Returns
    {order_id: rows} of the bad ones and the rows by order."""
    rows = db.query("SELECT order_id, line_no, n_lines, sku, qty, status FROM orders "
                    "WHERE order_id LIKE %s ORDER BY order_id, line_no", (like,))
    by = {}
    for r in rows:
        by.setdefault(r["order_id"], []).append(r)
    bad = {}
    for oid, rs in by.items():
        live = [r for r in rs if r["status"] in LIVE]
        if not live:
            continue
        whole = len(rs) == rs[0]["n_lines"] and sorted(r["line_no"] for r in rs) == \
            list(range(rs[0]["n_lines"]))
        if not whole or len({r["status"] for r in rs}) != 1:
            bad[oid] = rs
    return bad, by


def check_record(o, order_id, lines):
    """The merged record of a cart: sums and one entry per distinct SKU."""
    want = {}
    order = []
    for ln in lines:
        if ln["sku"] not in want:
            order.append(ln["sku"])
            want[ln["sku"]] = 0
        want[ln["sku"]] += ln["qty"]
    assert o["order_id"] == order_id, o
    assert o["qty"] == sum(want.values()), o
    assert o["from_own"] + o["from_supplier"] == o["qty"], o
    assert o.get("n_lines", len(order)) == len(order), o
    got = o["lines"]
    assert [x["sku"] for x in got] == order, o
    assert [x["qty"] for x in got] == [want[k] for k in order], o
    assert [x["line"] for x in got] == list(range(len(order))), o
    assert o["sku"] == order[0], o
    for x in got:
        assert x["status"] == o["status"], o


# ---------------------------------------------------------------- (a)
def test_three_owners_all_or_nothing(cluster):
    ring = cluster.ring()
    names = sorted(cluster.nodes)
    a, b, c3 = one_per_owner(ring, "ct-a-", names)
    db = cluster.db
    with cluster.client() as c:
        put_stock(c, (a, b, c3), 5)
        # Confirmed at once, whole.
        lines = [{"sku": a, "qty": 2}, {"sku": b, "qty": 3}, {"sku": c3, "qty": 1}]
        o = c.ok("reserve", {"order_id": "ct-ok", "lines": lines})
        assert o["status"] == "confirmed", o
        check_record(o, "ct-ok", lines)
        assert [available(c, k) for k in (a, b, c3)] == [3, 2, 4]
        rows = lines_of(db, "ct-ok")
        assert [(r["sku"], r["qty"], r["status"], r["n_lines"]) for r in rows] == \
            [(a, 2, "confirmed", 3), (b, 3, "confirmed", 3), (c3, 1, "confirmed", 3)], rows
        # The same order_id again: the same record, nothing moves.
        again = c.ok("reserve", {"order_id": "ct-ok", "lines": lines})
        assert again["status"] == "confirmed" and again["qty"] == 6, again
        assert [available(c, k) for k in (a, b, c3)] == [3, 2, 4]

        # One short line: the whole cart fails, naming the client's line.
        bad = [{"sku": a, "qty": 1}, {"sku": c3, "qty": 1}, {"sku": b, "qty": 10}]
        err = c.err("reserve", {"order_id": "ct-short", "lines": bad})
        assert err["code"] == "insufficient", err
        assert err["line"] == 2 and err["sku"] == b and err["available"] == 2, err
        assert [available(c, k) for k in (a, b, c3)] == [3, 2, 4]
        assert not [r for r in lines_of(db, "ct-short") if r["status"] in LIVE]

        # Unknown SKU on one line: unknown_sku naming it, nothing held.
        err = c.err("reserve", {"order_id": "ct-unk", "lines": [{"sku": a, "qty": 1},
                                                                 {"sku": "ct-nope", "qty": 1}]})
        assert err["code"] == "unknown_sku" and err["line"] == 1 and err["sku"] == "ct-nope", err
        assert available(c, a) == 3

        # Lines naming one SKU are summed before checking (2 + 2 > 3).
        err = c.err("reserve", {"order_id": "ct-sum", "lines": [{"sku": b, "qty": 1},
                                                                 {"sku": a, "qty": 2},
                                                                 {"sku": a, "qty": 2}]})
        assert err["code"] == "insufficient" and err["line"] == 1 and err["sku"] == a, err
        assert err["available"] == 3, err
        summed = [{"sku": a, "qty": 1}, {"sku": b, "qty": 1}, {"sku": a, "qty": 2}]
        o = c.ok("reserve", {"order_id": "ct-sum2", "lines": summed})
        check_record(o, "ct-sum2", summed)
        assert available(c, a) == 0 and available(c, b) == 1

    # order.get through every node: the same merged record.
    seen = []
    for name in names:
        with cluster.node_client(name) as c:
            seen.append(c.ok("order.get", {"order_id": "ct-ok"}))
    for o in seen:
        check_record(o, "ct-ok", lines)
        assert o["status"] == "confirmed"
        assert {k: v for k, v in o.items() if k not in ("available",)} == \
            {k: v for k, v in seen[0].items() if k not in ("available",)}

    # Held, confirmed through a second node, released through a third.
    with cluster.node_client(names[0]) as c:
        put_stock(c, (a, b, c3), 5)
        hl = [{"sku": c3, "qty": 2}, {"sku": b, "qty": 1}]
        o = c.ok("reserve", {"order_id": "ct-held", "lines": hl, "hold_ms": 30000})
        assert o["status"] == "held" and o.get("hold_expires_at"), o
        check_record(o, "ct-held", hl)
    before_c3 = None
    with cluster.node_client(names[1]) as c:
        o = c.ok("confirm", {"order_id": "ct-held"})
        assert o["status"] == "confirmed", o
        check_record(o, "ct-held", hl)
        before_c3 = available(c, c3)
    with cluster.node_client(names[2]) as c:
        o = c.ok("release", {"order_id": "ct-held"})
        assert o["status"] == "released", o
        assert available(c, c3) == before_c3 + 2
        err = c.err("ship", {"order_id": "ct-held"})
        assert err["code"] == "invalid_state", err
    assert {r["status"] for r in lines_of(db, "ct-held")} == {"released"}
    audit(db, [a, b, c3])


def test_held_cart_lapses_whole(cluster):
    """A held cart nobody confirms: every part expires (the owners ask the
    decision row: ABORT), a later confirm answers expired."""
    ring = cluster.ring()
    names = sorted(cluster.nodes)
    skus = one_per_owner(ring, "ct-lapse-", names)
    with cluster.client() as c:
        put_stock(c, skus, 4)
        lines = [{"sku": k, "qty": 1} for k in skus]
        o = c.ok("reserve", {"order_id": "ct-lapse", "lines": lines, "hold_ms": 1000})
        assert o["status"] == "held", o
        wait_until(lambda: {r["status"] for r in lines_of(cluster.db, "ct-lapse")} == {"expired"},
                   10, 0.1, "every part of ct-lapse expired")
        assert [available(c, k) for k in skus] == [4, 4, 4]
        err = c.err("confirm", {"order_id": "ct-lapse"})
        assert err["code"] == "expired", err
        o = c.ok("order.get", {"order_id": "ct-lapse"})
        assert o["status"] == "expired" and len(o["lines"]) == 3, o
    audit(cluster.db, skus)


# ---------------------------------------------------------------- (b)
def call_retrying(c, method, params, deadline):
    """Retries retryable errors with the same params until deadline."""
    while True:
        err, res = c.call(method, params, timeout=15)
        if err is None or err.get("code") not in RETRYABLE or time.monotonic() > deadline:
            return err, res
        time.sleep(0.05)


def test_random_carts_through_haproxy(cluster):
    skus = ["cr-%02d" % i for i in range(20)]
    with cluster.client() as c:
        put_stock(c, skus, 250)
    n_clients, per_client = 100, 10
    told = {}                 # order_id -> (status told, lines)
    errors = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + 45

    def client(ci):
        rnd = random.Random(ci)
        mine = {}
        errs = {}
        try:
            with cluster.client(timeout=15) as c:
                for j in range(per_client):
                    oid = "cr-%03d-%02d" % (ci, j)
                    lines = [{"sku": rnd.choice(skus), "qty": rnd.randint(1, 3)}
                             for _ in range(rnd.randint(1, 5))]
                    mode = rnd.random()
                    params = {"order_id": oid, "lines": lines}
                    if mode >= 0.7:
                        params["hold_ms"] = 20000
                    err, res = call_retrying(c, "reserve", params, stop_at)
                    if err is not None:
                        errs[err["code"]] = errs.get(err["code"], 0) + 1
                        if err["code"] == "insufficient":
                            assert 0 <= err["line"] < len(lines), err
                            assert lines[err["line"]]["sku"] == err["sku"], (err, lines)
                            assert not any(x["sku"] == err["sku"] for x in lines[:err["line"]]), err
                        continue
                    st = res["status"]
                    if mode >= 0.85:
                        err, res = call_retrying(c, "release", {"order_id": oid}, stop_at)
                        st = res["status"] if err is None else "?"
                    elif mode >= 0.7:
                        err, res = call_retrying(c, "confirm", {"order_id": oid}, stop_at)
                        st = res["status"] if err is None else "?"
                    mine[oid] = (st, lines)
        except (RpcClosed, RpcTimeout, OSError) as e:
            errs["transport:" + type(e).__name__] = errs.get("transport", 0) + 1
        with lock:
            told.update(mine)
            for k, v in errs.items():
                errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    took = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "clients still running after 60 s"
    print("carts: %d told ok in %.1f s, errors %r" % (len(told), took, errors))
    assert len(told) > 400, (len(told), errors)
    assert set(errors) <= {"insufficient"} | set(RETRYABLE), errors
    # Parts of attempts that ended unavailable settle within the hold TTL.
    db = cluster.db

    def settled():
        return not db.query("SELECT 1 FROM orders WHERE order_id LIKE 'cr-%%' AND status='held' "
                            "LIMIT 1")
    wait_until(settled, HOLD_MS / 1000 + 8, 0.2, "no part of cr-* held")
    bad, by = all_or_nothing(db, "cr-%")
    assert not bad, "orders not all-or-nothing: %r" % list(bad.items())[:5]
    for oid, (st, lines) in told.items():
        rows = by.get(oid)
        assert rows, "told %s but no rows for %s" % (st, oid)
        n = len({x["sku"] for x in lines})
        assert len(rows) == n, (oid, rows, lines)
        if st != "?":
            assert {r["status"] for r in rows} == {st}, (oid, st, rows)
    audit(db, skus)
    # The engines agree with MariaDB.
    with cluster.client() as c:
        for k in skus:
            row = db.sku(k)
            st = c.ok("stock.get", {"sku": k})
            assert st["own_reserved"] == row["own_reserved"], (k, st, row)


# ---------------------------------------------------------------- (b2)
def test_held_carts_settled_with_and_without_hint(cluster):
    """Held carts confirmed and released through every node, concurrently,
    with no "sku" hint, line 0's SKU, another line's SKU or a SKU the order
    does not have: the hint only saves a lookup, every call answers the
    whole order. Right after (no TTL waited for): no cart is partial, the
    counters equal the sums, MariaDB says what the replies said. (stockbench
    --mix on 3 shards found carts left partial until their hold lapsed.)"""
    ring = cluster.ring()
    names = sorted(cluster.nodes)
    per_owner = [one_per_owner(ring, "ch-%d-" % j, names) for j in range(2)]
    skus = [k for grp in per_owner for k in grp]          # 2 SKUs per owner
    stray = one_per_owner(ring, "ch-stray-", names)       # in no cart
    db = cluster.db
    with cluster.client() as c:
        put_stock(c, skus + stray, 1000)
        # Error data in one instance's key order (available, line, sku).
        err = c.err("reserve", {"order_id": "ch-short", "lines": [
            {"sku": skus[0], "qty": 1}, {"sku": skus[1], "qty": 5000}]})
        assert err["code"] == "insufficient", err
        keys = [k for k in err if k in ("available", "line", "sku")]
        assert keys == ["available", "line", "sku"], err
    n_carts = 72
    carts = {}
    rnd = random.Random(8)
    with cluster.client(timeout=15) as c:
        for i in range(n_carts):
            oid = "ch-%03d" % i
            lines = [{"sku": k, "qty": rnd.randint(1, 3)}
                     for k in rnd.sample(skus, rnd.randint(2, 4))]
            o = c.ok("reserve", {"order_id": oid, "lines": lines, "hold_ms": 30000})
            assert o["status"] == "held", o
            carts[oid] = lines
        # A one-SKU order and an order that does not exist, with wrong hints.
        c.ok("reserve", {"order_id": "ch-one", "sku": skus[0], "qty": 1, "hold_ms": 30000})
    hints = ("none", "line0", "other", "stray")
    told = {}
    failures = []
    lock = threading.Lock()
    deadline = time.monotonic() + 40

    def worker(wi, oids):
        try:
            with cluster.node_client(names[wi % len(names)], timeout=15) as c:
                for j, oid in enumerate(oids):
                    lines = carts[oid]
                    how = hints[(wi + j) % len(hints)]
                    method = "confirm" if (wi + j) % 2 == 0 else "release"
                    params = {"order_id": oid}
                    if how == "line0":
                        params["sku"] = lines[0]["sku"]
                    elif how == "other":
                        params["sku"] = lines[-1]["sku"]
                    elif how == "stray":
                        params["sku"] = stray[j % len(stray)]
                    if j % 3 == 0:
                        g = c.ok("order.get", dict(params))
                        check_record(g, oid, lines)
                        assert g["status"] == "held", g
                    err, res = call_retrying(c, method, params, deadline)
                    with lock:
                        if err is not None:
                            failures.append((oid, method, how, err))
                        else:
                            told[oid] = (method, how, res)
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                failures.append(("worker", wi, repr(e)))

    oids = sorted(carts)
    n_workers = 12
    threads = [threading.Thread(target=worker, args=(w, oids[w::n_workers]))
               for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert not any(t.is_alive() for t in threads), "workers still running after 45 s"
    assert not failures, failures[:5]
    assert len(told) == n_carts
    for oid, (method, how, res) in told.items():
        want = "confirmed" if method == "confirm" else "released"
        assert res["status"] == want, (oid, how, res)
        check_record(res, oid, carts[oid])
    # Right after: nothing partial, nothing held, MariaDB as told.
    bad, by = all_or_nothing(db, "ch-%")
    assert not bad, "carts not all-or-nothing: %r" % list(bad.items())[:5]
    for oid, (method, how, res) in told.items():
        rows = by[oid]
        assert len(rows) == len(carts[oid]), (oid, rows)
        assert {r["status"] for r in rows} == {res["status"]}, (oid, how, rows)
    audit(db, skus + stray)
    with cluster.client() as c:
        for k in skus:
            assert c.ok("stock.get", {"sku": k})["own_reserved"] == db.sku(k)["own_reserved"], k
    # The one-SKU order: found whatever the hint; an unknown order: not_found.
    for name in names:
        with cluster.node_client(name) as c:
            for hint in [None, skus[0], skus[3], stray[0]]:
                params = {"order_id": "ch-one"}
                if hint:
                    params["sku"] = hint
                o = c.ok("order.get", params)
                assert o["status"] == "held" and o["sku"] == skus[0], (name, hint, o)
                params["order_id"] = "ch-nope"
                err = c.err("order.get", params)
                assert err["code"] == "not_found", (name, hint, err)
                err = c.err("confirm", params)
                assert err["code"] == "not_found", (name, hint, err)
    with cluster.client() as c:
        o = c.ok("release", {"order_id": "ch-one", "sku": stray[1]})
        assert o["status"] == "released", o
    audit(db, skus + stray)


# ---------------------------------------------------------------- (c)
def test_coordinator_killed_mid_order(cluster):
    ring = cluster.ring()
    names = sorted(cluster.nodes)
    coord = names[0]
    others = names[1:]
    skus = []
    i = 0
    while len(skus) < 8:
        k = "ck-%03d" % i
        if ring.owner(k) in others:
            skus.append(k)
        i += 1
    with cluster.client() as c:
        put_stock(c, skus, 1000)
    stop = threading.Event()
    sent = {}
    lock = threading.Lock()

    def client(ci):
        rnd = random.Random(1000 + ci)
        j = 0
        try:
            with cluster.node_client(coord, timeout=5) as c:
                while not stop.is_set() and j < 150:
                    oid = "ck-%02d-%03d" % (ci, j)
                    j += 1
                    lines = [{"sku": k, "qty": rnd.randint(1, 2)}
                             for k in rnd.sample(skus, rnd.randint(2, 4))]
                    with lock:
                        sent[oid] = lines
                    c.send("reserve", {"order_id": oid, "lines": lines})
                    if j % 4 == 0:
                        # Keep a few in flight, then drain.
                        c.read_any(timeout=2)
        except (RpcClosed, RpcTimeout, OSError, AssertionError):
            pass

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.6)
    cluster.run("kill", coord)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(sent) > 20, len(sent)
    db = cluster.db
    try:
        # After the hold TTL nothing stays held (the owners settle their parts).
        def no_held():
            return not db.query("SELECT 1 FROM orders WHERE order_id LIKE 'ck-%%' "
                                "AND status='held' LIMIT 1")
        wait_until(no_held, HOLD_MS / 1000 + 8, 0.2, "no part of ck-* held after the TTL")
        bad, by = all_or_nothing(db, "ck-%")
        assert not bad, "orders not all-or-nothing: %r" % list(bad.items())[:5]
        half = [oid for oid, rs in by.items() if len(rs) < rs[0]["n_lines"]]
        statuses = {}
        for rs in by.values():
            for r in rs:
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        print("orders sent %d, with rows %d, missing lines (aborted) %d, line statuses %r"
              % (len(sent), len(by), len(half), statuses))
        audit(db, skus)
        # A retry of every order_id through another node ends consistent.
        with cluster.node_client(others[0], timeout=15) as c:
            for oid, lines in sorted(sent.items()):
                err, res = call_retrying(c, "reserve", {"order_id": oid, "lines": lines},
                                         time.monotonic() + 10)
                rows = lines_of(db, oid)
                if err is None and res["status"] in ("released", "expired"):
                    # An order that ended (aborted): nothing of it is live.
                    assert not [r for r in rows if r["status"] in LIVE], (oid, res, rows)
                elif err is None:
                    st = res["status"]
                    assert len(rows) == len({x["sku"] for x in lines}), (oid, res, rows)
                    assert {r["status"] for r in rows} == {st}, (oid, res, rows)
                else:
                    assert err["code"] in ("insufficient", "expired"), (oid, err)
                    assert not [r for r in rows if r["status"] in LIVE], (oid, err, rows)
        bad, _ = all_or_nothing(db, "ck-%")
        assert not bad, "after retries: %r" % list(bad.items())[:5]
        audit(db, skus)
    finally:
        cluster.run("start", coord)
    wait_until(lambda: cluster.stats(coord) is not None, 20, 0.2, "coordinator back")
