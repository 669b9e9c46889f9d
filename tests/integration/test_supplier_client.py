"""Integration tests of stockd's 1688 supplier client (src/supplier.c) against
the stack's fake1688 (tools/stack: STOCKD_FAKE1688, STOCKD_FAKE1688_CONTROL).

The client runs inside tests/tools/supplier_probe (SUPPLIER_PROBE_BIN, else
<dir of STOCKD_BIN>/tests/supplier_probe), which prints one JSON line per
finished call and a stats line. Each test resets the fake, gives it a fresh
random app secret and access token (handed to the probe through the
environment only) and clears faults; the module ends with a reset, which
puts the fake's start options back. Every probe run is checked for the
secret and the token in its stdout and stderr (debug logging on).
"""
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request

import pytest

import itestlib

OFFER = 600000000001
SPEC = "0123456789abcdef0123456789abcdef"
SPEC2 = "fedcba9876543210fedcba9876543210"
BIG_OFFER = 600000000009
CREATE = "alibaba.trade.fastCreateOrder"
PRODUCT = "alibaba.product.get"
PREVIEW = "alibaba.createOrder.preview"


def probe_bin():
    b = os.environ.get("SUPPLIER_PROBE_BIN")
    if b:
        return b
    return os.path.join(os.path.dirname(itestlib.stockd_bin()), "tests", "supplier_probe")


class Fake:
    def __init__(self):
        self.url = os.environ.get("STOCKD_FAKE1688")
        self.control = os.environ.get("STOCKD_FAKE1688_CONTROL")
        self.app_key = os.environ.get("STOCKD_FAKE1688_APP_KEY", "1000000")
        if not self.url or not self.control:
            itestlib.skip_or_fail("STOCKD_FAKE1688/_CONTROL not set: `tools/stack up` with "
                                  "fake1688 built, then eval \"$(tools/stack env)\"")
        if not os.access(probe_bin(), os.X_OK):
            itestlib.skip_or_fail("supplier_probe not built: %s" % probe_bin())
        self.secret = self.token = None
        self.outputs = []

    def ctl(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            d = json.loads(r.read())
        assert d["ok"], d
        return d

    def counters(self):
        return self.ctl("GET", "/counters")

    def faults(self, **kw):
        body = {"clear": True}
        body.update(kw)
        self.ctl("POST", "/faults", body)

    def fresh(self):
        self.ctl("POST", "/reset", {})
        self.secret = "sec-" + secrets.token_hex(12)
        self.token = "tok-" + secrets.token_hex(12)
        self.ctl("POST", "/config", {"app_secret": self.secret, "access_token": self.token,
                                     "cancel_min_age_ms": 0})
        self.ctl("POST", "/catalogue", {"products": [product(), big_product()]})

    def probe(self, *args, secret=None, token=None, timeout=25):
        """Runs the probe; returns (replies, stats, elapsed_s)."""
        env = dict(os.environ)
        env.update({"STOCKD_FAKE1688": self.url, "STOCKD_FAKE1688_APP_KEY": self.app_key,
                    "PROBE_SECRET": secret or self.secret, "PROBE_TOKEN": token or self.token})
        cmd = [probe_bin(), "--secret-env", "PROBE_SECRET", "--token-env", "PROBE_TOKEN",
               "--log-level", "debug", "--backoff-ms", "50", "--backoff-max-ms", "400",
               "--seed", "7"] + [str(a) for a in args]
        p = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, text=True)
        out = p.stdout + p.stderr
        self.outputs.append(out)
        for s in (self.secret, self.token):
            assert s not in out, "secret leaked into the probe's output"
        assert p.returncode == 0, out[-3000:]
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        stats = lines[-1]
        assert "stats" in stats, out[-3000:]
        return lines[:-1], stats["stats"], stats["elapsed_s"]

    def one(self, *args, **kw):
        replies, stats, elapsed = self.probe(*args, **kw)
        assert len(replies) == 1, replies
        return replies[0]


def product(offer=OFFER, real=20, real2=5, **kw):
    p = {"offer_id": offer, "subject": "cup", "min_order_quantity": 1, "post_fee_fen": 500,
         "skus": [
             {"sku_id": 5000000000001, "spec_id": SPEC, "price": 8.5, "real": real,
              "attributes": [{"attributeID": 3216, "attributeValue": "red",
                              "attributeDisplayName": "color"}]},
             {"sku_id": 5000000000002, "spec_id": SPEC2, "price_fen": 900, "real": real2}]}
    p.update(kw)
    return p


