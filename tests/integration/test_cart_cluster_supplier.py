"""Cross-shard carts with a drop-shipped line in a cluster: a line's purchase that fails for good fails the whole order on
every shard, and order.subscribe listeners on any node hear the whole order
once.

Method: a private fake1688 (test_supplier_sync.Fake) with offer GOOD (10
real units) and offer BAD (1 real unit reported as 5); `tools/cluster up 3`
on one fresh database, every node on the fake (the owner of a mapped SKU
syncs and buys it). A supplier SKU per offer on one node, own-stock SKUs on
the two others, a listener on every node. Then, reading MariaDB:
- a cart [own, BAD x3, own] confirmed at once: BAD's check fails (500_004)
  on its owner, which fails the other parts on their owners (release +
  as_failed): within seconds every line is `failed`, the own units are back,
  counters equal the sums (audit_supplier), and each listener hears exactly
  one order.update for the order: failed, with all three lines failed;
- a cart [own, GOOD x2, BAD x3] with both supplier lines on one owner:
  BAD's check fails, GOOD (checked fine) waits for it and is never bought:
  its job is cancelled in the commit that fails the order, no
  purchase_after_release alert;
- a cart [own, GOOD x2, own]: bought upstream once, `purchased` (own lines
  confirmed, the supplier line purchased), one order.update per listener.
Bounded: about 30 s.
"""
import secrets
import time

import pytest

from itestlib import audit_supplier, order_updates, supplier_flags, wait_until
from test_cart_cluster import lines_of, one_per_owner
from test_cluster import Cluster, need_cluster, print_logs_on_failure
from test_supplier_sync import Fake

OFFER_GOOD = 640000000001
OFFER_BAD = 640000000002
SPEC_GOOD = "ccsg0000000000000000000000000001"
SPEC_BAD = "ccsb0000000000000000000000000001"
SYNC_MS = 500
QUIET_S = 1.5             # after the one update: nothing more for the order


@pytest.fixture(scope="module")
def env(prereqs, tmp_path_factory):
    need_cluster()
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER_GOOD, "subject": "cluster mug", "skus": [
                {"sku_id": 5500000000001, "spec_id": SPEC_GOOD, "price": 3, "real": 10}]},
            {"offer_id": OFFER_BAD, "subject": "cluster hoodie", "skus": [
                {"sku_id": 5500000000002, "spec_id": SPEC_BAD, "price": 9, "real": 1,
                 "inflation": 5}]}]})
        flags = supplier_flags(fake.port, secret, token, sync_ms=SYNC_MS, validate_ms=SYNC_MS,
                               upstream_lag_ms=0, rate_per_s=2000, purchase_concurrency=4,
                               purchase_backoff_max_ms=300, timeout_ms=3000)
        args = " ".join(["--default-deadline-ms", "3000", "--cart-hold-ms", "2000"] + flags)
        with Cluster.running(tmp_path_factory, "cartsup", stockd_args=args) as cl:
            names = sorted(cl.nodes)
            ring = cl.ring()
            # Supplier SKUs on names[0], own stock on names[1] and names[2].
            good, = one_per_owner(ring, "ccs-good-", names[:1])
            bad, = one_per_owner(ring, "ccs-bad-", names[:1])
            own1, own2 = one_per_owner(ring, "ccs-own-", names[1:])
            with cl.node_client(names[1]) as c:
                for k in (own1, own2):
                    c.ok("sku.put", {"sku": k, "own_on_hand": 5})
                for k, offer, spec in ((good, OFFER_GOOD, SPEC_GOOD), (bad, OFFER_BAD, SPEC_BAD)):
                    c.ok("sku.put", {"sku": k, "own_on_hand": 0, "supplier": {
                        "supplier_id": "1688-ccs", "offer_id": offer, "spec_id": spec}})
                for k, want in ((good, 10), (bad, 5)):
                    wait_until(lambda k=k, want=want: c.ok("stock.get", {"sku": k})
                               ["supplier_reported"] == want, 10, what="%s synced" % k)
            cl.skus = {"good": good, "bad": bad, "own1": own1, "own2": own2}
            yield fake, cl
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    print_logs_on_failure(request, "env")


def listeners(cl):
    subs = {}
    for name in sorted(cl.nodes):
        s = cl.node_client(name)
        s.subscribe()
        subs[name] = s
    return subs


