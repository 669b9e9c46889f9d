"""test.clock and --test-clock: the manual wall clock a simulator drives.

Goal: with --test-clock off (the default) the method is refused with a
clear error and nothing changes; with it on, the wall clock that decides
answers stands still until test.clock moves it, only forward, by a bounded
step; every bad input is an answer (never a crash); a supplier round that
falls due inside a step has run, and its figures are in, when the call
answers; a hold lapses when the clock passes its expiry, at once.
Method: stockd servers of their own (one with the option off, two with it
on, one of them with a private fake1688 and a 60 s sync period that only
the test clock can reach). Bounded: a few seconds.
"""
import secrets
import subprocess
import time

import pytest

import itestlib
from itestlib import supplier_flags
from test_supplier_sync import Fake

OFFER = 610000000077
SPEC = "cccccccccccccccccccccccccccccccc"
DAY_MS = 86400000


def err_of(c, params):
    err, res = c.call("test.clock", params)
    assert err is not None, res
    return err


def now_of(c):
    return c.ok("test.clock", {})["now_ms"]


def test_refused_when_the_option_is_off(make_stockd):
    s = make_stockd(name="tclock-off")
    c = s.client()
    try:
        before = c.ok("stats")
        for params in ({}, {"now_ms": int(time.time() * 1000) + 60000}, {"now_ms": "x"}):
            err = err_of(c, params)
            if params.get("now_ms") == "x":
                assert err["code"] == "invalid" and err["field"] == "now_ms", err
            else:
                assert err["code"] == "invalid_state" and not err["retryable"], err
                assert "--test-clock" in err["message"], err
        # Nothing moved: the wall clock is the system's.
        c.ok("sku.put", {"sku": "tc-off", "own_on_hand": 1})
        o = c.ok("reserve", {"order_id": "tc-off-1", "sku": "tc-off", "qty": 1})
        assert abs(o["created_at"] - time.time() * 1000) < 60000, o
        assert c.ok("stats")["uptime_ms"] >= before["uptime_ms"]
        assert s.alive()
    finally:
        c.close()


@pytest.fixture(scope="module")
def tstockd(make_stockd):
    return make_stockd(name="tclock-on", args=["--test-clock", "yes"])


def test_clock_stands_still_and_moves_only_forward(tstockd):
    c = tstockd.client()
    try:
        t0 = now_of(c)
        assert abs(t0 - time.time() * 1000) < 600000, t0  # started at the real time
        time.sleep(0.3)
        assert now_of(c) == t0                          # not moved by itself
        r = c.ok("test.clock", {"now_ms": t0 + 1000})
        assert r["now_ms"] == t0 + 1000 and r["settled"] is True and r["rounds"] == 0, r
        assert "next_due_ms" not in r, r                # no supplier: no rounds
        # The same time again is fine (it only waits for the node to settle).
        assert c.ok("test.clock", {"now_ms": t0 + 1000})["now_ms"] == t0 + 1000
        # Back: refused, nothing changed.
        err = err_of(c, {"now_ms": t0 + 999})
        assert err["code"] == "invalid" and err["field"] == "now_ms", err
        assert "earlier" in err["message"], err
        assert now_of(c) == t0 + 1000
        # A step over a day: refused, nothing changed; a day exactly is fine.
        err = err_of(c, {"now_ms": t0 + 1000 + DAY_MS + 1})
        assert err["code"] == "invalid" and err["field"] == "now_ms", err
        assert now_of(c) == t0 + 1000
        assert c.ok("test.clock", {"now_ms": t0 + 1000 + DAY_MS})["now_ms"] == t0 + 1000 + DAY_MS
        # Records carry the manual time.
        c.ok("sku.put", {"sku": "tc-rec", "own_on_hand": 2})
        o = c.ok("reserve", {"order_id": "tc-rec-1", "sku": "tc-rec", "qty": 1})
        assert o["created_at"] == t0 + 1000 + DAY_MS, o
        assert tstockd.alive()
    finally:
        c.close()


def test_wrong_types_are_invalid(tstockd):
    c = tstockd.client()
    try:
        t = now_of(c)
        for bad in ("soon", -5, 0, 1.5, None, True, [t + 1], {"at": t + 1}, 2 ** 64 - 1,
                    -(2 ** 63)):
            err = err_of(c, {"now_ms": bad})
            assert err["code"] == "invalid" and err["field"] == "now_ms", (bad, err)
        err = err_of(c, {"now": t + 1})
        assert err["code"] == "invalid", err
        err = err_of(c, [t + 1])
        assert err["code"] == "invalid", err
        assert now_of(c) == t
        assert tstockd.alive()
    finally:
        c.close()


