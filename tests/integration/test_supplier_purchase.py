"""Order check and purchase through the outbox, with inflated stock.

Method: a private fake1688 (test_supplier_sync.Fake: its own ports, stopped
by pid) and one stockd pointed at it with short periods (sync 1 s,
validation 1 s, rate limit raised so 60 jobs do not queue behind the token
bucket) and the shared Redis for the alert stream.

1. Happy path: an order taking own and supplier units becomes `purchased`
   with the fake's order id, the order.subscribe connection hears it, the
   fake holds exactly one order for that outOrderId with the supplier part;
   a held order is bought only once confirmed.
2. Inflated stock: the fake has 20 real units and inflation 5 (reports 100);
   60 concurrent orders of 1 (no own stock). Every accepted order ends
   `purchased` (exactly 20: the real quantity) or `failed` with a reason;
   the failed ones bought nothing upstream and gave their stock back
   (counters = sums over orders), each has one alert in MariaDB, in
   alerts.list and in the Redis stream; the fake made <= 20 orders, one per
   outOrderId. After the sync that follows the failures a new supplier
   reserve is refused: stockd stops selling beyond what is real.
Bounded: about 15 s.
"""
import os
import secrets
import threading
import time

import pytest

import itestlib
from itestlib import (alerts_list, audit_supplier, check_supplier_stock, db_alerts,
                      redis_alerts, supplier_flags, wait_order_update, wait_orders_final,
                      wait_until)
from test_supplier_sync import Fake

OFFER_HAPPY = 620000000001
OFFER_INFL = 620000000002
SPEC_HAPPY = "happy0000000000000000000000000001"
SPEC_INFL = "infl00000000000000000000000000001"
SYNC_MS = 1000
REAL = 20
INFLATION = 5
ORDERS = 60


def redis_url():
    url = os.environ.get("STOCKD_REDIS")
    if not url:
        itestlib.skip_or_fail("STOCKD_REDIS not set (tools/stack env)")
    return url


@pytest.fixture(scope="module")
def env(make_stockd):
    rurl = redis_url()
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER_HAPPY, "subject": "happy mug", "skus": [
                {"sku_id": 5300000000001, "spec_id": SPEC_HAPPY, "price": 3, "real": 10}]},
            {"offer_id": OFFER_INFL, "subject": "inflated hoodie", "skus": [
                {"sku_id": 5300000000002, "spec_id": SPEC_INFL, "price": 9, "real": REAL,
                 "inflation": INFLATION}]}]})
        # Not idempotent: a second create for one outOrderId makes a second
        # order, so "orders == 1" proves the worker never created twice.
        fake.ok("POST", "/config", {"idempotent": False})
        s = make_stockd(name="purchase", args=supplier_flags(
            fake.port, secret, token, sync_ms=SYNC_MS, validate_ms=SYNC_MS,
            upstream_lag_ms=0, rate_per_s=2000, purchase_concurrency=8,
            purchase_backoff_max_ms=500, timeout_ms=3000) + ["--redis", rurl])
        yield fake, s, rurl
    finally:
        fake.stop()


def stock(c, sku):
    return check_supplier_stock(c.ok("stock.get", {"sku": sku}))


def wait_reported(c, sku, want, timeout):
    last = {}

    def done():
        last["st"] = stock(c, sku)
        return last["st"]["supplier_reported"] == want and last["st"]["mapping"] == "ok"

    try:
        wait_until(done, timeout, what="%s supplier_reported %d" % (sku, want))
    except AssertionError:
        raise AssertionError("%s not synced to %d: %r" % (sku, want, last.get("st")))
    return last["st"]


def fake_orders(fake, out_order_id):
    return fake.ok("GET", "/orders?out_order_id=" + out_order_id)["orders"]


def fake_real(fake, offer):
    return fake.ok("GET", "/products/%d" % offer)["product"]["skus"][0]["real"]


