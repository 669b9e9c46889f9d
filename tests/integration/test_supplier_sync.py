"""Supplier snapshot sync: stockd calls
alibaba.product.get for every mapped offer every --supplier-sync-ms and puts
amountOnSale into the SKU (through its FIFO, as a "sync" ledger row).

Method: a private fake1688 (FAKE1688_BIN, else <dir of STOCKD_BIN>/tools/
fake1688/fake1688; its own ports, so faults cannot disturb other tests) with
one offer of two specs reporting 100 and 7; stockd started with --supplier-*
pointing at it and --supplier-sync-ms 300; two SKUs mapped to the specs plus
own stock. Checked: the figures arrive, a change at the fake arrives at the
next sync, a reserve takes supplier units, gateway 5xx for a while changes
nothing and is counted, the figures come back after; a spec removed at the
supplier breaks its mapping (sellable 0, one alert row, the other spec keeps
syncing) until sku.put maps it afresh; the offer offline breaks every
mapping of it; secrets never in logs.
"""
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import itestlib
from itestlib import audit_supplier, check_supplier_stock, wait_until

OFFER = 610000000001
SPEC_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
SPEC_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
SYNC_MS = 300


def fake_bin():
    b = os.environ.get("FAKE1688_BIN")
    if b:
        return b
    return os.path.join(os.path.dirname(itestlib.stockd_bin()), "tools", "fake1688", "fake1688")


class Fake:
    """A private fake1688 on free ports, stopped by pid."""

    def __init__(self, secret, token):
        b = fake_bin()
        if not os.access(b, os.X_OK):
            itestlib.skip_or_fail("fake1688 not built: %s (set FAKE1688_BIN)" % b)
        self.dir = tempfile.mkdtemp(prefix="fake1688-sync-")
        pf = os.path.join(self.dir, "ports")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([b, "--port", "0", "--control-port", "0", "--port-file", pf,
                                      "--app-secret", secret, "--access-token", token, "--quiet"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: os.path.exists(pf) and os.path.getsize(pf) > 0, 5,
                   what="fake1688 port file")
        self.port, self.cport = map(int, open(pf).read().split())

    def ok(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.cport, timeout=10)
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        d = json.loads(r.read())
        c.close()
        assert r.status == 200 and d["ok"], d
        return d

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(make_stockd, db):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [{
            "offer_id": OFFER, "subject": "mug", "skus": [
                {"sku_id": 5200000000001, "spec_id": SPEC_A, "price": 3, "real": 100},
                {"sku_id": 5200000000002, "spec_id": SPEC_B, "price": 3, "real": 7}]}]})
        s = make_stockd(db=db, name="sync", args=[
            "--supplier-url", "http://127.0.0.1:%d" % fake.port,
            "--supplier-app-key", "1000000", "--supplier-app-secret", secret,
            "--supplier-token", token, "--supplier-sync-ms", str(SYNC_MS),
            "--supplier-concurrency", "2", "--log-level", "debug"])
        yield fake, s, (secret, token)
    finally:
        fake.stop()


def stock(c, sku):
    st = c.ok("stock.get", {"sku": sku})
    check_supplier_stock(st)
    return st


def supplier_stats(c):
    return c.ok("stats")["supplier"]


def wait_figures(c, want, timeout=3.0):
    """Waits until every SKU in want shows its supplier_reported."""
    last = {}

    def done():
        for sku, rep in want.items():
            last[sku] = stock(c, sku)
            if last[sku]["supplier_reported"] != rep:
                return False
        return True

    try:
        wait_until(done, timeout, what="supplier figures %r" % want)
    except AssertionError:
        raise AssertionError("figures not synced: want %r, have %r" % (want, last))
    return last