def test_a_hold_lapses_when_the_clock_passes_it(tstockd):
    c = tstockd.client()
    try:
        c.ok("sku.put", {"sku": "tc-hold", "own_on_hand": 3})
        o = c.ok("reserve", {"order_id": "tc-hold-1", "sku": "tc-hold", "qty": 2,
                             "hold_ms": 1000})
        assert o["status"] == "held", o
        time.sleep(1.5)                                  # real time alone: still held
        assert c.ok("order.get", {"order_id": "tc-hold-1"})["status"] == "held"
        c.ok("test.clock", {"now_ms": o["hold_expires_at"]})
        # Expired by the time test.clock answered: no waiting for a tick.
        assert c.ok("order.get", {"order_id": "tc-hold-1"})["status"] == "expired"
        assert c.ok("stock.get", {"sku": "tc-hold"})["available"] == 3
    finally:
        c.close()


def test_admin_token_guards_it(make_stockd):
    token = "adm-" + secrets.token_hex(8)
    s = make_stockd(name="tclock-admin", args=["--test-clock", "yes", "--admin-token", token])
    c = s.client()
    try:
        err = err_of(c, {})
        assert err["code"] == "unauthorized", err
        t = c.ok("test.clock", {"token": token})["now_ms"]
        err = err_of(c, {"now_ms": t + 5})
        assert err["code"] == "unauthorized", err
        assert c.ok("test.clock", {"token": token})["now_ms"] == t
    finally:
        c.close()


def test_test_clock_is_for_one_node():
    r = subprocess.run([itestlib.stockd_bin(), "--check-config", "--test-clock", "yes",
                        "--node", "n1", "--peers", "n1=127.0.0.1:7401"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode != 0 and "single node" in r.stdout, r.stdout
    r = subprocess.run([itestlib.stockd_bin(), "--check-config", "--test-clock", "maybe"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode != 0 and "test-clock" in r.stdout, r.stdout


def test_a_due_round_has_run_when_the_call_answers(make_stockd):
    """The sync period is a minute of the test clock: the figure changed at
    the supplier shows only once test.clock passed a round, and then at
    once (the call waited for the round's calls and writes)."""
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [{
            "offer_id": OFFER, "subject": "cup", "skus": [
                {"sku_id": 5200000000077, "spec_id": SPEC, "price": 3, "real": 30}]}]})
        s = make_stockd(name="tclock-sync", args=["--test-clock", "yes"] + supplier_flags(
            fake.port, secret, token, sync_ms=60000, validate_ms=600000))
        c = s.client()
        try:
            t0 = now_of(c)
            c.ok("sku.put", {"sku": "tc-sync", "own_on_hand": 0, "supplier": {
                "supplier_id": "s1", "offer_id": OFFER, "spec_id": SPEC}})
            # sku.put asks for the new link at once; test.clock {} waits for it.
            r = c.ok("test.clock", {})
            assert r["now_ms"] == t0 and r["settled"] and r["rounds"] == 0, r
            assert c.ok("stock.get", {"sku": "tc-sync"})["supplier_reported"] == 30
            # The first round falls due 1 s after start-up, then every 60 s.
            assert r["next_due_ms"] == t0 + 1000, r
            fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "reported": 12})
            time.sleep(1.5)                              # real time: nothing runs
            assert c.ok("stock.get", {"sku": "tc-sync"})["supplier_reported"] == 30
            r = c.ok("test.clock", {"now_ms": t0 + 999})
            assert r["rounds"] == 0, r
            assert c.ok("stock.get", {"sku": "tc-sync"})["supplier_reported"] == 30
            r = c.ok("test.clock", {"now_ms": t0 + 1000})
            assert r["rounds"] == 1 and r["settled"] and r["next_due_ms"] == t0 + 61000, r
            st = c.ok("stock.get", {"sku": "tc-sync"})
            assert st["supplier_reported"] == 12, st
            assert st["supplier_synced_at"] == t0 + 1000, st  # synced_at is the manual time
            # Three periods in one step: three rounds, each at its own time.
            fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "reported": 9})
            r = c.ok("test.clock", {"now_ms": t0 + 1000 + 3 * 60000 + 5})
            assert r["rounds"] == 3 and r["next_due_ms"] == t0 + 1000 + 4 * 60000, r
            st = c.ok("stock.get", {"sku": "tc-sync"})
            assert st["supplier_reported"] == 9 and st["supplier_synced_at"] == t0 + 181000, st
            # A step that would run more rounds than one call may: refused, nothing moved.
            err = err_of(c, {"now_ms": r["now_ms"] + 100 * 60000})
            assert err["code"] == "invalid" and err["field"] == "now_ms", err
            assert "rounds" in err["message"], err
            assert now_of(c) == r["now_ms"]
            assert s.alive()
        finally:
            c.close()
    finally:
        fake.stop()
