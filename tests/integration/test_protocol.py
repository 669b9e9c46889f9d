"""Wire contract (proto/PROTOCOL.md) seen by a client written from it alone.

Goal: a plain
Python msgpack-rpc client can run the hoodie story; replies have the exact
shapes of the contract (response array, error map key order and details,
result keys); msgids are echoed over their whole range; pipelined requests
are matched by msgid; a notification gets no reply; admin methods need the
token when stockd has one.

Method: raw reads of decoded messages through stockrpc.Rpc against the
module's stockd, plus a second stockd started with --admin-token.
"""

import pytest

from stockrpc import RpcTimeout, pack
from itestlib import STOCK_KEYS, check_order_map, check_stock_map


def test_ping_shape(stockd, client):
    client.send_raw(pack([0, 42, "ping", [{}]]))
    m = client.read_any(5)
    assert len(m) == 4 and m[0] == 1 and m[1] == 42 and m[2] is None, m
    assert set(m[3]) == {"node", "version"}, m
    assert m[3]["node"] == stockd.name and isinstance(m[3]["version"], str) and m[3]["version"]


@pytest.mark.parametrize("msgid", [0, 1, 127, 128, 65535, 65536, 2**31, 2**32 - 1])
def test_msgid_echoed(client, msgid):
    client.send_raw(pack([0, msgid, "ping", [{}]]))
    m = client.read_any(5)
    assert m[1] == msgid and m[2] is None, m


def test_error_shape(client):
    client.send_raw(pack([0, 3, "no.such", [{}]]))
    m = client.read_any(5)
    assert m[0] == 1 and m[1] == 3 and m[3] is None, m
    e = m[2]
    assert list(e)[:3] == ["code", "message", "retryable"], e
    assert e["code"] == "unknown_method" and e["method"] == "no.such", e
    assert isinstance(e["message"], str) and e["retryable"] is False


def test_notification_gets_no_reply(client):
    client.notify("ping", {})
    client.notify("no.such", {})
    client.send_raw(pack([0, 11, "ping", [{}]]))
    m = client.read_any(5)
    assert m[1] == 11, "notification answered: %r" % m
    with pytest.raises(RpcTimeout):
        client.read_any(0.3)


def test_pipelining_matched_by_msgid(client):
    client.ok("sku.put", {"sku": "pipe-1", "own_on_hand": 1000})
    sent = {}
    for i in range(300):
        if i % 3 == 0:
            sent[client.send("ping", {})] = "ping"
        elif i % 3 == 1:
            sent[client.send("reserve", {"order_id": "pipe-%03d" % i, "sku": "pipe-1",
                                         "qty": 1})] = "reserve"
        else:
            sent[client.send("stock.get", {"sku": "pipe-1"})] = "stock.get"
    for msgid, kind in sent.items():
        err, res = client.wait(msgid)
        assert err is None, (kind, err)
        if kind == "ping":
            assert set(res) == {"node", "version"}
        elif kind == "reserve":
            check_order_map(res)
        else:
            check_stock_map(res)
    assert client.ok("stock.get", {"sku": "pipe-1"})["own_reserved"] == 100


def test_hoodie_story(client):
    """Three buyers, two hoodies, told with nothing but the contract."""
    st = client.ok("sku.put", {"sku": "hoodie-story", "own_on_hand": 2})
    assert set(st) == STOCK_KEYS and st["available"] == 2
    ids = [client.send("reserve", {"order_id": "story-%s" % b, "sku": "hoodie-story", "qty": 1})
           for b in ("ann", "bob", "cat")]
    rs = [client.wait(i) for i in ids]
    assert [e is None for e, r in rs] == [True, True, False], rs
    assert rs[2][0]["code"] == "insufficient" and rs[2][0]["available"] == 0
    assert rs[1][1]["available"] == 0 and rs[0][1]["available"] == 1
    client.ok("release", {"order_id": "story-ann"})
    r = client.ok("reserve", {"order_id": "story-cat", "sku": "hoodie-story", "qty": 1})
    assert r["status"] == "confirmed"


def test_stats(client):
    s = client.ok("stats", {})
    assert isinstance(s, dict) and s, s


