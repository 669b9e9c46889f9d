"""reserve with "check": true, and supplier.put check_before_confirm: the
supplier units of a reservation are checked with 1688's createOrder.preview
BEFORE the reserve is answered (engine.h "Checks", check.h).

Method: a private fake1688 (test_supplier_sync.Fake: its own ports, stopped
by pid) and one stockd pointed at it (its sync slow, 30 s: each sku.put's
own first sync brings the figures, and a removed spec is found by the
check, not by a sync); the fake's /counters count the previews. Reserves that
should not be bought while the test looks carry hold_ms, so the purchase
worker stays out of the counts.

1. The check passes: the record is the ordinary one (confirmed, or held for
   the client's hold); one preview per offer (a cart of two specs of one
   offer is one call).
2. The check refuses (spec removed; real stock below the reported figure):
   check_failed with 1688's words, not retryable; the order is failed in
   MariaDB with nothing held (audit: counters = sums); a retry with the
   same order_id answers check_failed again.
3. 1688 slower than the deadline: unavailable, reason check_unavailable,
   retryable, nothing held (no record); the retry once 1688 is quick again
   is decided anew and confirmed.
4. Own stock only: answered as always, no preview.
5. supplier.put check_before_confirm: reserves of that supplier's SKUs are
   checked without the field; supplier.get shows it.
6. Bad types ("check": 1, "yes", nil; check_before_confirm: 0) are invalid.
7. A retry while the check runs waits for it and gets the same record.
8. A stockd without --supplier-url answers check_failed for supplier units
   with check (nothing held) and the ordinary record for own stock.
9. stockctl sends both: `reserve --check` (refused with 1688's words, exit
   1) and `supplier-put --check-before-confirm on|off`.
10. The purchase of a line whose check just passed does not preview it
   again (purchase stats checks_reused); one whose SKU was re-mapped to
   another spec after its check is previewed before it is bought.
Bounded: about 15 s.
"""
import json
import secrets
import subprocess
import threading
import time

import pytest

from itestlib import audit_supplier, stockctl_bin, supplier_flags, wait_until
from test_supplier_sync import Fake

OFFER = 640000000001
OFFER2 = 640000000002
SPEC_A = "chka0000000000000000000000000001"
SPEC_B = "chkb0000000000000000000000000001"
SPEC_C = "chkc0000000000000000000000000001"
SPEC_D = "chkd0000000000000000000000000001"   # keeps OFFER2 alive while C is removed
SUP = "1688-check"
SUP2 = "1688-check-2"
PREVIEW = "alibaba.createOrder.preview"


@pytest.fixture(scope="module")
def env(make_stockd):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER, "subject": "checked mug", "skus": [
                {"sku_id": 5400000000001, "spec_id": SPEC_A, "price": 3, "real": 50},
                {"sku_id": 5400000000002, "spec_id": SPEC_B, "price": 3, "real": 50}]},
            {"offer_id": OFFER2, "subject": "checked cap", "skus": [
                {"sku_id": 5400000000003, "spec_id": SPEC_C, "price": 3, "real": 50},
                {"sku_id": 5400000000004, "spec_id": SPEC_D, "price": 3, "real": 5}]}]})
        s = make_stockd(name="check", args=supplier_flags(
            fake.port, secret, token, sync_ms=30000, validate_ms=30000, rate_per_s=2000,
            timeout_ms=3000))
        c = s.client()
        for sku, own, offer, spec, sup in (("ck-a", 2, OFFER, SPEC_A, SUP),
                                           ("ck-b", 0, OFFER, SPEC_B, SUP),
                                           ("ck-c", 0, OFFER2, SPEC_C, SUP2)):
            c.ok("sku.put", {"sku": sku, "own_on_hand": own, "supplier": {
                "supplier_id": sup, "offer_id": offer, "spec_id": spec}})
        for sku in ("ck-a", "ck-b", "ck-c"):
            wait_until(lambda: c.ok("stock.get", {"sku": sku})["supplier_reported"] == 50, 5,
                       what="%s synced" % sku)
        c.close()
        yield fake, s
    finally:
        fake.stop()


def previews(fake):
    return fake.ok("GET", "/counters")["calls"].get(PREVIEW, 0)


def check_stats(c):
    return c.ok("stats")["supplier"]["check"]


