"""Mapping and link changes.

Method: a private fake1688 (test_supplier_sync.Fake) with two offers and one
stockd with sync and validation every 400 ms.

1. Check path: product.get is made to fail (5xx on that API only) so no sync
   can see the change, the fake removes the spec, an order takes supplier
   units: the order check (createOrder.preview, 500_003) fails it with a
   reason, its stock comes back, the mapping is `broken`, support is
   alerted, nothing is bought and the next supplier reserve is refused.
   sku.put with a fresh mapping (a new spec) repairs it: mapping ok, the
   figure syncs, an order is bought.
2. Validation path: the spec of a mapped SKU is removed with no order in
   flight: the next sync/validation breaks the mapping and alerts; own stock
   is still sold, supplier stock is not.
3. Fingerprint: after the first syncs adopted the spec's fingerprint, a
   price change at the fake breaks the mapping ("fingerprint"); sku.put
   with the same spec again adopts the new price and stays ok.
Bounded: about 15 s.
"""
import secrets
import time

import pytest

from itestlib import (alerts_list, audit_supplier, check_supplier_stock, db_alerts,
                      supplier_flags, wait_orders_final, wait_until)
from test_supplier_sync import Fake

OFFER_L = 630000000001
OFFER_P = 630000000002
SPEC_A = "linka000000000000000000000000001"
SPEC_B = "linkb000000000000000000000000001"
SPEC_A2 = "linka200000000000000000000000001"
SPEC_B2 = "linkb200000000000000000000000001"
SPEC_P = "linkp000000000000000000000000001"
SYNC_MS = 400
SYNC_S = SYNC_MS / 1000.0


@pytest.fixture(scope="module")
def env(make_stockd):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER_L, "subject": "linked tee", "skus": [
                {"sku_id": 5400000000001, "spec_id": SPEC_A, "price": 5, "real": 10,
                 "attributes": [{"attributeID": 3216, "attributeValue": "red"}]},
                {"sku_id": 5400000000002, "spec_id": SPEC_B, "price": 5, "real": 10,
                 "attributes": [{"attributeID": 3216, "attributeValue": "blue"}]}]},
            {"offer_id": OFFER_P, "subject": "priced cap", "skus": [
                {"sku_id": 5400000000003, "spec_id": SPEC_P, "price_fen": 1200, "real": 10}]}]})
        s = make_stockd(name="link", args=supplier_flags(
            fake.port, secret, token, sync_ms=SYNC_MS, validate_ms=SYNC_MS,
            upstream_lag_ms=0, rate_per_s=2000, purchase_backoff_max_ms=300,
            timeout_ms=3000))
        yield fake, s
    finally:
        fake.stop()


def stock(c, sku):
    return check_supplier_stock(c.ok("stock.get", {"sku": sku}))


def wait_stock(c, sku, pred, timeout, what):
    last = {}

    def done():
        last["st"] = stock(c, sku)
        return pred(last["st"])

    try:
        wait_until(done, timeout, what=what)
    except AssertionError:
        raise AssertionError("%s: %s not reached within %.1fs: %r"
                             % (sku, what, timeout, last.get("st")))
    return last["st"]


def mapped(sku, offer, spec, own=0):
    return {"sku": sku, "own_on_hand": own,
            "supplier": {"supplier_id": "1688", "offer_id": offer, "spec_id": spec}}


def broken_alerts(s, c, sku):
    rows = db_alerts(s.db, sku)
    listed = [a for a in alerts_list(c) if a.get("sku") == sku]
    return rows, listed