def test_order_record_optional_keys(client):
    client.ok("sku.put", {"sku": "rec-1", "own_on_hand": 5})
    r = client.ok("reserve", {"order_id": "rec-o1", "sku": "rec-1", "qty": 1})
    check_order_map(r)
    assert not ({"hold_expires_at", "upstream_order_id", "reason"} & set(r)), r
    h = client.ok("reserve", {"order_id": "rec-o2", "sku": "rec-1", "qty": 1, "hold_ms": 5000})
    check_order_map(h)
    assert "hold_expires_at" in h


def test_deadline_param_accepted(client):
    client.ok("sku.put", {"sku": "dl-1", "own_on_hand": 5})
    r = client.ok("reserve", {"order_id": "dl-o1", "sku": "dl-1", "qty": 1, "deadline_ms": 5000})
    assert r["status"] == "confirmed"


def test_admin_token(make_stockd):
    s = make_stockd(args=["--admin-token", "s3cret"], name="itest-token")
    with s.client() as c:
        for p in ({"sku": "tok-1", "own_on_hand": 5},
                  {"sku": "tok-1", "own_on_hand": 5, "token": "wrong"},
                  {"sku": "tok-1", "own_on_hand": 5, "token": "s3cre"},
                  {"sku": "tok-1", "own_on_hand": 5, "token": ""}):
            e = c.err("sku.put", p)
            assert e["code"] == "unauthorized" and e["retryable"] is False, (p, e)
        st = c.ok("sku.put", {"sku": "tok-1", "own_on_hand": 5, "token": "s3cret"})
        assert st["own_on_hand"] == 5
        e = c.err("stock.adjust", {"sku": "tok-1", "delta": 1, "reason": "x"})
        assert e["code"] == "unauthorized", e
        st = c.ok("stock.adjust", {"sku": "tok-1", "delta": 1, "reason": "x", "token": "s3cret"})
        assert st["own_on_hand"] == 6
        # Non-admin methods do not need it.
        c.ok("ping", {})
        c.ok("stock.get", {"sku": "tok-1"})
        r = c.ok("reserve", {"order_id": "tok-o1", "sku": "tok-1", "qty": 1})
        assert r["status"] == "confirmed"


def test_busy_and_inflight_backpressure(make_stockd, db):
    """Tiny queues: a pipeline of 100 reserves on one SKU over a connection
    allowed 32 in flight is fully answered (back pressure, no loss); the ones
    that found the SKU's queue full get `busy` (retryable) and leave no row.
    (With 4 in flight a batch could take the queued ones as fast as they
    came, so whether any met a full queue was a race.)"""
    s = make_stockd(args=["--queue-per-sku-max", "2", "--max-inflight-per-conn", "32"],
                    db=db, name="itest-busy")
    with s.client(timeout=15) as c:
        c.ok("sku.put", {"sku": "busy-1", "own_on_hand": 1000})
        ids = {c.send("reserve", {"order_id": "busy-%03d" % i, "sku": "busy-1", "qty": 1}): i
               for i in range(100)}
        replies = {ids[m]: c.wait(m) for m in ids}
    codes = {}
    for i, (e, r) in replies.items():
        codes[i] = "ok" if e is None else e["code"]
        if e is not None:
            assert e["code"] == "busy" and e["retryable"] is True, e
    assert "busy" in codes.values(), "queue-per-sku-max 2 never answered busy"
    rows = db.orders("order_id LIKE 'busy-%%'")
    assert set(rows) == {"busy-%03d" % i for i, k in codes.items() if k == "ok"}


# ---------------------------------------------------------------- supplier round

TRUST_KEYS = {"supplier_id", "trust", "trust_ceiling", "event_mode", "event_trust", "effective",
              "check_before_confirm"}