def test_purchase_happy_path(env):
    fake, s, _ = env
    sku = "pur-happy"
    c = s.client()
    sub = s.client()
    try:
        c.ok("sku.put", {"sku": sku, "own_on_hand": 1, "supplier": {
            "supplier_id": "1688-happy", "offer_id": OFFER_HAPPY, "spec_id": SPEC_HAPPY}})
        st = wait_reported(c, sku, 10, timeout=3 * SYNC_MS / 1000.0 + 2)
        assert st["available"] == 1 + 10, st
        err, res = sub.call("order.subscribe", {})
        assert err is None, err

        # Own first, then supplier: 1 + 2; confirmed at once -> a purchase job.
        t0 = time.time() * 1000
        o = c.ok("reserve", {"order_id": "pur-h1", "sku": sku, "qty": 3})
        assert (o["status"], o["from_own"], o["from_supplier"]) == ("confirmed", 1, 2), o
        rec = wait_order_update(sub, "pur-h1", "purchased", timeout=10)
        assert rec.get("upstream_order_id"), rec
        assert rec.get("purchased_at", 0) >= t0 - 1000, rec
        got = c.ok("order.get", {"order_id": "pur-h1"})
        assert got["status"] == "purchased", got
        assert got["upstream_order_id"] == rec["upstream_order_id"], (got, rec)
        ups = fake_orders(fake, "pur-h1")
        assert len(ups) == 1, ups
        assert ups[0]["baseInfo"]["idOfStr"] == got["upstream_order_id"], (ups, got)
        items = ups[0]["productItems"]
        assert [(i["specId"], i["quantity"]) for i in items] == [(SPEC_HAPPY, 2)], items
        assert fake.ok("GET", "/counters")["out_orders"]["pur-h1"] == {
            "create_calls": 1, "orders": 1}

        # A held order is not bought while held; its confirm queues the job.
        h = c.ok("reserve", {"order_id": "pur-h2", "sku": sku, "qty": 1, "hold_ms": 30000})
        assert (h["status"], h["from_supplier"]) == ("held", 1), h
        time.sleep(0.5)
        assert "pur-h2" not in fake.ok("GET", "/counters")["out_orders"]
        assert c.ok("order.get", {"order_id": "pur-h2"})["status"] == "held"
        c.ok("confirm", {"order_id": "pur-h2"})
        rec2 = wait_order_update(sub, "pur-h2", "purchased", timeout=10)
        assert rec2.get("upstream_order_id") and rec2["upstream_order_id"] != got[
            "upstream_order_id"], (rec2, got)
        assert len(fake_orders(fake, "pur-h2")) == 1
        counters = fake.ok("GET", "/counters")
        assert counters["calls"]["alibaba.createOrder.preview"] >= 2, counters["calls"]
        assert not [a for a in alerts_list(c) if a.get("sku") == sku]
        assert fake_real(fake, OFFER_HAPPY) == 10 - 2 - 1
        audit_supplier(s.db, [sku])
    finally:
        c.close()
        sub.close()