def purchase_stats(c):
    return c.ok("stats")["supplier"]["purchase"]


def nothing_held(s, order_id, skus):
    audit_supplier(s.db, skus)
    rows = s.db.query("SELECT status FROM orders WHERE order_id = %s", (order_id.encode(),))
    assert all(r["status"] not in (b"held", b"confirmed", "held", "confirmed") for r in rows), rows


def test_check_passes(env):
    fake, s = env
    c = s.client()
    n0 = previews(fake)
    st0 = check_stats(c)
    o = c.ok("reserve", {"order_id": "ck-p1", "sku": "ck-a", "qty": 5, "check": True,
                         "hold_ms": 60000})
    assert (o["status"], o["from_own"], o["from_supplier"]) == ("held", 2, 3), o
    assert "reason" not in o, o
    assert o["hold_expires_at"] == o["created_at"] + 60000, o
    assert previews(fake) == n0 + 1
    # A cart of two specs of one offer and one of another: two calls.
    o = c.ok("reserve", {"order_id": "ck-p2", "lines": [
        {"sku": "ck-b", "qty": 1}, {"sku": "ck-c", "qty": 2}, {"sku": "ck-a", "qty": 1}],
        "check": True, "hold_ms": 60000})
    assert o["status"] == "held" and o["n_lines"] == 3, o
    assert previews(fake) == n0 + 3
    # Confirmed at once without hold_ms; the record is what it always is.
    pst0 = purchase_stats(c)
    o = c.ok("reserve", {"order_id": "ck-p3", "sku": "ck-b", "qty": 1, "check": True})
    assert o["status"] == "confirmed" and o["from_supplier"] == 1, o
    # The purchase worker buys it without a preview of its own: the check
    # asked 1688 the same question a moment ago.
    wait_until(lambda: c.ok("order.get", {"order_id": "ck-p3"})["status"] == "purchased", 10,
               what="ck-p3 purchased")
    pst = purchase_stats(c)
    assert pst["checks_reused"] - pst0["checks_reused"] == 1, (pst0, pst)
    assert pst["previews"] == pst0["previews"] and pst["creates"] == pst0["creates"] + 1, pst
    assert previews(fake) == n0 + 4
    # A retry answers the same record and asks nothing more.
    n1 = previews(fake)
    again = c.ok("reserve", {"order_id": "ck-p1", "sku": "ck-a", "qty": 5, "check": True,
                             "hold_ms": 60000})
    assert again == c.ok("order.get", {"order_id": "ck-p1"}), again
    assert again["status"] == "held"
    assert previews(fake) == n1
    # stats: three checks passed, one preview per offer (1 + 2 + 1).
    st = check_stats(c)
    assert st["started"] - st0["started"] == 3 and st["passed"] - st0["passed"] == 3, (st0, st)
    assert st["previews"] - st0["previews"] == 4, (st0, st)
    assert st["refused"] == st0["refused"] and st["unavailable"] == st0["unavailable"], st
    for oid in ("ck-p1", "ck-p2"):
        c.ok("release", {"order_id": oid})
    audit_supplier(s.db, ["ck-a", "ck-b", "ck-c"])
    c.close()


def test_check_refuses_spec_removed(env):
    fake, s = env
    c = s.client()
    before = c.ok("stock.get", {"sku": "ck-c"})
    fake.ok("POST", "/link", {"offer_id": OFFER2, "action": "spec_removed", "spec_id": SPEC_C})
    try:
        e = c.err("reserve", {"order_id": "ck-r1", "sku": "ck-c", "qty": 1, "check": True})
        assert e["code"] == "check_failed" and e["retryable"] is False, e
        assert "500_003" in e["message"] and e["message"].startswith("check refused: "), e
        assert e["order_id"] == "ck-r1", e
        got = c.ok("order.get", {"order_id": "ck-r1"})
        assert got["status"] == "failed" and got["reason"] == e["message"], got
        nothing_held(s, "ck-r1", ["ck-c"])
        # The same order_id again: the same refusal, nothing held.
        e2 = c.err("reserve", {"order_id": "ck-r1", "sku": "ck-c", "qty": 1, "check": True})
        assert (e2["code"], e2["message"]) == ("check_failed", e["message"]), e2
        st = c.ok("stock.get", {"sku": "ck-c"})
        assert st["supplier_reserved"] == before["supplier_reserved"], (before, st)
    finally:
        fake.ok("POST", "/link", {"offer_id": OFFER2, "action": "spec_added", "sku": {
            "sku_id": 5400000000003, "spec_id": SPEC_C, "price": 3, "real": 50}})
        # stockd's own sync after the reserve found the spec gone too
        # (mapping broken): map it afresh, as support would.
        c.ok("sku.put", {"sku": "ck-c", "supplier": {
            "supplier_id": SUP2, "offer_id": OFFER2, "spec_id": SPEC_C}})
        wait_until(lambda: c.ok("stock.get", {"sku": "ck-c"})["supplier_sellable"] == 50, 5,
                   what="ck-c mapped again")
        c.close()