def test_order_subscribe_hears_expiry(stockd, client):
    """A listener gets [2, "order.update", [record]] when a held order expires."""
    with stockd.client() as listener:
        assert listener.ok("order.subscribe", {}) == {"subscribed": True}
        assert listener.ok("order.subscribe", {}) == {"subscribed": True}  # idempotent
        client.ok("sku.put", {"sku": "sub-1", "own_on_hand": 3})
        r = client.ok("reserve", {"order_id": "sub-o1", "sku": "sub-1", "qty": 2, "hold_ms": 1000})
        assert r["status"] == "held"
        # Replies still work on a subscribed connection, matched by msgid.
        assert listener.ok("ping", {})["node"] == stockd.name
        m = listener.next_notification(timeout=8)
        assert m is not None, "no order.update within 8 s of a 1 s hold"
        assert m[0] == 2 and m[1] == "order.update" and isinstance(m[2], list) and len(m[2]) == 1, m
        o = m[2][0]
        check_order_map(o)
        assert o["order_id"] == "sub-o1" and o["status"] == "expired", o
        assert "purchased_at" not in o and "supplier_settled" not in o, o
        # Other connections heard nothing.
        with pytest.raises(RpcTimeout):
            client.read_any(0.2)
    assert client.ok("stock.get", {"sku": "sub-1"})["available"] == 3


def test_order_subscribe_bad_params(client):
    e = client.err("order.subscribe", {"x": 1})
    assert e["code"] == "invalid" and e["field"] == "x", e


def test_alerts_list(client):
    a = client.alerts()
    assert isinstance(a, list)
    for al in a:
        assert {"kind", "sku", "reason", "at"} <= set(al) <= {"kind", "sku", "order_id", "reason", "at"}
    assert len(client.alerts(1)) <= 1
    assert len(client.alerts(1000)) == len(a) or len(a) == 100


@pytest.mark.parametrize("limit,problem", [(0, "out of range"), (1001, "out of range"),
                                           (-1, "out of range"), ("10", "must be an integer"),
                                           (1.5, "must be an integer")])
def test_alerts_list_bad_limit(client, limit, problem):
    e = client.err("alerts.list", {"limit": limit})
    assert e["code"] == "invalid" and e["field"] == "limit" and problem in e["message"], e


def test_supplier_put_get(client):
    e = client.err("supplier.get", {"supplier_id": "sup-none-such"})
    assert e["code"] == "not_found" and e["retryable"] is False, e
    t = client.supplier_put("sup-p1", trust=0.5)
    assert set(t) == TRUST_KEYS, t
    assert t["supplier_id"] == "sup-p1" and t["trust"] == 0.5 and t["effective"] == 0.5, t
    assert t["trust_ceiling"] == 1.0 and t["event_mode"] is False, t
    assert all(isinstance(t[k], float) for k in ("trust", "trust_ceiling", "event_trust", "effective"))
    assert client.supplier_get("sup-p1") == t
    # Fields not given keep the current settings; ints 0 and 1 are factors too.
    t2 = client.supplier_put("sup-p1", event_mode=True, event_trust=0.25)
    assert t2["trust"] == 0.5 and t2["event_mode"] is True and t2["effective"] == 0.25, t2
    t3 = client.supplier_put("sup-p1", event_mode=False, trust=1)
    assert t3["trust"] == 1.0 and t3["event_trust"] == 0.25 and t3["effective"] == 1.0, t3
    t4 = client.supplier_put("sup-p1", trust=0, trust_ceiling=0.5)
    assert t4["trust"] == 0.0 and t4["trust_ceiling"] == 0.5, t4
    assert client.supplier_get("sup-p1") == t4


@pytest.mark.parametrize("params,field", [
    ({}, "supplier_id"),
    ({"supplier_id": ""}, "supplier_id"),
    ({"supplier_id": 7}, "supplier_id"),
    ({"supplier_id": "x" * 65}, "supplier_id"),
    ({"supplier_id": "s", "trust": 1.5}, "trust"),
    ({"supplier_id": "s", "trust": -0.1}, "trust"),
    ({"supplier_id": "s", "trust": 2}, "trust"),
    ({"supplier_id": "s", "trust": "0.5"}, "trust"),
    ({"supplier_id": "s", "trust": float("nan")}, "trust"),
    ({"supplier_id": "s", "trust_ceiling": 1.01}, "trust_ceiling"),
    ({"supplier_id": "s", "event_trust": -1}, "event_trust"),
    ({"supplier_id": "s", "event_mode": 1}, "event_mode"),
    ({"supplier_id": "s", "trust": 0.9, "trust_ceiling": 0.5}, "trust"),
    ({"supplier_id": "s", "event_trust": 0.9, "trust_ceiling": 0.8, "trust": 0.1}, "event_trust"),
    ({"supplier_id": "s", "bogus": 1}, "bogus"),
])
def test_supplier_put_invalid(client, params, field):
    e = client.err("supplier.put", params)
    assert e["code"] == "invalid" and e["field"] == field, (params, e)