def big_product():
    """64 SKUs with 2 KiB of attributes each: an answer of about 140 KiB."""
    skus = []
    for i in range(64):
        skus.append({"sku_id": 5100000000000 + i, "spec_id": "%032x" % (i + 1), "price": 1,
                     "real": 3, "attributes": [{"attributeID": 1, "attributeValue": "v" * 2000,
                                                "attributeDisplayName": "long"}]})
    return {"offer_id": BIG_OFFER, "subject": "big", "skus": skus}


@pytest.fixture(scope="module")
def fake():
    f = Fake()
    yield f
    f.ctl("POST", "/reset", {})
    f.faults()


@pytest.fixture
def fk(fake):
    fake.fresh()
    fake.faults()
    return fake


def no_signature_errors(fk):
    codes = fk.counters()["codes"]
    assert not any(c.startswith("gw.Signature") for c in codes), codes


# ---- happy paths -------------------------------------------------------------------

def test_happy_paths(fk):
    r = fk.one("product", OFFER)
    assert (r["outcome"], r["attempts"]) == ("ok", 1), r
    p = r["product"]
    assert p["offer_id"] == OFFER and p["status"] == "published" and p["published"]
    assert p["amount_on_sale"] == 25 and p["min_order_quantity"] == 1
    skus = {s["spec_id"]: s for s in p["skus"]}
    assert skus[SPEC]["amount_on_sale"] == 20 and skus[SPEC]["price_fen"] == 850
    assert skus[SPEC]["sku_id"] == 5000000000001 and skus[SPEC]["attrs"] == "color:red"
    assert skus[SPEC2]["price_fen"] == 900

    r = fk.one("preview", OFFER, SPEC, 2, OFFER, SPEC2, 1)
    assert r["outcome"] == "ok", r
    pv = r["preview"]
    assert pv["sum_payment_no_carriage_fen"] == 2 * 850 + 900
    assert pv["sum_carriage_fen"] == 500 and pv["sum_payment_fen"] == 3100
    assert {l["spec_id"] for l in pv["lines"]} == {SPEC, SPEC2}

    r = fk.one("--out", "RES-1", "create", OFFER, SPEC, 3)
    assert r["outcome"] == "ok", r
    oid = r["created"]["order_ids"][0]
    assert int(oid) > 2 ** 53 and r["created"]["total_success_amount_fen"] == 3 * 850 + 500

    r = fk.one("view", oid)
    assert r["outcome"] == "ok", r
    v = r["view"]
    assert (v["order_id"], v["status"], v["out_order_id"]) == (oid, "waitbuyerpay", "RES-1")
    assert v["items"] == [{"offer_id": OFFER, "sku_id": 5000000000001, "spec_id": SPEC,
                           "quantity": 3}]
    r = fk.one("--out", "RES-1", "view")
    assert r["view"]["order_id"] == oid

    r = fk.one("cancel", oid)
    assert r["outcome"] == "ok", r
    r = fk.one("view", oid)
    assert r["view"]["status"] == "cancel" and r["view"]["close_reason"] == "buyerCancel"

    c = fk.counters()
    assert c["calls"][PRODUCT] == 1 and c["calls"][PREVIEW] == 1 and c["calls"][CREATE] == 1
    assert c["calls"]["alibaba.trade.get.buyerView"] == 3
    assert c["calls"]["alibaba.trade.cancel"] == 1
    assert sum(c["gateway_errors"].values()) == 0
    no_signature_errors(fk)


def test_business_errors_are_definitive(fk):
    r = fk.one("preview", OFFER, SPEC, 21)
    assert (r["outcome"], r["code"], r["attempts"]) == ("definitive", "500_004", 1), r
    assert r["message"].startswith("商品[%d_%s]" % (OFFER, SPEC))
    r = fk.one("create", OFFER, "f" * 32, 1)
    assert (r["outcome"], r["code"]) == ("definitive", "500_003"), r
    r = fk.one("product", 42)
    assert (r["outcome"], r["code"]) == ("definitive", "biz.Error") and "42" in r["message"]
    r = fk.one("view", "3000000000000000999")
    assert (r["outcome"], r["code"]) == ("definitive", "ORDER_NOT_EXIST"), r
    fk.ctl("POST", "/link", {"offer_id": OFFER, "action": "offline"})
    r = fk.one("product", OFFER)
    assert r["outcome"] == "ok" and not r["product"]["published"]
    r = fk.one("preview", OFFER, SPEC, 1)
    assert (r["outcome"], r["code"]) == ("definitive", "500_001"), r
    assert fk.counters()["calls"][PREVIEW] == 2   # nothing repeated
    no_signature_errors(fk)


