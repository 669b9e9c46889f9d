"""Exactly-once accounting of bought units across sync windows (DESIGN.md §2),
and a scripted run.

A unit bought upstream stays in supplier_reserved until a snapshot taken at
least upstream_lag (U) after the purchase; the supplier's own figure lags by
L <= U. So between the purchase and that snapshot the unit may be counted
twice (conservative), never zero times (oversell), and it leaves
supplier_reserved exactly once.

Method: a private fake1688 (test_supplier_sync.Fake) whose reported figure
trails the real one by L = 1000 ms; stockd with --supplier-upstream-lag-ms
U = 2500 and snapshots every S = 200 ms. One SKU: own 4, supplier real 50.
A scripted sequence of purchases, a hold, a release, a confirm and a
third-party sale at the supplier; at each checkpoint stock.get's
supplier_reserved and available equal figures computed by hand below
(available = (own_on_hand - own_reserved) + max(0, sellable - supplier_reserved),
trust 1 so sellable = reported). Every poll before purchased_at + U must
still show the bought units reserved (no early settlement), and the ledger
has exactly one "settle" row per bought order. Bounded: about 12 s.
"""
import secrets
import time

import pytest

from itestlib import (audit_supplier, check_supplier_stock, compare_stock_with_db,
                      supplier_flags, wait_orders_final, wait_until)
from test_supplier_sync import Fake

OFFER = 650000000001
SPEC = "acct0000000000000000000000000001"
L_MS = 1000        # the fake's reporting lag
U_MS = 2500        # stockd's upstream lag (>= L)
S_MS = 200         # snapshot period
SKU = "acct-1"


@pytest.fixture(scope="module")
def env(make_stockd):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/config", {"lag_ms": L_MS})
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER, "subject": "ledger lamp", "skus": [
                {"sku_id": 5600000000001, "spec_id": SPEC, "price": 4, "real": 50}]}]})
        s = make_stockd(name="acct", args=supplier_flags(
            fake.port, secret, token, sync_ms=S_MS, validate_ms=S_MS,
            upstream_lag_ms=U_MS, rate_per_s=2000, purchase_backoff_max_ms=300,
            timeout_ms=3000))
        yield fake, s
    finally:
        fake.stop()


def now_ms():
    return int(time.time() * 1000)


class Watch:
    """stock.get with the wall-clock time the answer was in hand; remembers
    every observation to check "not settled before purchased_at + U"."""

    def __init__(self, c):
        self.c = c
        self.seen = []   # (t_after_ms, stock map)

    def get(self):
        st = check_supplier_stock(self.c.ok("stock.get", {"sku": SKU}))
        self.seen.append((now_ms(), st))
        return st

    def until(self, pred, timeout, what):
        last = {}

        def done():
            last["st"] = self.get()
            return pred(last["st"])
        try:
            wait_until(done, timeout, step=0.02, what=what)
        except AssertionError:
            raise AssertionError("%s not reached in %.1fs: %r" % (what, timeout, last.get("st")))
        return last["st"]

    def mark(self):
        """A point in the observations: only later ones count for early()."""
        return len(self.seen)

    def early(self, mark, deadline_ms, want_at_least):
        """Observations after mark, answered before deadline_ms, showing
        supplier_reserved below want_at_least: a settlement before
        purchased_at + U."""
        return [(t, st["supplier_reserved"]) for t, st in self.seen[mark:]
                if t < deadline_ms and st["supplier_reserved"] < want_at_least]


def expect(st, reserved, available, what, reported=None):
    got = (st["supplier_reserved"], st["available"])
    assert got == (reserved, available), (
        "%s: supplier_reserved, available = %r, hand-computed (%d, %d); stock %r"
        % (what, got, reserved, available, st))
    if reported is not None:
        assert st["supplier_reported"] == reported, (what, st)


def settle_rows(db, order_id):
    return db.query("SELECT d_supplier_reserved FROM ledger WHERE order_id = %s "
                    "AND move = 'settle'", (order_id.encode(),))


