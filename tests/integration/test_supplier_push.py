"""1688 message push into stockd (stock changes and link changes
arrive between snapshot rounds).

Method: a private fake1688 (test_supplier_sync.Fake: own ports, stopped by
pid) whose push_url points at stockd's HTTP listener (--http,
POST /1688/push); stockd syncs only every 60 s, so anything that arrives
within a few seconds came through a push (or the poke a push caused), not a
round. Offer PUSH has two specs: one SKU mapped with the spec's sku_id
(pushed figures apply at once), one mapped by spec only (the push pokes the
offer: one product.get); offer LINK has two specs, one mapped; offer SOLO
has one spec mapped with its sku_id (a push for it pokes nothing, so what
it carries stays until the next round).

Checked: with lag 0 a stock change at the fake shows in stock.get within
3 s for both kinds of mapping; a push signed by us (HMAC-SHA1 over
"message" + message, the framing of docs/fake1688.md) applies; one with a
bad signature, none, or another secret gets 401 and changes nothing; a
malformed one 400; GET is 405; a spec removed at the fake (a
PRODUCT_RELATION_VIEW_PRODUCT_CHANGE push) breaks the mapping within 3 s,
with an alert row; stats count pushes, refusals and pokes; secrets never in
the log. Bounded: about 15 s.
"""
import hashlib
import hmac
import itertools
import json
import subprocess
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from itestlib import HOST, check_supplier_stock, free_port, stockd_bin, wait_until
from test_supplier_sync import Fake

OFFER_PUSH = 630000000001
OFFER_LINK = 630000000002
OFFER_SOLO = 630000000003   # only a sku_id mapping: a push for it pokes nothing
SKU_ID_S = 5400000000021
SPEC_S = "ps000000000000000000000000000021"
SKU_ID_A = 5400000000001
SKU_ID_B = 5400000000002
SPEC_A = "pa000000000000000000000000000001"
SPEC_B = "pb000000000000000000000000000002"
SPEC_L1 = "la000000000000000000000000000001"
SPEC_L2 = "lb000000000000000000000000000002"
SYNC_MS = 60000
QUICK = 3.0   # well before a sync period

@pytest.fixture(scope="module")
def env(make_stockd, db):
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER_PUSH, "subject": "cup", "skus": [
                {"sku_id": SKU_ID_A, "spec_id": SPEC_A, "price": 2, "real": 40},
                {"sku_id": SKU_ID_B, "spec_id": SPEC_B, "price": 2, "real": 15}]},
            {"offer_id": OFFER_LINK, "subject": "plate", "skus": [
                {"sku_id": 5400000000011, "spec_id": SPEC_L1, "price": 4, "real": 6},
                {"sku_id": 5400000000012, "spec_id": SPEC_L2, "price": 4, "real": 9}]},
            {"offer_id": OFFER_SOLO, "subject": "bowl", "skus": [
                {"sku_id": SKU_ID_S, "spec_id": SPEC_S, "price": 4, "real": 3}]}]})
        fake.ok("POST", "/config", {"lag_ms": 0})
        hp = free_port()
        s = make_stockd(db=db, name="push", args=[
            "--http", "%s:%d" % (HOST, hp),
            "--supplier-url", "http://127.0.0.1:%d" % fake.port,
            "--supplier-app-key", "1000000", "--supplier-app-secret", secret,
            "--supplier-token", token, "--supplier-sync-ms", str(SYNC_MS),
            "--supplier-concurrency", "2", "--log-level", "debug"])
        s.http_port = hp
        fake.ok("POST", "/config", {"push_url": "http://%s:%d/1688/push" % (HOST, hp)})
        yield fake, s, secret, token
    finally:
        fake.stop()


def stock(c, sku):
    st = c.ok("stock.get", {"sku": sku})
    check_supplier_stock(st)
    return st


def sstats(c):
    return c.ok("stats")["supplier"]