def test_sync_figures_reserve_and_outage(env, db):
    fake, s, (secret, token) = env
    c = s.client()
    try:
        for sku, spec, own in (("sync-a", SPEC_A, 5), ("sync-b", SPEC_B, 2)):
            c.ok("sku.put", {"sku": sku, "own_on_hand": own, "supplier": {
                "supplier_id": "1688", "offer_id": OFFER, "spec_id": spec}})
        c.ok("sku.put", {"sku": "sync-own", "own_on_hand": 3})  # unmapped: left alone

        # 1. Within ~2 s the figures arrive; available = own + reported.
        t0 = time.monotonic()
        got = wait_figures(c, {"sync-a": 100, "sync-b": 7}, timeout=2.5)
        assert time.monotonic() - t0 < 2.5
        assert got["sync-a"]["available"] == 5 + 100, got
        assert got["sync-b"]["available"] == 2 + 7, got
        assert got["sync-a"]["mapping"] == "ok" and got["sync-a"]["supplier_synced_at"] > 0, got
        assert stock(c, "sync-own")["supplier_reported"] == 0
        rows = db.query("SELECT d_supplier_reported FROM ledger WHERE sku=%s AND move='sync'",
                        ("sync-a",))
        assert [r["d_supplier_reported"] for r in rows] == [100], rows

        # 2. A change at the supplier shows at the next sync.
        fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_A, "reported": 40})
        wait_figures(c, {"sync-a": 40, "sync-b": 7}, timeout=2.0)

        # 3. A reserve takes own units, then supplier units (held: a
        # confirmed one would be bought upstream and lower the figure).
        o = c.ok("reserve", {"order_id": "sync-o1", "sku": "sync-b", "qty": 6,
                             "hold_ms": 600000})
        assert (o["from_own"], o["from_supplier"]) == (2, 4), o
        st = stock(c, "sync-b")
        assert st["supplier_reserved"] == 4 and st["available"] == 3, st
        # The next syncs keep the reservation (reported is the supplier's figure).
        time.sleep(2 * SYNC_MS / 1000.0)
        st = stock(c, "sync-b")
        assert st["supplier_reported"] == 7 and st["available"] == 3, st

        # 4. Gateway 5xx for a while: no crash, figures unchanged, failures counted.
        before = supplier_stats(c)
        assert before["enabled"] and before["ok"] >= 2 and before["calls"] >= 2, before
        fake.ok("POST", "/faults", {"clear": True, "rates": {"5xx": 1.0}})
        fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_A, "reported": 55})
        wait_until(lambda: supplier_stats(c)["failed"] >= before["failed"] + 2, 8,
                   what="sync failures counted")
        assert s.alive()
        assert stock(c, "sync-a")["supplier_reported"] == 40
        assert stock(c, "sync-b")["available"] == 3
        fake.ok("POST", "/faults", {"clear": True})
        wait_figures(c, {"sync-a": 55, "sync-b": 7}, timeout=5.0)
        after = supplier_stats(c)
        assert after["ok"] > before["ok"] and after["last_sync_ms"] > 0, after

        # 5. A spec gone from the answer breaks the mapping: its supplier
        # stock is not sold any more, support gets an alert; the other spec
        # of the offer keeps syncing.
        broken_before = supplier_stats(c)["broken"]
        fake.ok("POST", "/link", {"offer_id": OFFER, "action": "spec_removed",
                                  "spec_id": SPEC_A})
        wait_until(lambda: stock(c, "sync-a")["mapping"] == "broken", 2.0,
                   what="mapping of sync-a broken")
        st = stock(c, "sync-a")
        assert st["supplier_sellable"] == 0 and st["available"] == 5, st
        assert stock(c, "sync-b")["mapping"] == "ok"
        assert supplier_stats(c)["broken"] == broken_before + 1
        rows = db.query("SELECT kind, reason FROM alerts WHERE sku=%s", ("sync-a",))
        assert [(r["kind"], r["reason"]) for r in rows] == \
            [("mapping_broken", "spec removed")], rows
        # Later rounds leave the broken mapping alone (one alert, no calls for it).
        time.sleep(3 * SYNC_MS / 1000.0)
        assert stock(c, "sync-a")["mapping"] == "broken"
        assert len(db.query("SELECT id FROM alerts WHERE sku=%s", ("sync-a",))) == 1
        fake.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC_B, "reported": 9})
        wait_figures(c, {"sync-b": 9}, timeout=2.0)

        # 6. sku.put maps it afresh (to the remaining spec): selling again.
        c.ok("sku.put", {"sku": "sync-a", "supplier": {
            "supplier_id": "1688", "offer_id": OFFER, "spec_id": SPEC_B}})
        got = wait_figures(c, {"sync-a": 9}, timeout=2.0)
        assert got["sync-a"]["mapping"] == "ok", got

        # 7. The offer taken offline breaks every mapping of it.
        fake.ok("POST", "/link", {"offer_id": OFFER, "action": "offline"})
        wait_until(lambda: all(stock(c, k)["mapping"] == "broken" for k in ("sync-a", "sync-b")),
                   2.0, what="offline breaks both mappings")
        rows = db.query("SELECT reason FROM alerts WHERE sku=%s ORDER BY id", ("sync-b",))
        assert [r["reason"] for r in rows] == ["offline: member expired"], rows
        # The held order keeps its 4 supplier units above a sellable of 0:
        # the supplier audit allows that (the plain one would call it oversold).
        audit_supplier(db, ["sync-a", "sync-b", "sync-own"])
    finally:
        c.close()
    log = open(s.log_path, errors="replace").read()
    assert secret not in log and token not in log, "a secret reached the log"
    assert "supplier sync" in log