def test_check_refuses_insufficient(env):
    fake, s = env
    c = s.client()
    # 1688 says 50 (fixed) but only 2 are real: the check finds out.
    fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_B, "real": 2, "reported": 50})
    try:
        e = c.err("reserve", {"order_id": "ck-r2", "sku": "ck-b", "qty": 3, "check": True})
        assert e["code"] == "check_failed" and "500_004" in e["message"], e
        nothing_held(s, "ck-r2", ["ck-b"])
        # Without the check the same reserve is a yes (the figure says 50).
        o = c.ok("reserve", {"order_id": "ck-r3", "sku": "ck-b", "qty": 3, "hold_ms": 60000})
        assert o["status"] == "held", o
        c.ok("release", {"order_id": "ck-r3"})
    finally:
        fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_B, "real": 50,
                                   "reported": None})
        c.close()


def test_check_slow_supplier(env):
    fake, s = env
    c = s.client()
    fake.ok("POST", "/config", {"latency_ms": 2500})
    try:
        t0 = time.monotonic()
        e = c.err("reserve", {"order_id": "ck-s1", "sku": "ck-b", "qty": 2, "check": True,
                              "deadline_ms": 800})
        took = time.monotonic() - t0
        assert e["code"] == "unavailable" and e["retryable"] is True, e
        assert e.get("reason") == "check_unavailable" and "outcome" not in e, e
        assert took < 2.0, took
        err, _ = c.call("order.get", {"order_id": "ck-s1"})
        assert err is not None and err["code"] == "not_found", err
        nothing_held(s, "ck-s1", ["ck-b"])
    finally:
        fake.ok("POST", "/config", {"latency_ms": 0})
    # 1688 answers again: the retry is decided anew.
    o = c.ok("reserve", {"order_id": "ck-s1", "sku": "ck-b", "qty": 2, "check": True,
                         "hold_ms": 60000})
    assert o["status"] == "held" and o["from_supplier"] == 2, o
    c.ok("release", {"order_id": "ck-s1"})
    # Rate limited / 5xx on every try: unavailable too, nothing held.
    fake.ok("POST", "/faults", {"clear": True, "rates": {"qos": 1.0},
                                "apis": [PREVIEW]})
    try:
        e = c.err("reserve", {"order_id": "ck-s2", "sku": "ck-b", "qty": 1, "check": True,
                              "deadline_ms": 1500})
        assert e["code"] == "unavailable" and e.get("reason") == "check_unavailable", e
        nothing_held(s, "ck-s2", ["ck-b"])
        # The answered check's calls still back off and retry; the next
        # tests count previews, so they wait until its last one ended.
        wait_until(lambda: check_stats(c)["alive"] == 0, 10, what="no check alive")
    finally:
        fake.ok("POST", "/faults", {"clear": True})
    c.close()


def test_own_stock_needs_no_check(env):
    fake, s = env
    c = s.client()
    n0 = previews(fake)
    o = c.ok("reserve", {"order_id": "ck-o1", "sku": "ck-a", "qty": 2, "check": True})
    assert (o["status"], o["from_own"], o["from_supplier"]) == ("confirmed", 2, 0), o
    time.sleep(0.3)
    assert previews(fake) == n0
    c.ok("release", {"order_id": "ck-o1"})
    c.close()