def test_supplier_get_invalid(client):
    for params, field in (({}, "supplier_id"), ({"supplier_id": 1}, "supplier_id"),
                          ({"supplier_id": "s", "trust": 1.0}, "trust")):
        e = client.err("supplier.get", params)
        assert e["code"] == "invalid" and e["field"] == field, (params, e)


def test_sku_put_supplier_cap_and_record(client):
    sup = {"supplier_id": "sup-cap", "offer_id": 123456, "spec_id": "spec-a", "cap": 30}
    st = client.ok("sku.put", {"sku": "cap-1", "own_on_hand": 1, "supplier": sup,
                               "supplier_reported": 100})
    assert st["mapping"] == "ok", st
    assert st["supplier"] == {"supplier_id": "sup-cap", "offer_id": 123456, "spec_id": "spec-a",
                              "cap": 30}, st
    assert isinstance(st["trust"], float) and 0.0 <= st["trust"] <= 1.0, st
    assert set(st) == STOCK_KEYS | {"supplier", "trust"}, st
    assert st["supplier_sellable"] <= 30, st
    assert client.ok("stock.get", {"sku": "cap-1"})["supplier"] == st["supplier"]
    # Without cap and with sku_id: cap absent, sku_id shown.
    sup2 = {"supplier_id": "sup-cap", "offer_id": 123456, "spec_id": "spec-a", "sku_id": 99}
    st2 = client.ok("sku.put", {"sku": "cap-1", "supplier": sup2})
    assert st2["supplier"] == {"supplier_id": "sup-cap", "offer_id": 123456, "spec_id": "spec-a",
                               "sku_id": 99}, st2
    # Own-stock SKUs keep the old record, key for key.
    check_stock_map(client.ok("sku.put", {"sku": "cap-own", "own_on_hand": 1}))


@pytest.mark.parametrize("cap,problem", [(-1, "out of range"), (10**12 + 1, "out of range"),
                                         ("5", "must be an integer")])
def test_sku_put_supplier_cap_invalid(client, cap, problem):
    sup = {"supplier_id": "s", "offer_id": 1, "spec_id": "x", "cap": cap}
    e = client.err("sku.put", {"sku": "cap-bad", "supplier": sup})
    assert e["code"] == "invalid" and e["field"] == "supplier.cap" and problem in e["message"], e


def test_supplier_put_needs_admin_token(make_stockd):
    s = make_stockd(args=["--admin-token", "s3cret"], name="itest-token-sup")
    with s.client() as c:
        for p in ({"supplier_id": "tok-sup", "trust": 0.5},
                  {"supplier_id": "tok-sup", "trust": 0.5, "token": "wrong"}):
            e = c.err("supplier.put", p)
            assert e["code"] == "unauthorized", (p, e)
        t = c.ok("supplier.put", {"supplier_id": "tok-sup", "trust": 0.5, "token": "s3cret"})
        assert t["trust"] == 0.5
        # Reads need no token.
        assert c.ok("supplier.get", {"supplier_id": "tok-sup"})["trust"] == 0.5
        assert isinstance(c.alerts(), list)
        c.ok("order.subscribe", {})