OFFER_POKE = 610000000002
SPEC_C = "cccccccccccccccccccccccccccccccc"


def test_sku_put_mapping_syncs_at_once(env, make_stockd, db):
    """sku.put with a new 1688 mapping asks for that offer at once: its
    figure arrives within a couple of seconds although the next round is a
    day away (a round would otherwise leave the SKU without supplier stock
    for up to --supplier-sync-ms)."""
    fake, _, (secret, token) = env
    fake.ok("POST", "/products", {"offer_id": OFFER_POKE, "subject": "cup", "skus": [
        {"sku_id": 5200000000003, "spec_id": SPEC_C, "price": 4, "real": 42}]})
    day = str(24 * 3600 * 1000)
    s = make_stockd(db=db, name="sync-poke", args=[
        "--supplier-url", "http://127.0.0.1:%d" % fake.port,
        "--supplier-app-key", "1000000", "--supplier-app-secret", secret,
        "--supplier-token", token, "--supplier-sync-ms", day, "--supplier-validate-ms", day])
    with s.client() as c:
        # The first round comes about a second after start; wait it out so
        # that only a poke can bring the figure.
        wait_until(lambda: supplier_stats(c)["syncs"] >= 1 and
                   supplier_stats(c)["in_flight"] == 0, 5, what="the first round")
        before = supplier_stats(c)
        c.ok("sku.put", {"sku": "poke-own", "own_on_hand": 1})   # no mapping: no call
        t0 = time.monotonic()
        c.ok("sku.put", {"sku": "poke-c", "own_on_hand": 2, "supplier": {
            "supplier_id": "1688", "offer_id": OFFER_POKE, "spec_id": SPEC_C}})
        got = wait_figures(c, {"poke-c": 42}, timeout=3.0)
        took = time.monotonic() - t0
        assert got["poke-c"]["available"] == 2 + 42 and got["poke-c"]["mapping"] == "ok", got
        after = supplier_stats(c)
        assert after["syncs"] == before["syncs"], (before, after)   # not a round
        assert after["pokes"] == before["pokes"] + 1, (before, after)
        # Own stock alone, or the same working link again: no further call.
        c.ok("sku.put", {"sku": "poke-c", "own_on_hand": 3})
        c.ok("sku.put", {"sku": "poke-c", "supplier": {
            "supplier_id": "1688", "offer_id": OFFER_POKE, "spec_id": SPEC_C}})
        time.sleep(0.3)
        assert supplier_stats(c)["calls"] == after["calls"], supplier_stats(c)
    print("sku.put with a mapping: figure in %.2fs" % took)