def post(port, body, ctype="application/x-www-form-urlencoded; charset=UTF-8", method="POST"):
    req = urllib.request.Request("http://%s:%d/1688/push" % (HOST, port), data=body,
                                 method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def signed(secret, message, sig=None):
    """The form body 1688 (and the fake) sends: message + params-only signature."""
    if sig is None:
        sig = hmac.new(secret.encode(), b"message" + message.encode(),
                       hashlib.sha1).hexdigest().upper()
    fields = {"message": message}
    if sig != "":
        fields["_aop_signature"] = sig
    return urllib.parse.urlencode(fields).encode()


_MSG_IDS = itertools.count(9000000000000 + secrets.randbelow(10 ** 9) * 1000)


def inventory_msg(offer, sku_id, on_sale, msg_id=None, born=None):
    """A push as 1688 sends it; msgIds are unique (1688's are; the fake's
    count from 1, so ours stay far from them)."""
    now = int(time.time() * 1000)
    msg_id = next(_MSG_IDS) if msg_id is None else msg_id
    born = now if born is None else born
    return json.dumps({"msgId": msg_id, "gmtBorn": born, "type": "PRODUCT_PRODUCT_INVENTORY_CHANGE",
                       "userInfo": "b2b-fakeseller", "data": {"OfferInventoryChangeList": [
                           {"offerId": offer, "offerOnSale": on_sale, "skuId": sku_id,
                            "skuOnSale": on_sale, "quantity": -1, "bizTime": now}]}})


def wait_reported(c, sku, want, timeout=QUICK):
    last = {}

    def ok():
        last["st"] = stock(c, sku)
        return last["st"]["supplier_reported"] == want

    try:
        wait_until(ok, timeout, what="%s supplier_reported %d" % (sku, want))
    except AssertionError:
        raise AssertionError("%s: want supplier_reported %d, have %r" % (sku, want, last))
    return last["st"]


def test_push(env, db):
    fake, s, secret, token = env
    c = s.client()
    try:
        sup = {"supplier_id": "1688", "offer_id": OFFER_PUSH}
        c.ok("sku.put", {"sku": "push-a", "own_on_hand": 1,
                         "supplier": dict(sup, spec_id=SPEC_A, sku_id=SKU_ID_A)})
        c.ok("sku.put", {"sku": "push-b", "own_on_hand": 1, "supplier": dict(sup, spec_id=SPEC_B)})
        c.ok("sku.put", {"sku": "push-l", "own_on_hand": 2, "supplier": {
            "supplier_id": "1688", "offer_id": OFFER_LINK, "spec_id": SPEC_L1}})
        c.ok("sku.put", {"sku": "push-s", "supplier": {
            "supplier_id": "1688", "offer_id": OFFER_SOLO, "spec_id": SPEC_S, "sku_id": SKU_ID_S}})
        # Starting figures: changes pushed now (whether or not the first
        # round, 1 s after start, saw these SKUs), then that round is over:
        # the next one is 60 s away.
        for spec, offer, real in ((SPEC_A, OFFER_PUSH, 50), (SPEC_B, OFFER_PUSH, 20),
                                  (SPEC_L1, OFFER_LINK, 8), (SPEC_S, OFFER_SOLO, 4)):
            fake.ok("POST", "/stock", {"offer_id": offer, "spec_id": spec, "real": real})
        wait_until(lambda: sstats(c)["last_sync_ms"] > 0, 5, what="the first round")
        wait_reported(c, "push-a", 50, timeout=5)
        wait_reported(c, "push-b", 20, timeout=5)
        wait_reported(c, "push-l", 8, timeout=5)
        wait_reported(c, "push-s", 4, timeout=5)
        base = sstats(c)
        assert base["enabled"] and base["syncs"] == 1, base

        # 1. Stock changes at the fake, lag 0: the push brings them.
        t0 = time.monotonic()
        fake.ok("POST", "/stock", {"offer_id": OFFER_PUSH, "spec_id": SPEC_A, "real": 31})
        fake.ok("POST", "/stock", {"offer_id": OFFER_PUSH, "spec_id": SPEC_B, "real": 12})
        st = wait_reported(c, "push-a", 31)
        assert st["available"] == 1 + 31 and st["mapping"] == "ok", st
        wait_reported(c, "push-b", 12)   # spec-only mapping: via a poke
        assert time.monotonic() - t0 < QUICK
        mid = sstats(c)
        assert mid["pushes"] >= base["pushes"] + 2, mid
        assert mid["pokes"] >= base["pokes"] + 1, mid
        assert mid["syncs"] == base["syncs"], "a round ran: the test proves nothing %r" % mid
        assert fake.ok("GET", "/counters")["push"]["failed"] == 0

        # 2. Our own signed push applies (an offer with only a sku_id mapping,
        # so no poke asks the fake afterwards); bad signatures change nothing.
        code, text = post(s.http_port, signed(secret, inventory_msg(OFFER_SOLO, SKU_ID_S, 77)))
        assert code == 200 and "1 applied, 0 offers poked" in text, (code, text)
        wait_reported(c, "push-s", 77)
        refused = sstats(c)["push_refused"]
        msg = inventory_msg(OFFER_SOLO, SKU_ID_S, 5)
        good = hmac.new(secret.encode(), b"message" + msg.encode(), hashlib.sha1).hexdigest().upper()
        bad_sig = ("0" if good[0] != "0" else "1") + good[1:]
        for body in (signed(secret, msg, sig=bad_sig), signed(secret, msg, sig=""),
                     signed("another-secret", msg), signed(secret, msg, sig=good.lower()[:39])):
            code, text = post(s.http_port, body)
            assert code == 401, (code, text)
        # A body changed after signing is refused too.
        tampered = signed(secret, msg).replace(b"%3A+5%2C", b"%3A+6%2C")
        assert tampered != signed(secret, msg)
        assert post(s.http_port, tampered)[0] == 401
        assert post(s.http_port, b"message=%ZZ")[0] == 400
        assert post(s.http_port, signed(secret, "[1,2]"))[0] == 400
        assert post(s.http_port, b"", method="GET")[0] == 405
        code, text = post(s.http_port, signed(secret, json.dumps({"type": "ORDER_X", "data": {}})))
        assert code == 200 and "ignored" in text, (code, text)
        time.sleep(0.3)
        assert stock(c, "push-s")["supplier_reported"] == 77
        assert sstats(c)["push_refused"] == refused + 7

        # 3. A link change at the fake: the push pokes the offer, the answer
        # (spec gone) breaks the mapping well before the next round.
        t0 = time.monotonic()
        fake.ok("POST", "/link", {"offer_id": OFFER_LINK, "action": "spec_removed",
                                  "spec_id": SPEC_L1})
        wait_until(lambda: stock(c, "push-l")["mapping"] == "broken", QUICK,
                   what="push-l broken after the link push")
        assert time.monotonic() - t0 < QUICK
        st = stock(c, "push-l")
        assert st["supplier_sellable"] == 0 and st["available"] == 2, st
        rows = db.query("SELECT kind, reason FROM alerts WHERE sku=%s", ("push-l",))
        assert [(r["kind"], r["reason"]) for r in rows] == [("mapping_broken", "spec removed")]
        end = sstats(c)
        assert end["broken"] == base["broken"] + 1 and end["syncs"] == base["syncs"], end
    finally:
        c.close()
    log = open(s.log_path, errors="replace").read()
    assert secret not in log and token not in log, "a secret reached the log"


def test_push_replays(env):
    """A replayed or stale push changes nothing: a msgId already applied is
    acknowledged 200 without effect (1688 retries by design), a message born
    more than the window (--supplier-push-window-ms, 5 min) from now is
    refused 400; both counted in stats."""
    fake, s, secret, token = env
    c = s.client()
    try:
        # push-s: mapped with a sku_id, so a push for it pokes nothing.
        c.ok("sku.put", {"sku": "push-s", "supplier": {
            "supplier_id": "1688", "offer_id": OFFER_SOLO, "spec_id": SPEC_S, "sku_id": SKU_ID_S}})
        mid = next(_MSG_IDS)
        first = signed(secret, inventory_msg(OFFER_SOLO, SKU_ID_S, 41, msg_id=mid))
        code, text = post(s.http_port, first)
        assert code == 200 and "1 applied" in text, (code, text)
        wait_reported(c, "push-s", 41)
        base = sstats(c)
        # The same delivery again, and another figure under the same msgId.
        for body in (first, signed(secret, inventory_msg(OFFER_SOLO, SKU_ID_S, 42, msg_id=mid)),
                     signed(secret, inventory_msg(OFFER_SOLO, SKU_ID_S, 43, msg_id=str(mid)))):
            code, text = post(s.http_port, body)
            assert code == 200 and "duplicate" in text, (code, text)
        # Born 5 min + 1 s ago, or as far ahead: refused, whatever it carries.
        now = int(time.time() * 1000)
        for born in (now - 301000, now + 301000, 0):
            code, text = post(s.http_port, signed(secret, inventory_msg(
                OFFER_SOLO, SKU_ID_S, 44, born=born)))
            assert code == 400 and "stale" in text, (code, text)
        # No msgId: nothing to tell a replay by.
        doc = json.loads(inventory_msg(OFFER_SOLO, SKU_ID_S, 45))
        del doc["msgId"]
        code, text = post(s.http_port, signed(secret, json.dumps(doc)))
        assert code == 400 and "msgId" in text, (code, text)
        time.sleep(0.3)
        assert stock(c, "push-s")["supplier_reported"] == 41
        end = sstats(c)
        assert end["push_duplicate"] == base["push_duplicate"] + 3, end
        assert end["push_stale"] == base["push_stale"] + 3, end
        assert end["push_refused"] == base["push_refused"] + 4, end
        assert end["push_seen_evicted"] == 0, end
        # Inside the window a fresh message still applies.
        code, text = post(s.http_port, signed(secret, inventory_msg(
            OFFER_SOLO, SKU_ID_S, 46, born=now - 250000)))
        assert code == 200 and "1 applied" in text, (code, text)
        wait_reported(c, "push-s", 46)
    finally:
        c.close()


def test_push_window_flag():
    out = subprocess.run([stockd_bin(), "--help"], capture_output=True, text=True, timeout=10).stdout
    assert "--supplier-push-window-ms" in out and "default 300000" in out