def test_supplier_setting(env):
    fake, s = env
    c = s.client()
    t = c.ok("supplier.put", {"supplier_id": SUP2, "check_before_confirm": True})
    assert t["check_before_confirm"] is True, t
    assert c.ok("supplier.get", {"supplier_id": SUP2})["check_before_confirm"] is True
    row = s.db.query("SELECT check_before_confirm FROM supplier WHERE supplier_id = %s",
                     (SUP2.encode(),))
    assert row and row[0]["check_before_confirm"] == 1, row
    # Partial puts keep it.
    t = c.ok("supplier.put", {"supplier_id": SUP2, "trust": 0.9})
    assert t["check_before_confirm"] is True and t["trust"] == 0.9, t
    fake.ok("POST", "/stock", {"offer_id": OFFER2, "spec_id": SPEC_C, "real": 1, "reported": 50})
    try:
        n0 = previews(fake)
        e = c.err("reserve", {"order_id": "ck-t1", "sku": "ck-c", "qty": 3})
        assert e["code"] == "check_failed" and "500_004" in e["message"], e
        assert previews(fake) == n0 + 1
        nothing_held(s, "ck-t1", ["ck-c"])
        # Another supplier's SKU is not checked.
        o = c.ok("reserve", {"order_id": "ck-t2", "sku": "ck-b", "qty": 1, "hold_ms": 60000})
        assert o["status"] == "held" and previews(fake) == n0 + 1, o
        c.ok("release", {"order_id": "ck-t2"})
        # Survives a restart (the supplier row).
        s.restart()
        c.close()
        c = s.client()
        assert c.ok("supplier.get", {"supplier_id": SUP2})["check_before_confirm"] is True
    finally:
        fake.ok("POST", "/stock", {"offer_id": OFFER2, "spec_id": SPEC_C, "real": 50,
                                   "reported": None})
        c.ok("supplier.put", {"supplier_id": SUP2, "check_before_confirm": False})
        c.close()


def test_bad_types(env):
    _, s = env
    c = s.client()
    for bad in (1, 0, "true", None, [True], {"v": True}, 1.0):
        e = c.err("reserve", {"order_id": "ck-b1", "sku": "ck-a", "qty": 1, "check": bad})
        assert (e["code"], e["field"]) == ("invalid", "check"), (bad, e)
        e = c.err("reserve", {"order_id": "ck-b2", "lines": [{"sku": "ck-a", "qty": 1}],
                              "check": bad})
        assert (e["code"], e["field"]) == ("invalid", "check"), (bad, e)
        e = c.err("supplier.put", {"supplier_id": SUP, "check_before_confirm": bad})
        assert (e["code"], e["field"]) == ("invalid", "check_before_confirm"), (bad, e)
    # Only reserve takes it.
    e = c.err("confirm", {"order_id": "ck-b1", "check": True})
    assert (e["code"], e["field"]) == ("invalid", "check"), e
    for oid in ("ck-b1", "ck-b2"):
        err, _ = c.call("order.get", {"order_id": oid})
        assert err["code"] == "not_found", err
    c.close()


