"""Orders of several lines with drop-shipped lines.

Purchases are per line: a line with supplier units is bought upstream on
its own (outOrderId = order_id for line 0, "<order_id>#<line>" otherwise);
the order is `purchased` once every such line is; a line whose purchase
fails for good fails the whole order, and every line not yet bought gives
its stock back. Listeners hear the whole order once per change.

Method: a private fake1688 (test_supplier_sync.Fake) with two offers: A
(10 real units) and B (1 real unit reported as 5), and one stockd on it.
Bounded: about 15 s.
"""
import secrets

import pytest

from itestlib import audit_supplier, supplier_flags, wait_order_update, wait_until
from test_supplier_sync import Fake

OFFER_A = 630000000001
OFFER_B = 630000000002
SPEC_A = "lina0000000000000000000000000001"
SPEC_B = "linb0000000000000000000000000001"
SYNC_MS = 500


@pytest.fixture(scope="module")
def env(make_stockd):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER_A, "subject": "cart mug", "skus": [
                {"sku_id": 5400000000001, "spec_id": SPEC_A, "price": 3, "real": 10}]},
            {"offer_id": OFFER_B, "subject": "cart hoodie", "skus": [
                {"sku_id": 5400000000002, "spec_id": SPEC_B, "price": 9, "real": 1,
                 "inflation": 5}]}]})
        s = make_stockd(name="lines-supplier", args=supplier_flags(
            fake.port, secret, token, sync_ms=SYNC_MS, validate_ms=SYNC_MS,
            upstream_lag_ms=0, rate_per_s=2000, purchase_concurrency=4,
            purchase_backoff_max_ms=300, timeout_ms=3000))
        c = s.client()
        c.ok("sku.put", {"sku": "lns-own", "own_on_hand": 5})
        c.ok("sku.put", {"sku": "lns-a", "own_on_hand": 0, "supplier": {
            "supplier_id": "1688-lines", "offer_id": OFFER_A, "spec_id": SPEC_A}})
        c.ok("sku.put", {"sku": "lns-b", "own_on_hand": 0, "supplier": {
            "supplier_id": "1688-lines", "offer_id": OFFER_B, "spec_id": SPEC_B}})
        for sku, want in (("lns-a", 10), ("lns-b", 5)):
            wait_until(lambda sku=sku, want=want: c.ok("stock.get", {"sku": sku})
                       ["supplier_reported"] == want, 10, what="%s synced" % sku)
        c.close()
        yield fake, s
    finally:
        fake.stop()


def test_cart_lines_bought_one_by_one(env):
    fake, s = env
    c, sub = s.client(), s.client()
    try:
        sub.subscribe()
        o = c.ok("reserve", {"order_id": "lns-1", "lines": [
            {"sku": "lns-own", "qty": 1}, {"sku": "lns-a", "qty": 2}]})
        assert o["status"] == "confirmed" and o["n_lines"] == 2, o
        assert [(l["from_own"], l["from_supplier"]) for l in o["lines"]] == [(1, 0), (0, 2)]
        rec = wait_order_update(sub, "lns-1", "purchased", timeout=10)
        assert [l["status"] for l in rec["lines"]] == ["confirmed", "purchased"], rec
        # Line 1 is bought under "<order_id>#1", exactly once.
        ups = fake.ok("GET", "/orders?out_order_id=lns-1%231")["orders"]
        assert len(ups) == 1, ups
        assert [(i["specId"], i["quantity"]) for i in ups[0]["productItems"]] == [(SPEC_A, 2)]
        assert fake.ok("GET", "/orders?out_order_id=lns-1")["orders"] == []
        got = c.ok("order.get", {"order_id": "lns-1"})
        assert got["status"] == "purchased", got
        assert got["lines"][1]["upstream_order_id"] == ups[0]["baseInfo"]["idOfStr"], got
        assert c.ok("ship", {"order_id": "lns-1"})["status"] == "shipped"
        audit_supplier(s.db, ["lns-own", "lns-a"])
    finally:
        c.close()
        sub.close()


def test_failed_line_fails_the_order(env):
    fake, s = env
    c, sub = s.client(), s.client()
    try:
        sub.subscribe()
        # B reports 5 but has 1: its check fails (500_004) and takes the
        # whole order with it; the own line gives its unit back.
        o = c.ok("reserve", {"order_id": "lns-2", "lines": [
            {"sku": "lns-own", "qty": 2}, {"sku": "lns-b", "qty": 3}]})
        assert o["status"] == "confirmed", o
        rec = wait_order_update(sub, "lns-2", "failed", timeout=10)
        assert [l["status"] for l in rec["lines"]] == ["failed", "failed"], rec
        assert "500_004" in rec.get("reason", "") or rec.get("reason"), rec
        assert sub.next_order_update(timeout=0.5) is None
        assert fake.ok("GET", "/orders?out_order_id=lns-2%231")["orders"] == []
        st = c.ok("stock.get", {"sku": "lns-own"})
        assert st["own_reserved"] == 0 and st["own_on_hand"] == 4, st  # lns-1 shipped one
        audit_supplier(s.db, ["lns-own", "lns-b"])
        rows = s.db.query("SELECT status FROM orders WHERE order_id = 'lns-2'")
        assert {r["status"] for r in rows} == {"failed"} and len(rows) == 2, rows
    finally:
        c.close()
        sub.close()