def test_scripted_purchases_between_snapshots(env):
    fake, s = env
    c = s.client()
    w = Watch(c)
    try:
        c.ok("sku.put", {"sku": SKU, "own_on_hand": 4, "supplier": {
            "supplier_id": "1688", "offer_id": OFFER, "spec_id": SPEC}})
        st = w.until(lambda st: st["supplier_reported"] == 50, 3 * S_MS / 1000.0 + 2,
                     "first snapshot")
        expect(st, 0, (4 - 0) + (50 - 0), "0: synced")

        # 1. Between two snapshots: o1 (6 = own 4 + supplier 2) and o2 (3)
        # confirmed, o3 (5) held, o4 (2) held and released.
        t_start, m_start = now_ms(), w.mark()
        o1 = c.ok("reserve", {"order_id": "acct-o1", "sku": SKU, "qty": 6})
        assert (o1["from_own"], o1["from_supplier"]) == (4, 2), o1
        assert o1["available"] == (4 - 4) + (50 - 2), o1
        o2 = c.ok("reserve", {"order_id": "acct-o2", "sku": SKU, "qty": 3})
        assert o2["from_supplier"] == 3 and o2["available"] == (4 - 4) + (50 - 2 - 3), o2
        o3 = c.ok("reserve", {"order_id": "acct-o3", "sku": SKU, "qty": 5, "hold_ms": 60000})
        assert o3["status"] == "held" and o3["available"] == (50 - 2 - 3 - 5), o3
        c.ok("reserve", {"order_id": "acct-o4", "sku": SKU, "qty": 2, "hold_ms": 60000})
        c.ok("release", {"order_id": "acct-o4"})
        recs = wait_orders_final(c, ["acct-o1", "acct-o2"], timeout=5)
        assert all(r["status"] == "purchased" for r in recs.values()), recs
        p1, p2 = recs["acct-o1"]["purchased_at"], recs["acct-o2"]["purchased_at"]
        assert t_start - 1000 <= p1 <= p2 <= now_ms() + 1000, (t_start, p1, p2)

        # A: both bought, the supplier's figure does not show it yet (lag L).
        st = w.get()
        assert w.seen[-1][0] < t_start + L_MS, "too slow to see checkpoint A (%d ms)" % (
            w.seen[-1][0] - t_start)
        expect(st, 2 + 3 + 5, (4 - 4) + (50 - (2 + 3 + 5)), "A: bought, not yet reported",
               reported=50)

        # B: a snapshot >= L after the creates shows 50 - 2 - 3 = 45, but it
        # was taken < U after the purchases: the units stay reserved (counted
        # twice for a while: undersell, never oversell).
        st = w.until(lambda st: st["supplier_reported"] == 45, (L_MS + 4 * S_MS) / 1000.0 + 2,
                     "the lagged figure 45")
        assert w.seen[-1][0] < p1 + U_MS, "too slow to see checkpoint B"
        expect(st, 2 + 3 + 5, (4 - 4) + (45 - (2 + 3 + 5)), "B: reported, not yet settled")

        # C: a snapshot >= U after each purchase settles it, once.
        st = w.until(lambda st: st["supplier_reserved"] == 5,
                     (p2 + U_MS - now_ms() + 4 * S_MS) / 1000.0 + 2, "o1 and o2 settled")
        expect(st, 5, (4 - 4) + (45 - 5), "C: settled", reported=45)
        assert not w.early(m_start, p1 + U_MS, 2 + 3 + 5), (
            "settled before purchased_at + U: %r" % w.early(m_start, p1 + U_MS, 10))
        assert not w.early(m_start, p2 + U_MS, 3 + 5), (
            "o2 settled before purchased_at + U: %r" % w.early(m_start, p2 + U_MS, 8))
        t_c = st["supplier_synced_at"]
        st = w.until(lambda st: st["supplier_synced_at"] >= t_c + 3 * S_MS, 3 * S_MS / 1000.0 + 2,
                     "three more snapshots")
        expect(st, 5, (4 - 4) + (45 - 5), "C': later snapshots change nothing", reported=45)
        assert [r["d_supplier_reserved"] for r in settle_rows(s.db, "acct-o1")] == [-2]
        assert [r["d_supplier_reserved"] for r in settle_rows(s.db, "acct-o2")] == [-3]
        for o in ("acct-o1", "acct-o2"):
            assert c.ok("order.get", {"order_id": o}).get("supplier_settled") is True, o
        audit_supplier(s.db, [SKU])
        compare_stock_with_db(c, s.db, [SKU])

        # 2. The held o3 is confirmed and bought; someone else buys 7 at the
        # supplier at the same time.
        t_d, m_d = now_ms(), w.mark()
        c.ok("confirm", {"order_id": "acct-o3"})
        fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "delta": -7})
        p3 = wait_orders_final(c, ["acct-o3"], timeout=5)["acct-o3"]
        assert p3["status"] == "purchased", p3
        p3 = p3["purchased_at"]
        st = w.get()
        if w.seen[-1][0] < t_d + L_MS:
            expect(st, 5, (4 - 4) + (45 - 5), "D0: o3 bought, not yet reported", reported=45)
        # D: the supplier shows 45 - 5 - 7 = 33 and o3 has settled.
        st = w.until(lambda st: st["supplier_reserved"] == 0 and st["supplier_reported"] == 33,
                     (p3 + U_MS - now_ms() + 4 * S_MS) / 1000.0 + 2, "o3 settled, 33 reported")
        expect(st, 0, (4 - 4) + (33 - 0), "D: all settled", reported=45 - 5 - 7)
        assert not w.early(m_d, p3 + U_MS, 5), (
            "o3 settled before purchased_at + U: %r" % w.early(m_d, p3 + U_MS, 5))
        assert [r["d_supplier_reserved"] for r in settle_rows(s.db, "acct-o3")] == [-5]
        assert fake.ok("GET", "/products/%d" % OFFER)["product"]["skus"][0]["real"] == 33
        out = fake.ok("GET", "/counters")["out_orders"]
        assert {o: out[o]["orders"] for o in ("acct-o1", "acct-o2", "acct-o3")} == {
            "acct-o1": 1, "acct-o2": 1, "acct-o3": 1}
        assert "acct-o4" not in out
        audit_supplier(s.db, [SKU])
        compare_stock_with_db(c, s.db, [SKU])
    finally:
        c.close()