def test_retry_waits_for_the_check(env):
    fake, s = env
    fake.ok("POST", "/config", {"latency_ms": 600})
    out = {}

    def go(k):
        cc = s.client()
        out[k] = cc.call("reserve", {"order_id": "ck-w1", "sku": "ck-b", "qty": 2,
                                     "check": True, "hold_ms": 60000, "deadline_ms": 5000})
        cc.close()

    try:
        n0 = previews(fake)
        ts = [threading.Thread(target=go, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()
            time.sleep(0.05)
        for t in ts:
            t.join(10)
    finally:
        fake.ok("POST", "/config", {"latency_ms": 0})
    recs = [out[k][1] for k in range(3)]
    assert all(out[k][0] is None for k in range(3)), out
    assert all(r["status"] == "held" and r == recs[0] for r in recs), recs
    assert previews(fake) == n0 + 1
    c = s.client()
    c.ok("release", {"order_id": "ck-w1"})
    audit_supplier(s.db, ["ck-b"])
    c.close()


def test_no_supplier_api(make_stockd):
    s = make_stockd(name="check-nourl")
    c = s.client()
    c.ok("sku.put", {"sku": "nu-a", "own_on_hand": 1, "supplier_reported": 10, "supplier": {
        "supplier_id": "1688-nu", "offer_id": 1, "spec_id": "s"}})
    st = c.ok("stock.get", {"sku": "nu-a"})
    assert st["mapping"] == "ok" and st["available"] == 11, st
    e = c.err("reserve", {"order_id": "nu-1", "sku": "nu-a", "qty": 3, "check": True})
    assert e["code"] == "check_failed" and "--supplier-url" in e["message"], e
    assert e["retryable"] is False, e
    err, _ = c.call("order.get", {"order_id": "nu-1"})
    assert err["code"] == "not_found", err
    o = c.ok("reserve", {"order_id": "nu-2", "sku": "nu-a", "qty": 1, "check": True})
    assert o["status"] == "confirmed" and o["from_own"] == 1, o
    audit_supplier(s.db, ["nu-a"])
    c.close()


def test_stockctl_sends_check(env):
    fake, s = env

    def ctl(*args):
        return subprocess.run([stockctl_bin(), "--addr", s.addr, "--json"] + list(args),
                              capture_output=True, text=True, timeout=10)

    c = s.client()
    fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_B, "real": 1, "reported": 50})
    try:
        n0 = previews(fake)
        st0 = check_stats(c)
        p = ctl("reserve", "ck-cl1", "ck-b", "2", "--check")
        assert p.returncode == 1, (p.stdout, p.stderr)
        e = json.loads(p.stdout)["error"]
        assert e["code"] == "check_failed" and "500_004" in e["message"], e
        assert previews(fake) == n0 + 1
        assert check_stats(c)["refused"] == st0["refused"] + 1
        nothing_held(s, "ck-cl1", ["ck-b"])
        # Without --check: the figure (50) says yes, no preview.
        p = ctl("reserve", "ck-cl2", "ck-b", "2", "--hold", "60000")
        assert p.returncode == 0 and json.loads(p.stdout)["status"] == "held", p.stdout
        assert previews(fake) == n0 + 1
        c.ok("release", {"order_id": "ck-cl2"})
        # The supplier's setting, on and off again.
        p = ctl("supplier-put", SUP, "--check-before-confirm", "on")
        assert p.returncode == 0 and json.loads(p.stdout)["check_before_confirm"] is True, p
        e = c.err("reserve", {"order_id": "ck-cl3", "sku": "ck-b", "qty": 2})
        assert e["code"] == "check_failed", e
        p = ctl("supplier-put", SUP, "--check-before-confirm=off")
        assert p.returncode == 0 and json.loads(p.stdout)["check_before_confirm"] is False, p
        assert c.ok("supplier.get", {"supplier_id": SUP})["check_before_confirm"] is False
    finally:
        fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_B, "real": 50,
                                   "reported": None})
        c.ok("supplier.put", {"supplier_id": SUP, "check_before_confirm": False})
        c.close()


def test_purchase_previews_a_line_remapped_after_its_check(env):
    """A checked hold whose SKU is re-mapped to another spec before the
    gateway confirms it: the purchase previews the new spec before it buys
    (the check answered for the old one); nothing is reused."""
    fake, s = env
    c = s.client()
    try:
        c.ok("sku.put", {"sku": "ck-r", "own_on_hand": 0, "supplier": {
            "supplier_id": SUP, "offer_id": OFFER, "spec_id": SPEC_B}})
        wait_until(lambda: c.ok("stock.get", {"sku": "ck-r"})["supplier_reported"] == 50, 5,
                   what="ck-r synced")
        n0 = previews(fake)
        oid = "ck-r1-" + secrets.token_hex(4)
        o = c.ok("reserve", {"order_id": oid, "sku": "ck-r", "qty": 1, "check": True,
                             "hold_ms": 60000})
        assert o["status"] == "held" and o["from_supplier"] == 1, o
        assert previews(fake) == n0 + 1
        c.ok("sku.put", {"sku": "ck-r", "own_on_hand": 0, "supplier": {
            "supplier_id": SUP, "offer_id": OFFER, "spec_id": SPEC_A}})
        wait_until(lambda: c.ok("stock.get", {"sku": "ck-r"})["mapping"] == "ok", 5,
                   what="ck-r re-mapped")
        pst0 = purchase_stats(c)
        c.ok("confirm", {"order_id": oid})
        wait_until(lambda: c.ok("order.get", {"order_id": oid})["status"] == "purchased", 10,
                   what="the re-mapped line purchased")
        pst = purchase_stats(c)
        assert pst["previews"] == pst0["previews"] + 1, (pst0, pst)
        assert pst["checks_reused"] == pst0["checks_reused"], (pst0, pst)
        assert previews(fake) == n0 + 2
    finally:
        c.close()