def place_concurrently(s, sku, n, threads=12):
    """n reserves of qty 1 from `threads` connections, pipelined: all arrive
    within a few ms. Returns ({order_id: reply}, {order_id: error})."""
    ok, refused, problems = {}, {}, []
    lock = threading.Lock()
    ids = ["pur-i%03d" % i for i in range(n)]

    def worker(part):
        try:
            with s.client(timeout=20) as c:
                sent = [(o, c.send("reserve", {"order_id": o, "sku": sku, "qty": 1}))
                        for o in part]
                for o, mid in sent:
                    err, res = c.wait(mid)
                    with lock:
                        if err is None:
                            ok[o] = res
                        else:
                            refused[o] = err
        except Exception as e:  # noqa: BLE001 - reported below
            problems.append(repr(e))

    ts = [threading.Thread(target=worker, args=(ids[k::threads],)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not any(t.is_alive() for t in ts), "reserve threads hung"
    assert not problems, problems
    bad = {o: e for o, e in refused.items() if e.get("code") != "insufficient"}
    assert not bad, "reserves failed other than insufficient: %r" % bad
    return ok, refused


def test_inflated_stock(env):
    fake, s, rurl = env
    sku = "pur-infl-" + secrets.token_hex(4)   # unique in the shared Redis stream
    c = s.client()
    try:
        c.ok("sku.put", {"sku": sku, "own_on_hand": 0, "supplier": {
            "supplier_id": "1688-infl", "offer_id": OFFER_INFL, "spec_id": SPEC_INFL}})
        st = wait_reported(c, sku, REAL * INFLATION, timeout=3 * SYNC_MS / 1000.0 + 2)
        assert st["available"] == 100 and st["supplier_sellable"] == 100, st

        ok, refused = place_concurrently(s, sku, ORDERS)
        accepted = sorted(ok)
        assert len(accepted) > REAL, "only %d of %d accepted: the test shows nothing" % (
            len(accepted), ORDERS)
        assert all(r["status"] == "confirmed" and r["from_supplier"] == 1
                   for r in ok.values()), list(ok.values())[:5]

        recs = wait_orders_final(c, accepted, timeout=30)
        purchased = sorted(o for o, r in recs.items() if r["status"] == "purchased")
        failed = sorted(o for o, r in recs.items() if r["status"] == "failed")
        assert len(purchased) <= REAL, "bought %d, only %d real" % (len(purchased), REAL)
        # Nothing else failed them: every real unit is bought.
        assert len(purchased) == REAL, "bought %d of %d real units" % (len(purchased), REAL)
        assert len(purchased) + len(failed) == len(accepted)
        # Each failed on the supplier's insufficient-stock answer (preview or create).
        assert all("500_004" in recs[o].get("reason", "") for o in failed), \
            [recs[o] for o in failed][:5]
        assert all(recs[o].get("upstream_order_id") for o in purchased)

        # The fake: <= 20 orders, one per purchased outOrderId, none for failed ones.
        cnt = fake.ok("GET", "/counters")
        outs = cnt["out_orders"]
        assert cnt["orders_created"] <= REAL + 2, cnt["orders_created"]  # + the happy path
        assert sum(outs.get(o, {}).get("orders", 0) for o in accepted) <= REAL
        assert [o for o in purchased if outs.get(o, {}).get("orders") != 1] == [], \
            {o: outs.get(o) for o in purchased if outs.get(o, {}).get("orders") != 1}
        assert [o for o in failed if outs.get(o, {}).get("orders", 0) != 0] == [], \
            "failed orders were bought upstream: %r" % {
                o: outs[o] for o in failed if outs.get(o, {}).get("orders", 0)}
        assert fake_real(fake, OFFER_INFL) == 0

        # Stock returned: counters equal the sums over orders.
        audit_supplier(s.db, [sku])

        # One alert per failed order: MariaDB, alerts.list, Redis.
        rows = [a for a in db_alerts(s.db, sku) if a["kind"] == "purchase_failed"]
        per = {}
        for a in rows:
            per[a["order_id"]] = per.get(a["order_id"], 0) + 1
        assert per == {o: 1 for o in failed}, "MariaDB alerts per failed order: %r" % per
        listed = [a for a in alerts_list(c, 1000) if a.get("sku") == sku
                  and a.get("kind") == "purchase_failed"]
        assert sorted(a.get("order_id") for a in listed) == failed, listed[:5]
        assert all(a.get("reason") and a.get("at") for a in listed), listed[:5]

        def redis_done():
            got = [a for a in redis_alerts(rurl, sku) if a.get("kind") == "purchase_failed"]
            return sorted(a.get("order_id") for a in got) == failed and got
        try:
            wait_until(redis_done, 5, what="Redis alerts")
        except AssertionError:
            got = redis_alerts(rurl, sku)
            raise AssertionError("Redis stream stockd:alerts for %s: %d entries, want one "
                                 "purchase_failed per %d failed orders: %r"
                                 % (sku, len(got), len(failed), got[:5]))

        # After the incremental sync that follows the failures stockd believes
        # the supplier: reported 0, nothing more sold.
        last_fail = max(recs[o]["updated_at"] for o in failed)
        wait_until(lambda: (lambda st: st["supplier_reported"] == 0
                            and st["supplier_synced_at"] >= last_fail)(stock(c, sku)),
                   3 * SYNC_MS / 1000.0 + 2, what="a sync after the last failure")
        st = stock(c, sku)
        assert st["available"] == 0 and st["supplier_sellable"] == 0, st
        err = c.err("reserve", {"order_id": "pur-after", "sku": sku, "qty": 1})
        assert err["code"] == "insufficient", err
        if "trust" in st:
            assert st["trust"] < 1.0, "insufficient-stock failures did not cut trust: %r" % st
    finally:
        c.close()