def test_wrong_credentials_definitive(fk):
    r = fk.one("product", OFFER, secret="not-the-secret")
    assert (r["outcome"], r["code"], r["http_status"], r["attempts"]) == \
        ("definitive", "gw.SignatureInvalid", 400, 1), r
    r = fk.one("product", OFFER, token="not-the-token")
    assert (r["outcome"], r["code"], r["http_status"]) == ("definitive", "401", 401), r


# ---- retries and backoff ---------------------------------------------------------------

def test_qos_backoff_then_success(fk):
    fk.faults(next=[{"kind": "qos", "count": 3}])
    replies, stats, elapsed = fk.probe("product", OFFER)
    r = replies[0]
    assert (r["outcome"], r["attempts"]) == ("ok", 4), r
    assert stats["by_kind"]["qos"] == 3
    # Waits of at least 25 + 50 + 100 ms (half of 50 << k, jitter on top).
    assert elapsed >= 0.17, elapsed
    assert fk.counters()["calls"][PRODUCT] == 4


def test_qos_limit_of_the_gateway(fk):
    """A gateway allowing 20 calls/s, a client configured far above it: QoS
    answers slow the whole app key down and every call ends ok."""
    fk.ctl("POST", "/config", {"qos_limit_per_s": 20})
    replies, stats, elapsed = fk.probe("--rate", 1000, "--burst", 100, "--concurrency", 8,
                                       "--attempts", 20, "--repeat", 40, "product", OFFER)
    assert [r["outcome"] for r in replies] == ["ok"] * 40, replies
    assert stats["by_kind"]["qos"] > 0
    c = fk.counters()
    assert c["calls"][PRODUCT] == stats["attempts"]
    assert c["codes"]["gw.QosAppFrequencyLimit"] == stats["by_kind"]["qos"]


def test_5xx_retried_for_reads_not_for_creates(fk):
    fk.faults(next=[{"kind": "5xx", "count": 2}])
    r = fk.one("product", OFFER)
    assert (r["outcome"], r["attempts"]) == ("ok", 3), r
    fk.faults(next=[{"kind": "5xx", "count": 1}], apis=[CREATE])
    r = fk.one("create", OFFER, SPEC, 1)
    assert (r["outcome"], r["kind"], r["code"], r["http_status"], r["attempts"]) == \
        ("retryable", "http5xx", "gw.ServiceUnavailable", 503, 1), r
    assert fk.counters()["calls"][CREATE] == 1


def test_attempts_exhausted(fk):
    fk.faults(rates={"5xx": 1.0})
    r = fk.one("--attempts", 3, "preview", OFFER, SPEC, 1)
    assert (r["outcome"], r["kind"], r["attempts"]) == ("retryable", "http5xx", 3), r
    assert fk.counters()["calls"][PREVIEW] == 3


def test_timeouts(fk):
    fk.faults(next=[{"kind": "timeout"}], timeout_hold_ms=1000)
    r = fk.one("--timeout-ms", 300, "product", OFFER)
    assert (r["outcome"], r["attempts"]) == ("ok", 2), r
    # A create the caller vouches for (outOrderId, idempotent) is repeated:
    # the gateway returns the first order, so one order exists.
    fk.faults(next=[{"kind": "timeout"}], timeout_hold_ms=1000)
    r = fk.one("--timeout-ms", 300, "--out", "R-T", "--idempotent", "create", OFFER, SPEC, 2)
    assert (r["outcome"], r["attempts"]) == ("ok", 2), r
    assert fk.counters()["out_orders"]["R-T"] == {"create_calls": 2, "orders": 1}
    # Otherwise the outcome is unknown: reported, not repeated; the caller
    # looks the order up by outOrderId (here: it was made).
    fk.faults(next=[{"kind": "timeout"}], timeout_hold_ms=1000)
    r = fk.one("--timeout-ms", 300, "--out", "R-U", "create", OFFER, SPEC, 1)
    assert (r["outcome"], r["kind"], r["code"], r["attempts"]) == \
        ("retryable", "timeout", "client.Timeout", 1), r
    assert fk.counters()["out_orders"]["R-U"] == {"create_calls": 1, "orders": 1}
    r = fk.one("--out", "R-U", "view")
    assert r["outcome"] == "ok" and r["view"]["out_order_id"] == "R-U"


