"""Supplier down, and kill -9 with purchase jobs pending.

Method: a private fake1688 (test_supplier_sync.Fake) set to idempotent
false, so a second fastCreateOrder for one outOrderId would make a second
order: its per-outOrderId counter `orders` == 1 proves nothing was bought
twice. One stockd with sync 500 ms and a 2 s supplier call timeout.

1. Outage ("a minute", scaled to ~10 s): connections refused, then gateway
   5xx, then every answer held past stockd's timeout, then the QoS limit,
   then only fastCreateOrder timing out (the order IS made upstream, the
   answer never comes). Meanwhile one connection reserves own stock
   nonstop: all succeed, at a rate near the baseline, with bounded latency.
   Supplier orders placed in each phase stay `confirmed` while nothing can
   reach the supplier (transient failures never fail an order) and all end
   `purchased` once it is back, each with exactly one upstream order.
2. kill -9: orders whose create reached the fake but whose answer never
   came, and orders made while the fake refuses connections; kill -9;
   faults cleared; restart: all end `purchased`, one upstream order each,
   create_calls 1 for every order (the restarted worker looked up first).
Bounded: about 30 s.
"""
import secrets
import threading
import time

import pytest

from itestlib import (audit_supplier, check_supplier_stock, supplier_flags, wait_orders_final,
                      wait_until)
from test_supplier_sync import Fake

OFFER = 640000000001
SPEC_OUT = "fltout00000000000000000000000001"
SPEC_KILL = "fltkil00000000000000000000000001"
SYNC_MS = 500
TIMEOUT_MS = 2000
PHASE_S = 2.0
CREATE = "alibaba.trade.fastCreateOrder"


@pytest.fixture(scope="module")
def env(make_stockd):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER, "subject": "sturdy box", "skus": [
                {"sku_id": 5500000000001, "spec_id": SPEC_OUT, "price": 2, "real": 100},
                {"sku_id": 5500000000002, "spec_id": SPEC_KILL, "price": 2, "real": 50}]}]})
        fake.ok("POST", "/config", {"idempotent": False})
        s = make_stockd(name="faults", args=supplier_flags(
            fake.port, secret, token, sync_ms=SYNC_MS, validate_ms=SYNC_MS,
            upstream_lag_ms=0, rate_per_s=2000, purchase_concurrency=8,
            purchase_backoff_max_ms=400, timeout_ms=TIMEOUT_MS))
        yield fake, s
    finally:
        fake.stop()


def stock(c, sku):
    return check_supplier_stock(c.ok("stock.get", {"sku": sku}))


def mapped(sku, spec):
    return {"sku": sku, "own_on_hand": 0,
            "supplier": {"supplier_id": "1688", "offer_id": OFFER, "spec_id": spec}}


def wait_reported(c, sku, want):
    wait_until(lambda: stock(c, sku)["supplier_reported"] == want, 3 * SYNC_MS / 1000.0 + 2,
               what="%s reported %d" % (sku, want))


def fake_real(fake, spec):
    p = fake.ok("GET", "/products/%d" % OFFER)["product"]
    return [k["real"] for k in p["skus"] if k["spec_id"] == spec][0]


class OwnLoad:
    """One connection reserving 1 unit of own stock back to back."""

    def __init__(self, s, sku, prefix):
        self.s, self.sku, self.prefix = s, sku, prefix
        self.lat, self.errors = [], []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run)

    def run(self):
        try:
            with self.s.client(timeout=10) as c:
                i = 0
                while not self.stop_ev.is_set():
                    i += 1
                    t0 = time.monotonic()
                    err, res = c.call("reserve", {"order_id": "%s-%06d" % (self.prefix, i),
                                                  "sku": self.sku, "qty": 1})
                    self.lat.append(time.monotonic() - t0)
                    if err is not None:
                        self.errors.append(err)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))

    def __enter__(self):
        self.t0 = time.monotonic()
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        self.t.join(15)
        self.secs = time.monotonic() - self.t0
        assert not self.t.is_alive(), "own-stock load hung"

    @property
    def rate(self):
        return len(self.lat) / self.secs


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def check_one_upstream_each(fake, c, oids):
    outs = fake.ok("GET", "/counters")["out_orders"]
    bad = {o: outs.get(o) for o in oids if (outs.get(o) or {}).get("orders") != 1}
    assert not bad, "outOrderIds without exactly one upstream order: %r" % bad
    for o in oids:
        ups = fake.ok("GET", "/orders?out_order_id=" + o)["orders"]
        rec = c.ok("order.get", {"order_id": o})
        assert len(ups) == 1 and ups[0]["baseInfo"]["idOfStr"] == rec["upstream_order_id"], (
            o, rec, ups)
    return outs