def updates_for(sub, order_id, status, timeout):
    """Every order.update of order_id until one with status arrived, then
    QUIET_S more: the list of records of order_id."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += [r for r in order_updates(sub, max(0.01, deadline - time.monotonic()))
                if r.get("order_id") == order_id]
        if any(r.get("status") == status for r in got):
            break
    quiet = time.monotonic() + QUIET_S
    while time.monotonic() < quiet:
        got += [r for r in order_updates(sub, max(0.01, quiet - time.monotonic()))
                if r.get("order_id") == order_id]
    return got


def check_one_update(subs, order_id, status, line_statuses):
    for name, sub in subs.items():
        got = updates_for(sub, order_id, status, 15)
        assert len(got) == 1, (name, got)
        rec = got[0]
        assert rec["status"] == status and rec["n_lines"] == len(line_statuses), (name, rec)
        assert [l["status"] for l in rec["lines"]] == line_statuses, (name, rec)
        assert [l["line"] for l in rec["lines"]] == list(range(len(line_statuses))), (name, rec)


def test_failed_line_fails_every_shard(env):
    fake, cl = env
    k = cl.skus
    names = sorted(cl.nodes)
    subs = listeners(cl)
    try:
        with cl.node_client(names[2]) as c:
            o = c.ok("reserve", {"order_id": "ccs-fail", "lines": [
                {"sku": k["own1"], "qty": 2}, {"sku": k["bad"], "qty": 3},
                {"sku": k["own2"], "qty": 1}]})
            assert o["status"] == "confirmed" and o["n_lines"] == 3, o
            wait_until(lambda: [r["status"] for r in lines_of(cl.db, "ccs-fail")] ==
                       ["failed"] * 3, 10, 0.1, "every part of ccs-fail failed")
            rows = lines_of(cl.db, "ccs-fail")
            assert [r["sku"] for r in rows] == [k["own1"], k["bad"], k["own2"]], rows
            for sku in (k["own1"], k["own2"]):
                st = c.ok("stock.get", {"sku": sku})
                assert st["own_reserved"] == 0 and st["available"] == 5, st
            got = c.ok("order.get", {"order_id": "ccs-fail"})
            assert got["status"] == "failed", got
            assert [l["status"] for l in got["lines"]] == ["failed"] * 3, got
            assert "line 1 failed" in (got.get("reason") or "") or got.get("reason"), got
        check_one_update(subs, "ccs-fail", "failed", ["failed"] * 3)
        # Never bought upstream; one alert for the failed line.
        assert fake.ok("GET", "/orders?out_order_id=ccs-fail%231")["orders"] == []
        audit_supplier(cl.db, list(k.values()))
    finally:
        for s in subs.values():
            s.close()


def test_failed_check_buys_no_other_line(env):
    """Two supplier lines on one owner, one of them short upstream: its
    check fails, which fails the order, and the other line, checked fine,
    is never bought (its job cancelled in the failure's commit), no
    purchase_after_release alert; the own line is failed on its shard."""
    fake, cl = env
    k = cl.skus
    names = sorted(cl.nodes)
    with cl.node_client(names[0]) as c:
        # The last failure cut the supplier's trust on the SKUs' owner:
        # believe BAD's 5 again.
        c.supplier_put("1688-ccs", trust=1.0, trust_ceiling=1.0)
    with cl.node_client(names[1]) as c:
        wait_until(lambda: c.ok("stock.get", {"sku": k["bad"]})["available"] >= 3, 15, 0.1,
                   "BAD's figure back after the last failure")
        o = c.ok("reserve", {"order_id": "ccs-two", "lines": [
            {"sku": k["own1"], "qty": 1}, {"sku": k["good"], "qty": 2},
            {"sku": k["bad"], "qty": 3}]})
        assert o["status"] == "confirmed" and o["n_lines"] == 3, o
        wait_until(lambda: [r["status"] for r in lines_of(cl.db, "ccs-two")] ==
                   ["failed"] * 3, 15, 0.1, "every part of ccs-two failed")
        time.sleep(QUIET_S)  # a create sent anyway would show by now
        got = c.ok("order.get", {"order_id": "ccs-two"})
        assert [l["status"] for l in got["lines"]] == ["failed"] * 3, got
        assert not any(l.get("upstream_order_id") for l in got["lines"]), got
    for line in (1, 2):
        assert fake.ok("GET", "/orders?out_order_id=ccs-two%%23%d" % line)["orders"] == [], line
    kinds = [r["kind"] for r in cl.db.query("SELECT kind FROM alerts WHERE order_id = %s",
                                            (b"ccs-two",))]
    assert "purchase_after_release" not in kinds and "purchase_failed" in kinds, kinds
    jobs = cl.db.query("SELECT line_no, state FROM purchase_jobs WHERE order_id = %s "
                       "ORDER BY line_no", (b"ccs-two",))
    assert [(j["line_no"], j["state"]) for j in jobs] == [(1, "cancelled"), (2, "failed")], jobs
    audit_supplier(cl.db, list(k.values()))


def test_happy_cart_purchased_once(env):
    fake, cl = env
    k = cl.skus
    names = sorted(cl.nodes)
    subs = listeners(cl)
    try:
        with cl.node_client(names[1]) as c:
            o = c.ok("reserve", {"order_id": "ccs-ok", "lines": [
                {"sku": k["own1"], "qty": 1}, {"sku": k["good"], "qty": 2},
                {"sku": k["own2"], "qty": 1}]})
            assert o["status"] == "confirmed", o
            check_one_update(subs, "ccs-ok", "purchased", ["confirmed", "purchased", "confirmed"])
            rows = lines_of(cl.db, "ccs-ok")
            assert [r["status"] for r in rows] == ["confirmed", "purchased", "confirmed"], rows
            ups = fake.ok("GET", "/orders?out_order_id=ccs-ok%231")["orders"]
            assert len(ups) == 1, ups
            got = c.ok("order.get", {"order_id": "ccs-ok"})
            assert got["status"] == "purchased", got
        audit_supplier(cl.db, list(k.values()))
    finally:
        for s in subs.values():
            s.close()


def test_check_before_confirm_refuses_a_spread_cart(env):
    """A supplier that asks for a check before any yes (check_before_confirm)
    on a cart spread over instances: the coordinator's decision has no step
    for a check, so the owner refuses the part (check_failed) rather than
    sell it unchecked: the whole cart is refused, nothing is held on any
    shard, no order row, nothing bought; the same cart goes through once
    the supplier no longer asks for the check."""
    fake, cl = env
    k = cl.skus
    names = sorted(cl.nodes)
    cart = [{"sku": k["own1"], "qty": 1}, {"sku": k["good"], "qty": 1},
            {"sku": k["own2"], "qty": 1}]
    with cl.node_client(names[0]) as c:
        c.supplier_put("1688-ccs", check_before_confirm=True, trust=1.0, trust_ceiling=1.0)
    try:
        with cl.node_client(names[1]) as c:
            before = {sku: c.ok("stock.get", {"sku": sku}) for sku in (k["own1"], k["own2"])}
            e = c.err("reserve", {"order_id": "ccs-cbc", "lines": cart})
            assert e["code"] == "check_failed" and e["retryable"] is False, e
            assert e["line"] == 1, e   # the supplier line, as the client gave it
            for sku, st in before.items():
                now = c.ok("stock.get", {"sku": sku})
                assert now["own_reserved"] == st["own_reserved"], (sku, st, now)
            assert c.err("order.get", {"order_id": "ccs-cbc"})["code"] == "not_found"
        assert lines_of(cl.db, "ccs-cbc") == []
        assert fake.ok("GET", "/orders?out_order_id=ccs-cbc%231")["orders"] == []
    finally:
        with cl.node_client(names[0]) as c:
            c.supplier_put("1688-ccs", check_before_confirm=False, trust=1.0, trust_ceiling=1.0)
    with cl.node_client(names[1]) as c:
        o = c.ok("reserve", {"order_id": "ccs-cbc2", "lines": cart})
        assert o["status"] == "confirmed" and o["n_lines"] == 3, o
        wait_until(lambda: [r["status"] for r in lines_of(cl.db, "ccs-cbc2")] ==
                   ["confirmed", "purchased", "confirmed"], 15, 0.1, "ccs-cbc2 bought")
    audit_supplier(cl.db, list(k.values()))


def test_peer_fields_refused_from_clients(env):
    """as_failed / reason on release and update on order.subscribe are a
    peer's: from a client (a connection that did not prove the cluster
    secret) they are unauthorized, with or without "_fwd"; on a proven peer
    connection they are judged as a peer's."""
    _, cl = env
    with cl.node_client(sorted(cl.nodes)[0]) as c:
        for method, params, field in (
                ("release", {"order_id": "ccs-x", "as_failed": True}, "as_failed"),
                ("release", {"order_id": "ccs-x", "reason": "r"}, "reason"),
                ("release", {"order_id": "ccs-x", "as_failed": True, "_fwd": 1}, "as_failed"),
                ("order.subscribe", {"update": {"order_id": "ccs-x", "status": "failed"}},
                 "update"),
                ("order.subscribe", {"update": {"order_id": "ccs-x", "status": "failed"},
                                     "_fwd": 1}, "update")):
            err = c.err(method, params)
            assert err["code"] == "unauthorized" and err["field"] == field, (method, err)
            assert err["retryable"] is False, err
    with cl.peer_client(sorted(cl.nodes)[0]) as c:
        # A peer's release without the part fields: as_failed is for parts only.
        err = c.err("release", {"order_id": "ccs-x", "as_failed": True, "_fwd": 1})
        assert err["code"] == "invalid" and err["field"] == "as_failed", err
        # A peer's update is told (or recognised as told) and answered.
        res = c.ok("order.subscribe", {"update": {"order_id": "ccs-x", "status": "failed"},
                                       "_fwd": 1})
        assert "told" in res, res