def test_garbage(fk):
    fk.faults(next=[{"kind": "garbage"}])
    r = fk.one("preview", OFFER, SPEC, 1)
    assert (r["outcome"], r["attempts"]) == ("ok", 2), r
    fk.faults(next=[{"kind": "garbage"}])
    r = fk.one("--out", "R-G", "create", OFFER, SPEC, 1)
    assert (r["outcome"], r["kind"], r["code"], r["attempts"]) == \
        ("retryable", "garbage", "client.Garbage", 1), r
    # The lookup by outOrderId (a read: repeated after a reset connection)
    # finds the order the garbled answer hid.
    fk.faults(next=[{"kind": "reset"}])
    r = fk.one("--out", "R-G", "view")
    assert (r["outcome"], r["attempts"]) == ("ok", 2), r
    assert r["view"]["status"] == "waitbuyerpay"


def test_refused_connection_is_retried_even_for_creates(fk):
    """No connection means the call was never sent: safe to repeat."""
    fk.faults(refuse=True)
    r = fk.one("--attempts", 3, "create", OFFER, SPEC, 1)
    assert (r["outcome"], r["kind"], r["attempts"]) == ("retryable", "connect", 3), r
    fk.faults()
    assert fk.counters()["calls"][CREATE] == 0


def test_cancel_not_repeated(fk):
    r = fk.one("create", OFFER, SPEC, 1)
    oid = r["created"]["order_ids"][0]
    fk.faults(next=[{"kind": "5xx"}], apis=["alibaba.trade.cancel"])
    r = fk.one("cancel", oid)
    assert (r["outcome"], r["kind"], r["attempts"]) == ("retryable", "http5xx", 1), r


# ---- limits ------------------------------------------------------------------------------

def test_response_size_cap(fk):
    r = fk.one("--max-response", 65536, "product", BIG_OFFER)
    assert (r["outcome"], r["code"], r["attempts"]) == \
        ("definitive", "client.ResponseTooLarge", 1), r
    r = fk.one("product", BIG_OFFER)      # default cap 1 MiB
    assert r["outcome"] == "ok" and len(r["product"]["skus"]) == 64
    assert fk.counters()["calls"][PRODUCT] == 2


def test_concurrency_limit(fk):
    """12 calls held 150 ms each by the fake, at most 3 on the wire: the
    fake never holds more than 3 answers at once, and it takes >= 4 rounds."""
    for _ in range(300):                  # answers still held by earlier tests
        if fk.counters()["pending_replies"] == 0:
            break
        time.sleep(0.01)
    fk.ctl("POST", "/config", {"latency_ms": 150})
    seen = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            seen.append(fk.counters()["pending_replies"])
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        replies, stats, elapsed = fk.probe("--concurrency", 3, "--rate", 1000, "--burst", 1000,
                                           "--repeat", 12, "product", OFFER)
    finally:
        stop.set()
        t.join()
    assert [r["outcome"] for r in replies] == ["ok"] * 12
    assert max(seen) == 3, seen
    assert stats["max_in_flight_seen"] == 3
    assert elapsed >= 4 * 0.15 - 0.02, elapsed
    assert fk.counters()["calls"][PRODUCT] == 12


def test_token_bucket(fk):
    replies, stats, elapsed = fk.probe("--rate", 10, "--burst", 1, "--concurrency", 8,
                                       "--repeat", 6, "product", OFFER)
    assert [r["outcome"] for r in replies] == ["ok"] * 6
    assert elapsed >= 0.45, elapsed      # 1 at once, then one per 100 ms
    assert fk.counters()["calls"][PRODUCT] == 6


def test_secrets_absent_everywhere(fake):
    """Every probe run of this module was checked as it ran; this re-checks
    the pile and that there was one (debug logging, retries included)."""
    assert len(fake.outputs) >= 20
    blob = "\n".join(fake.outputs)
    assert "supplier call retried" in blob
    assert fake.secret not in blob and fake.token not in blob