def test_supplier_down_own_stock_continues(env):
    fake, s = env
    own, sup = "flt-own", "flt-sup"
    c = s.client()
    try:
        c.ok("sku.put", {"sku": own, "own_on_hand": 1000000})
        c.ok("sku.put", mapped(sup, SPEC_OUT))
        wait_reported(c, sup, 100)
        real0 = fake_real(fake, SPEC_OUT)

        with OwnLoad(s, own, "flt-base") as base:
            time.sleep(1.0)
        assert not base.errors, base.errors[:5]
        assert len(base.lat) >= 20, "baseline too slow to compare: %d" % len(base.lat)

        phases = [
            ("refused", {"clear": True, "refuse": True, "rates": {"reset": 1.0}}),
            ("5xx", {"clear": True, "rates": {"5xx": 1.0}}),
            ("timeout", {"clear": True, "rates": {"timeout": 1.0},
                         "timeout_hold_ms": TIMEOUT_MS + 2000}),
            ("qos", {"clear": True, "rates": {"qos": 1.0}}),
        ]
        placed = []
        with OwnLoad(s, own, "flt-load") as load:
            for n, (name, faults) in enumerate(phases):
                fake.ok("POST", "/faults", faults)
                for k in range(2):
                    oid = "flt-o%d%d" % (n, k)
                    o = c.ok("reserve", {"order_id": oid, "sku": sup, "qty": 1})
                    assert (o["status"], o["from_supplier"]) == ("confirmed", 1), o
                    placed.append(oid)
                time.sleep(PHASE_S)
            # Nothing could reach the supplier: nothing bought, nothing failed.
            st = {o: c.ok("order.get", {"order_id": o})["status"] for o in placed}
            assert set(st.values()) == {"confirmed"}, "during the outage: %r" % st
            assert fake_real(fake, SPEC_OUT) == real0
            # Last phase: creates run upstream but their answers never come.
            fake.ok("POST", "/faults", {"clear": True, "rates": {"timeout": 1.0},
                                        "apis": [CREATE], "timeout_hold_ms": TIMEOUT_MS + 5000})
            for k in range(2):
                oid = "flt-o%d%d" % (len(phases), k)
                c.ok("reserve", {"order_id": oid, "sku": sup, "qty": 1})
                placed.append(oid)
            time.sleep(PHASE_S)
            fake.ok("POST", "/faults", {"clear": True})
            recs = wait_orders_final(c, placed, timeout=20)
        bad = {o: (r["status"], r.get("reason")) for o, r in recs.items()
               if r["status"] != "purchased"}
        assert not bad, "orders not purchased after the outage: %r" % bad

        # Own stock went on at full speed, unblocked.
        assert not load.errors, load.errors[:5]
        print("own reserves: baseline %.0f/s, during outage %.0f/s (%d), p99 %.1f ms, "
              "max %.1f ms" % (base.rate, load.rate, len(load.lat), 1000 * p99(load.lat),
                               1000 * max(load.lat)))
        assert load.rate >= 0.4 * base.rate, "own reserves slowed: %.0f/s vs %.0f/s" % (
            load.rate, base.rate)
        assert p99(load.lat) < 0.25 and max(load.lat) < 1.0, (
            "own reserve latency during the outage: p99 %.3fs max %.3fs"
            % (p99(load.lat), max(load.lat)))
        cnt = fake.ok("GET", "/counters")
        for kind in ("5xx", "timeout", "qos"):
            assert cnt["faults"].get(kind, 0) > 0, "fault %s never hit stockd: %r" % (
                kind, cnt["faults"])
        audit_supplier(s.db, [own, sup])
        # Last: one upstream order per outOrderId (create_calls 2 means a
        # create was sent again after an unknown outcome instead of a lookup).
        check_one_upstream_each(fake, c, placed)
        assert fake_real(fake, SPEC_OUT) == real0 - len(placed)
    finally:
        fake.ok("POST", "/faults", {"clear": True})
        c.close()


def test_kill9_with_pending_jobs(env):
    fake, s = env
    sku = "flt-kill"
    c = s.client()
    try:
        c.ok("sku.put", mapped(sku, SPEC_KILL))
        wait_reported(c, sku, 50)
        # X: the creates reach the fake, the answers are held past the kill.
        fake.ok("POST", "/faults", {"clear": True, "rates": {"timeout": 1.0},
                                    "apis": [CREATE], "timeout_hold_ms": 30000})
        xs = ["flt-kx%d" % i for i in range(4)]
        for o in xs:
            assert c.ok("reserve", {"order_id": o, "sku": sku, "qty": 1})["from_supplier"] == 1

        def created():
            outs = fake.ok("GET", "/counters")["out_orders"]
            return all((outs.get(o) or {}).get("create_calls", 0) >= 1 for o in xs)
        wait_until(created, 5, step=0.02, what="the creates of X at the fake")
        # Y: the fake refuses connections (and drops kept-alive ones).
        fake.ok("POST", "/faults", {"clear": True, "refuse": True, "rates": {"reset": 1.0}})
        ys = ["flt-ky%d" % i for i in range(4)]
        for o in ys:
            assert c.ok("reserve", {"order_id": o, "sku": sku, "qty": 1})["from_supplier"] == 1
        time.sleep(0.5)
        st = {o: c.ok("order.get", {"order_id": o})["status"] for o in xs + ys}
        assert set(st.values()) == {"confirmed"}, (
            "jobs must still be pending at the kill (timing?): %r" % st)
        c.close()

        s.kill9()
        fake.ok("POST", "/faults", {"clear": True})
        s.start()
        c = s.client()
        recs = wait_orders_final(c, xs + ys, timeout=20)
        bad = {o: (r["status"], r.get("reason")) for o, r in recs.items()
               if r["status"] != "purchased"}
        assert not bad, "pending purchases after the restart: %r" % bad
        outs = check_one_upstream_each(fake, c, xs + ys)
        twice = {o: outs[o] for o in xs + ys if outs[o]["create_calls"] != 1}
        assert not twice, "created again instead of looked up: %r" % twice
        assert fake_real(fake, SPEC_KILL) == 50 - 8
        st = stock(c, sku)
        assert st["own_reserved"] == 0, st
        audit_supplier(s.db, [sku])
    finally:
        fake.ok("POST", "/faults", {"clear": True})
        c.close()