def test_reserve_lines_record_and_errors(client):
    """reserve with lines (PROTOCOL.md): the record's shape (n_lines, lines
    in order of first appearance, sums), error data naming the line, a
    single-SKU record without any of it."""
    for k, n in (("pl-a", 5), ("pl-b", 2)):
        client.ok("sku.put", {"sku": k, "own_on_hand": n})
    o = client.ok("reserve", {"order_id": "pl-o1", "hold_ms": 60000,
                              "lines": [{"sku": "pl-b", "qty": 1}, {"sku": "pl-a", "qty": 2},
                                        {"sku": "pl-b", "qty": 1}]})
    assert o["status"] == "held" and o["n_lines"] == 2, o
    assert o["sku"] == "pl-b" and o["qty"] == 4 and o["from_own"] == 4, o
    assert [(l["line"], l["sku"], l["qty"], l["from_own"], l["from_supplier"], l["status"])
            for l in o["lines"]] == [(0, "pl-b", 2, 2, 0, "held"), (1, "pl-a", 2, 2, 0, "held")], o
    assert all(set(l) == {"line", "sku", "qty", "from_own", "from_supplier", "status"}
               for l in o["lines"]), o
    assert client.ok("order.get", {"order_id": "pl-o1"})["lines"] == o["lines"]
    # pl-b is gone: the first line naming it is named, with its availability.
    m = client.call("reserve", {"order_id": "pl-o2",
                                "lines": [{"sku": "pl-a", "qty": 1}, {"sku": "pl-b", "qty": 1}]})
    e = m[0]
    assert list(e) == ["code", "message", "retryable", "available", "line", "sku"], e
    assert (e["code"], e["available"], e["line"], e["sku"]) == ("insufficient", 0, 1, "pl-b"), e
    e = client.err("reserve", {"order_id": "pl-o3", "lines": [{"sku": "pl-none", "qty": 1}]})
    assert (e["code"], e["line"], e["sku"]) == ("unknown_sku", 0, "pl-none"), e
    # A single-SKU order's record and errors are what they always were.
    o = client.ok("reserve", {"order_id": "pl-o4", "sku": "pl-a", "qty": 1})
    check_order_map(o)
    e = client.err("reserve", {"order_id": "pl-o5", "sku": "pl-a", "qty": 100})
    assert list(e) == ["code", "message", "retryable", "available"], e
    # A one-SKU cart is a single-SKU order.
    o = client.ok("reserve", {"order_id": "pl-o6", "lines": [{"sku": "pl-a", "qty": 1}]})
    assert "lines" not in o and "n_lines" not in o and o["sku"] == "pl-a", o
    # The whole order is released at once.
    o = client.ok("release", {"order_id": "pl-o1"})
    assert o["status"] == "released" and {l["status"] for l in o["lines"]} == {"released"}, o
    assert client.ok("stock.get", {"sku": "pl-b"})["available"] == 2
    st = client.ok("stats", {})["lines"]
    assert st["reserves"] >= 4 and st["lines"] >= 7 and st["coordinated"] == 0, st


def test_reserve_lines_cold_skus(make_stockd):
    """--preload-skus no: every SKU of a cart is loaded before the cart is
    decided (one after the other), a missing one is unknown_sku naming its
    line, and nothing is held by a cart that failed."""
    s = make_stockd(args=["--preload-skus", "no"], name="itest-cold-lines")
    with s.client() as c:
        for k, n in (("cl-a", 5), ("cl-b", 5), ("cl-c", 1)):
            c.ok("sku.put", {"sku": k, "own_on_hand": n})
    s.restart()
    with s.client() as c:
        before = c.ok("stats", {})["read_path"]["cold"]
        assert before["preload_skus"] is False
        o = c.ok("reserve", {"order_id": "cl-o1", "hold_ms": 60000,
                             "lines": [{"sku": "cl-a", "qty": 2}, {"sku": "cl-b", "qty": 1}]})
        assert o["status"] == "held" and [l["sku"] for l in o["lines"]] == ["cl-a", "cl-b"], o
        after = c.ok("stats", {})["read_path"]["cold"]
        assert after["loaded"] - before["loaded"] >= 2, (before, after)
    s.restart()   # cl-c has no order: cold again
    with s.client() as c:
        e = c.err("reserve", {"order_id": "cl-o2",
                              "lines": [{"sku": "cl-c", "qty": 1}, {"sku": "cl-none", "qty": 1}]})
        assert (e["code"], e["line"], e["sku"]) == ("unknown_sku", 1, "cl-none"), e
        e = c.err("reserve", {"order_id": "cl-o3",
                              "lines": [{"sku": "cl-c", "qty": 2}, {"sku": "cl-a", "qty": 1}]})
        assert (e["code"], e["line"], e["sku"], e["available"]) == \
            ("insufficient", 0, "cl-c", 1), e
        assert c.ok("stock.get", {"sku": "cl-c"})["available"] == 1
        assert c.ok("stock.get", {"sku": "cl-a"})["available"] == 3
        o = c.ok("confirm", {"order_id": "cl-o1"})
        assert o["status"] == "confirmed" and o["n_lines"] == 2, o