def test_spec_removed_caught_by_check(env):
    fake, s = env
    sku = "lnk-a"
    c = s.client()
    try:
        c.ok("sku.put", mapped(sku, OFFER_L, SPEC_A))
        wait_stock(c, sku, lambda st: st["supplier_reported"] == 10, 3 * SYNC_S + 2,
                   "reported 10")
        # Blind the sync, then change the link: only the order check can see it.
        fake.ok("POST", "/faults", {"clear": True, "rates": {"5xx": 1.0},
                                    "apis": ["alibaba.product.get"]})
        time.sleep(SYNC_S)   # a round already on the wire may still answer
        fake.ok("POST", "/link", {"offer_id": OFFER_L, "action": "spec_removed",
                                  "spec_id": SPEC_A})
        st = stock(c, sku)
        assert st["mapping"] == "ok" and st["available"] == 10, st

        o = c.ok("reserve", {"order_id": "lnk-a1", "sku": sku, "qty": 2})
        assert (o["status"], o["from_supplier"]) == ("confirmed", 2), o
        rec = wait_orders_final(c, ["lnk-a1"], timeout=10)["lnk-a1"]
        assert rec["status"] == "failed" and "500_003" in rec.get("reason", ""), rec
        assert "lnk-a1" not in fake.ok("GET", "/counters")["out_orders"] or \
            fake.ok("GET", "/counters")["out_orders"]["lnk-a1"]["orders"] == 0
        st = stock(c, sku)
        assert st["mapping"] == "broken", st
        assert st["supplier_sellable"] == 0 and st["supplier_reserved"] == 0, st
        assert st["available"] == 0, st
        rows, listed = broken_alerts(s, c, sku)
        assert any(r["order_id"] == "lnk-a1" for r in rows), rows
        assert any(a.get("order_id") == "lnk-a1" for a in listed), listed
        err = c.err("reserve", {"order_id": "lnk-a2", "sku": sku, "qty": 1})
        assert err["code"] == "insufficient", err
        audit_supplier(s.db, [sku])

        # The sync sees again; the mapping stays broken until sku.put.
        fake.ok("POST", "/faults", {"clear": True})
        time.sleep(3 * SYNC_S)
        st = stock(c, sku)
        assert st["mapping"] == "broken" and st["available"] == 0, st

        # Repair: a fresh mapping to the new spec.
        fake.ok("POST", "/link", {"offer_id": OFFER_L, "action": "spec_added", "sku": {
            "sku_id": 5400000000004, "spec_id": SPEC_A2, "price": 5, "real": 7}})
        st = check_supplier_stock(c.ok("sku.put", mapped(sku, OFFER_L, SPEC_A2)))
        assert st["mapping"] == "ok", st
        wait_stock(c, sku, lambda st: st["supplier_reported"] == 7 and st["available"] == 7,
                   3 * SYNC_S + 2, "reported 7 after the repair")
        o = c.ok("reserve", {"order_id": "lnk-a3", "sku": sku, "qty": 1})
        assert o["from_supplier"] == 1, o
        rec = wait_orders_final(c, ["lnk-a3"], timeout=10)["lnk-a3"]
        assert rec["status"] == "purchased" and rec.get("upstream_order_id"), rec
        assert fake.ok("GET", "/counters")["out_orders"]["lnk-a3"]["orders"] == 1
        audit_supplier(s.db, [sku])
    finally:
        fake.ok("POST", "/faults", {"clear": True})
        c.close()


def test_spec_removed_caught_by_validation(env):
    fake, s = env
    sku = "lnk-b"
    c = s.client()
    try:
        c.ok("sku.put", mapped(sku, OFFER_L, SPEC_B, own=2))
        wait_stock(c, sku, lambda st: st["supplier_reported"] == 10, 3 * SYNC_S + 2,
                   "reported 10")
        assert stock(c, sku)["available"] == 2 + 10
        n_alerts = len(db_alerts(s.db, sku))
        fake.ok("POST", "/link", {"offer_id": OFFER_L, "action": "spec_removed",
                                  "spec_id": SPEC_B})
        st = wait_stock(c, sku, lambda st: st["mapping"] == "broken", 3 * SYNC_S + 2,
                        "mapping broken")
        assert st["supplier_sellable"] == 0 and st["available"] == 2, st
        rows = db_alerts(s.db, sku)
        assert len(rows) > n_alerts and rows[-1]["kind"] == "mapping_broken", rows
        assert rows[-1]["reason"], rows
        _, listed = broken_alerts(s, c, sku)
        assert any(a.get("kind") == "mapping_broken" for a in listed), listed

        # Supplier stock is not sold any more; own stock still is.
        err = c.err("reserve", {"order_id": "lnk-b1", "sku": sku, "qty": 3})
        assert err["code"] == "insufficient", err
        o = c.ok("reserve", {"order_id": "lnk-b2", "sku": sku, "qty": 2})
        assert (o["status"], o["from_own"], o["from_supplier"]) == ("confirmed", 2, 0), o
        time.sleep(2 * SYNC_S)
        assert c.ok("order.get", {"order_id": "lnk-b2"})["status"] == "confirmed"
        assert "lnk-b2" not in fake.ok("GET", "/counters")["out_orders"]

        # Repair with a fresh mapping.
        fake.ok("POST", "/link", {"offer_id": OFFER_L, "action": "spec_added", "sku": {
            "sku_id": 5400000000005, "spec_id": SPEC_B2, "price": 5, "real": 4}})
        st = check_supplier_stock(c.ok("sku.put", mapped(sku, OFFER_L, SPEC_B2, own=2)))
        assert st["mapping"] == "ok", st
        wait_stock(c, sku, lambda st: st["supplier_reported"] == 4 and st["available"] == 4,
                   3 * SYNC_S + 2, "own 2 - 2 reserved + supplier 4")
        audit_supplier(s.db, [sku])
    finally:
        c.close()


def test_price_change_breaks_fingerprint(env):
    fake, s = env
    sku = "lnk-p"
    c = s.client()
    try:
        c.ok("sku.put", mapped(sku, OFFER_P, SPEC_P))
        st = wait_stock(c, sku, lambda st: st["supplier_reported"] == 10, 3 * SYNC_S + 2,
                        "reported 10")
        # Two more rounds: the fingerprint is adopted by now.
        t1 = st["supplier_synced_at"]
        st = wait_stock(c, sku, lambda st: st["supplier_synced_at"] > t1, 3 * SYNC_S + 2,
                        "a second sync")
        t2 = st["supplier_synced_at"]
        st = wait_stock(c, sku, lambda st: st["supplier_synced_at"] > t2, 3 * SYNC_S + 2,
                        "a third sync")
        assert st["mapping"] == "ok" and st["available"] == 10, st
        n_alerts = len(db_alerts(s.db, sku))

        fake.ok("POST", "/link", {"offer_id": OFFER_P, "action": "price",
                                  "spec_id": SPEC_P, "price_fen": 1500})
        st = wait_stock(c, sku, lambda st: st["mapping"] == "broken", 3 * SYNC_S + 2,
                        "mapping broken by the price change")
        assert st["available"] == 0, st
        rows = db_alerts(s.db, sku)
        assert len(rows) == n_alerts + 1 and rows[-1]["kind"] == "mapping_broken", rows
        assert "fingerprint" in rows[-1]["reason"], rows[-1]
        err = c.err("reserve", {"order_id": "lnk-p1", "sku": sku, "qty": 1})
        assert err["code"] == "insufficient", err

        # sku.put with the same spec again: the new price is adopted, it stays ok.
        st = check_supplier_stock(c.ok("sku.put", mapped(sku, OFFER_P, SPEC_P)))
        assert st["mapping"] == "ok", st
        st = wait_stock(c, sku, lambda st: st["supplier_reported"] == 10
                        and st["supplier_synced_at"] > t2 and st["available"] == 10,
                        3 * SYNC_S + 2, "synced after the repair")
        t3 = st["supplier_synced_at"]
        st = wait_stock(c, sku, lambda st: st["supplier_synced_at"] > t3 + SYNC_MS,
                        4 * SYNC_S + 2, "two more syncs")
        assert st["mapping"] == "ok" and st["available"] == 10, st
        assert len(db_alerts(s.db, sku)) == n_alerts + 1
    finally:
        c.close()
