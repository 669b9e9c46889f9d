"""Integration tests of tools/fake1688, the loopback 1688 Open Platform fake.

Each test module run starts its own fake (fresh state, free ports) from
FAKE1688_BIN, else <dir of STOCKD_BIN>/tools/fake1688/fake1688, else
build-test/; it is stopped by pid at the end. The stack's fake (tools/stack)
is only health-checked here.
"""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

import itestlib

OFFER = 600000000001
SPEC = "0123456789abcdef0123456789abcdef"
SPEC2 = "fedcba9876543210fedcba9876543210"
ADDR = json.dumps({"addressId": 1234})


def fake_bin():
    b = os.environ.get("FAKE1688_BIN")
    if b:
        return b
    return os.path.join(os.path.dirname(itestlib.stockd_bin()), "tools", "fake1688", "fake1688")


def sign(secret, url_path, params):
    s = url_path + "".join(sorted(k + v for k, v in params.items() if k != "_aop_signature"))
    return hmac.new(secret.encode(), s.encode(), hashlib.sha1).hexdigest().upper()


class Fake:
    def __init__(self, args=()):
        b = fake_bin()
        if not os.path.exists(b):
            itestlib.skip_or_fail("fake1688 not built: %s (set FAKE1688_BIN)" % b)
        self.dir = tempfile.mkdtemp(prefix="fake1688-")
        pf = os.path.join(self.dir, "ports")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([b, "--port", "0", "--control-port", "0", "--port-file", pf,
                                      "--quiet"] + list(args),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            if os.path.exists(pf) and os.path.getsize(pf):
                break
            assert self.proc.poll() is None, "fake1688 exited at start"
            time.sleep(0.05)
        self.port, self.cport = map(int, open(pf).read().split())
        self.secret, self.token, self.app_key = "test123", "TESTTOKEN", "1000000"

    def stop(self):
        """Stops the fake by pid; a crash, a non-zero exit or a sanitizer
        report in its log fails the test that stops it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        log = open(os.path.join(self.dir, "log"), errors="replace").read()
        assert self.proc.returncode == 0 and "Sanitizer" not in log, log[-3000:]
        shutil.rmtree(self.dir, ignore_errors=True)

    # control API
    def ctl(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.cport, timeout=10)
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        return r.status, data

    def ok(self, method, path, body=None):
        st, d = self.ctl(method, path, body)
        assert st == 200 and d["ok"], d
        return d

    # the 1688 API
    def raw(self, path, body, timeout=5, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("POST", path, body=body, headers=headers or {
                "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def call(self, ns, api, params, secret=None, token=None, app_key=None, signed=True,
             timeout=5):
        url_path = "param2/1/%s/%s/%s" % (ns, api, app_key or self.app_key)
        p = dict(params)
        if token is not False:
            p["access_token"] = token or self.token
        p["_aop_timestamp"] = str(int(time.time() * 1000))
        if signed:
            p["_aop_signature"] = sign(secret or self.secret, url_path, p)
        st, body = self.raw("/openapi/" + url_path, urllib.parse.urlencode(p), timeout=timeout)
        return st, json.loads(body)

    def product_get(self, offer=OFFER, **kw):
        return self.call("com.alibaba.product", "alibaba.product.get",
                         {"productID": str(offer), "webSite": "1688"}, **kw)

    def preview(self, cargo, **extra):
        p = {"addressParam": ADDR, "cargoParamList": json.dumps(cargo)}
        p.update(extra)
        return self.call("com.alibaba.trade", "alibaba.createOrder.preview", p)

    def create(self, cargo, out_order_id=None, timeout=5, **extra):
        p = {"addressParam": ADDR, "cargoParamList": json.dumps(cargo), "flow": "general"}
        if out_order_id:
            p["outOrderId"] = out_order_id
        p.update(extra)
        return self.call("com.alibaba.trade", "alibaba.trade.fastCreateOrder", p,
                         timeout=timeout)

    def view(self, **by):
        p = {"webSite": "1688"}
        p.update(by)
        return self.call("com.alibaba.trade", "alibaba.trade.get.buyerView", p)

    def cancel(self, order_id, reason="buyerCancel"):
        return self.call("com.alibaba.trade", "alibaba.trade.cancel",
                         {"webSite": "1688", "tradeID": str(order_id), "cancelReason": reason})

    def sku_state(self, offer=OFFER, spec=SPEC):
        d = self.ok("GET", "/products/%d" % offer)
        return next(s for s in d["product"]["skus"] if s["spec_id"] == spec)


def product(offer=OFFER, real=20, real2=5, **kw):
    p = {"offer_id": offer, "subject": "cup", "min_order_quantity": 1, "post_fee_fen": 500,
         "skus": [
             {"sku_id": 5000000000001, "spec_id": SPEC, "price": 8.5, "real": real,
              "cargo_number": "A-RED",
              "attributes": [{"attributeID": 3216, "attributeValue": "red",
                              "attributeDisplayName": "color"}]},
             {"sku_id": 5000000000002, "spec_id": SPEC2, "price_fen": 900, "real": real2}]}
    p.update(kw)
    return p


def cargo(qty, spec=SPEC, offer=OFFER):
    return [{"offerId": offer, "specId": spec, "quantity": qty}]


@pytest.fixture(scope="module")
def fake():
    f = Fake()
    yield f
    f.stop()


@pytest.fixture
def fk(fake):
    """The module's fake, reset, with one product and instant cancels."""
    fake.ok("POST", "/reset", {})
    fake.ok("POST", "/catalogue", {"products": [product()]})
    fake.ok("POST", "/config", {"cancel_min_age_ms": 0})
    return fake


# ---- gateway -------------------------------------------------------------------

def test_bad_signature_refused(fk):
    st, d = fk.product_get(secret="wrong")
    assert st == 400
    assert d["error_code"] == "gw.SignatureInvalid"
    assert set(d) >= {"error_code", "error_message", "exception", "request_id"}
    st, d = fk.product_get(signed=False)
    assert (st, d["error_code"]) == (400, "gw.SignatureMissing")
    # A param changed after signing is caught too.
    url_path = "param2/1/com.alibaba.product/alibaba.product.get/1000000"
    p = {"productID": str(OFFER), "webSite": "1688", "access_token": "TESTTOKEN"}
    p["_aop_signature"] = sign("test123", url_path, p)
    p["productID"] = "600000000002"
    st, body = fk.raw("/openapi/" + url_path, urllib.parse.urlencode(p))
    assert (st, json.loads(body)["error_code"]) == (400, "gw.SignatureInvalid")


def test_official_signature_example_accepted(fk):
    # The fake checks exactly the SDK rule: the documented example signs.
    assert sign("test123", "param2/1/system/currentTime/1000000", {"b": "2", "a": "1"}) == \
        "33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88"
    # Params may also come in the query string; both are signed.
    url_path = "param2/1/com.alibaba.product/alibaba.product.get/1000000"
    p = {"productID": str(OFFER), "webSite": "1688", "access_token": "TESTTOKEN"}
    sig = sign("test123", url_path, p)
    st, body = fk.raw("/openapi/%s?productID=%d" % (url_path, OFFER),
                      urllib.parse.urlencode({"webSite": "1688", "access_token": "TESTTOKEN",
                                              "_aop_signature": sig}))
    assert st == 200 and json.loads(body)["success"] is True


def test_gateway_check_order(fk):
    st, d = fk.call("com.alibaba.product", "alibaba.product.nosuch", {})
    assert (st, d["error_code"]) == (400, "gw.APIUnsupported")
    st, d = fk.call("com.alibaba.trade", "alibaba.product.get", {})  # wrong namespace
    assert d["error_code"] == "gw.APIUnsupported"
    st, body = fk.raw("/other/path", "")
    assert json.loads(body)["error_code"] == "gw.APIUnsupported"
    # app key before signature
    st, d = fk.product_get(app_key="999", secret="wrong")
    assert (st, d["error_code"]) == (400, "gw.AppKeyNotFound")
    # signature before token
    st, d = fk.product_get(token="bad", secret="wrong")
    assert d["error_code"] == "gw.SignatureInvalid"
    st, d = fk.product_get(token="bad")
    assert st == 401
    assert d == {**d, "error_code": "401", "error_message": "Request need user authorized",
                 "exception": "Request need user authorized"}
    st, d = fk.product_get(token=False)
    assert (st, d["error_code"]) == (401, "401")
    # token before ACL, ACL before params
    fk.ok("POST", "/config", {"acl_deny": ["alibaba.product.get"]})
    st, d = fk.product_get(token="bad")
    assert st == 401
    st, d = fk.call("com.alibaba.product", "alibaba.product.get", {})
    assert (st, d["error_code"], d["error_message"]) == \
        (400, "gw.APIACLDecline", "AppKey is not allowed(acl)")
    fk.ok("POST", "/config", {"acl_deny": []})
    st, d = fk.call("com.alibaba.product", "alibaba.product.get", {"webSite": "1688"})
    assert (st, d["error_code"], d["error_message"]) == \
        (400, "gw.ParamMissing", "Required argument productID")
    st, d = fk.preview("not json")
    assert d["error_code"] == "gw.ParamInvalid"


# ---- APIs ----------------------------------------------------------------------

def test_product_get(fk):
    st, d = fk.product_get()
    assert st == 200 and d["success"] is True
    info = d["productInfo"]
    assert info["productID"] == OFFER and info["status"] == "published"
    skus = {s["specId"]: s for s in info["skuInfos"]}
    assert skus[SPEC]["amountOnSale"] == 20 and skus[SPEC]["price"] == 8.5
    assert skus[SPEC]["skuId"] == 5000000000001
    assert skus[SPEC]["attributes"][0]["attributeValue"] == "red"
    assert skus[SPEC2]["price"] == 9.0
    assert info["saleInfo"]["amountOnSale"] == 25
    assert info["saleInfo"]["minOrderQuantity"] == 1
    assert len(info["lastUpdateTime"]) == len("20240102030405000+0800")
    st, d = fk.product_get(offer=123)
    assert st == 200 and d["success"] is False and "123" in d["errMsg"]


def test_preview_happy(fk):
    st, d = fk.preview(cargo(2) + cargo(1, SPEC2))
    assert st == 200 and d["success"] is True
    r = d["orderPreviewResuslt"][0]
    assert r["sumPaymentNoCarriage"] == 2 * 850 + 900
    assert r["sumCarriage"] == 500 and r["sumPayment"] == 2600 + 500
    assert r["flowFlag"] == "general" and r["tradeModeNameList"] == ["assureTrade"]
    assert {c["specId"] for c in r["cargoList"]} == {SPEC, SPEC2}
    assert r["cargoList"][0]["finalUnitPrice"] == 8.5
    # A preview holds nothing.
    assert fk.sku_state()["real"] == 20


@pytest.mark.parametrize("code,setup,lines,extra", [
    ("500_001", {"status": "member expired"}, cargo(1), {}),
    ("500_001", {"support_online_trade": False}, cargo(1), {}),
    ("500_001", {}, cargo(1, offer=42), {}),
    ("500_002", {}, [{"offerId": OFFER, "quantity": 1}], {}),
    ("500_003", {}, cargo(1, "ffffffffffffffffffffffffffffffff"), {}),
    ("500_004", {}, cargo(21), {}),
    ("500_004", {}, cargo(15) + cargo(6), {}),
    ("500_005", {"min_order_quantity": 3}, cargo(2), {}),
    ("500_006", {"min_order_quantity": 3}, cargo(1) + cargo(1, SPEC2), {}),
    ("500_007", {"consign": False}, cargo(1), {"flow": "saleproxy"}),
    ("500_009", {"batch_number": 2}, cargo(3), {}),
    ("500_006", {"force_error": "500_006"}, cargo(1), {}),
])
def test_preview_errors(fk, code, setup, lines, extra):
    fk.ok("POST", "/products", product(**setup))
    st, d = fk.preview(lines, **extra)
    assert st == 200
    assert d["success"] is False and d["errorCode"] == code, d
    assert d["errorMsg"]
    # create refuses the same way, in its own envelope
    st, d = fk.create(lines, **extra)
    assert d["success"] is False and d["code"] == code and d["message"]
    assert d["result"]["failedOfferList"][0]["errorCode"] == code


def test_preview_price_zero(fk):
    p = product()
    p["skus"][0]["price_fen"] = 0
    del p["skus"][0]["price"]
    fk.ok("POST", "/products", p)
    st, d = fk.preview(cargo(1))
    assert d["errorCode"] == "500_008"


def test_preview_insufficient_message(fk):
    st, d = fk.preview(cargo(21))
    assert d["errorMsg"].startswith("商品[%d_%s]库存不足" % (OFFER, SPEC))


def test_create_idempotent_on_out_order_id(fk):
    st, d1 = fk.create(cargo(3), "RES-1")
    assert st == 200 and d1["success"] is True and d1["result"]["success"] is True
    oid = d1["result"]["orderId"]
    assert isinstance(oid, str) and int(oid) > 2 ** 53
    assert d1["result"]["totalSuccessAmount"] == 3 * 850 + 500
    assert d1["result"]["postFee"] == 500
    st, d2 = fk.create(cargo(3), "RES-1")
    assert d2["result"]["orderId"] == oid
    assert fk.sku_state()["real"] == 17           # taken once
    c = fk.ok("GET", "/counters")
    assert c["out_orders"]["RES-1"] == {"create_calls": 2, "orders": 1}
    assert c["orders_created"] == 1
    # Another outOrderId is another order; without one, every call is new.
    st, d3 = fk.create(cargo(1), "RES-2")
    assert d3["result"]["orderId"] != oid
    fk.create(cargo(1))
    fk.create(cargo(1))
    assert fk.sku_state()["real"] == 14
    # A gateway that does not dedupe (to test the client's look-up first).
    fk.ok("POST", "/config", {"idempotent": False})
    fk.create(cargo(1), "RES-1")
    assert fk.ok("GET", "/counters")["out_orders"]["RES-1"] == {"create_calls": 3, "orders": 2}


def test_create_fails_when_real_short(fk):
    st, d = fk.create(cargo(21), "RES-X")
    assert d["success"] is False and d["code"] == "500_004"
    assert d["result"]["failedOfferList"][0]["specId"] == SPEC
    assert fk.sku_state()["real"] == 20
    # The failed call made no order, so a retry is judged afresh.
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "real": 30})
    st, d = fk.create(cargo(21), "RES-X")
    assert d["success"] is True
    assert fk.ok("GET", "/counters")["out_orders"]["RES-X"] == {"create_calls": 2, "orders": 1}


def test_buyer_view(fk):
    st, d = fk.create(cargo(2), "RES-V")
    oid = d["result"]["orderId"]
    for by in ({"orderId": oid}, {"outOrderId": "RES-V"}):
        st, v = fk.view(**by)
        assert st == 200 and v["success"] == "true"
        b = v["result"]["baseInfo"]
        assert b["idOfStr"] == oid and b["id"] == int(oid)
        assert b["status"] == "waitbuyerpay" and b["outOrderId"] == "RES-V"
        assert b["totalAmount"] == 22.0 and b["shippingFee"] == 5.0
        item = v["result"]["productItems"][0]
        assert (item["specId"], item["skuID"], item["quantity"]) == (SPEC, 5000000000001, 2)
        assert v["result"]["tradeTerms"][0]["payStatus"] == "1"
    st, v = fk.view(orderId="3999999999999999999")
    assert v["success"] == "false" and v["errorCode"] == "ORDER_NOT_EXIST"
    st, v = fk.view(outOrderId="nope")
    assert v["errorCode"] == "ORDER_NOT_EXIST"
    st, v = fk.view()
    assert v["error_code"] == "gw.ParamMissing"


def test_cancel(fk):
    fk.ok("POST", "/config", {"cancel_min_age_ms": 10000})
    st, d = fk.create(cargo(4), "RES-C")
    oid = d["result"]["orderId"]
    st, r = fk.cancel(oid)
    assert r["success"] is False and r["errorCode"] == "CLOSE_ORDER_TOO_FAST"
    fk.ok("POST", "/config", {"cancel_min_age_ms": 0})
    assert fk.sku_state()["real"] == 16
    st, r = fk.cancel(oid)
    assert st == 200 and r == {"success": True}
    assert fk.sku_state()["real"] == 20               # stock returned
    b = fk.view(orderId=oid)[1]["result"]["baseInfo"]
    assert (b["status"], b["closeReason"], b["closeOperateType"]) == \
        ("cancel", "buyerCancel", "CLOSE_TRADE_BY_BUYER")
    st, r = fk.cancel(oid)
    assert r["errorCode"] == "ORDER_STATUS_ERROR"
    st, r = fk.cancel("3999999999999999999")
    assert r["errorCode"] == "ORDER_NOT_EXIST"
    # A paid order cannot be cancelled.
    st, d = fk.create(cargo(1))
    fk.ok("POST", "/order", {"order_id": d["result"]["orderId"], "status": "waitsellersend"})
    st, r = fk.cancel(d["result"]["orderId"])
    assert r["errorCode"] == "ORDER_STATUS_ERROR"


def test_pay_timeout_returns_stock(fk):
    fk.ok("POST", "/config", {"pay_timeout_s": 1})
    st, d = fk.create(cargo(5), "RES-T")
    assert fk.sku_state()["real"] == 15
    time.sleep(1.3)
    b = fk.view(outOrderId="RES-T")[1]["result"]["baseInfo"]
    assert (b["status"], b["closeOperateType"]) == ("cancel", "CLOSE_TRADE_BY_SYSTEM")
    assert fk.sku_state()["real"] == 20


def test_follow(fk):
    st, d = fk.call("com.alibaba.product", "alibaba.product.follow.crossborder",
                    {"productId": str(OFFER)})
    assert d == {"code": 0, "message": "success"}
    assert fk.ok("GET", "/products/%d" % OFFER)["product"]["followed"] is True
    st, d = fk.call("com.alibaba.product", "alibaba.product.follow.crossborder",
                    {"productId": "1"})
    assert d["code"] != 0


# ---- the stock model -------------------------------------------------------------

def reported(fk, spec=SPEC):
    info = fk.product_get()[1]["productInfo"]
    return next(s["amountOnSale"] for s in info["skuInfos"] if s["specId"] == spec)


def test_inflated_stock(fk):
    # Reports 100, only 20 can be bought.
    fk.ok("POST", "/config", {"inflation": 5})
    assert reported(fk) == 100 and reported(fk, SPEC2) == 25
    assert fk.preview(cargo(21))[1]["errorCode"] == "500_004"
    assert fk.preview(cargo(20))[1]["success"] is True
    # Per-SKU factor and a fixed reported figure override the global one.
    fk.ok("POST", "/config", {"inflation": 1})
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "inflation": 2})
    assert reported(fk) == 40 and reported(fk, SPEC2) == 5
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "reported": 100})
    assert reported(fk) == 100
    for i in range(20):
        assert fk.create(cargo(1), "INF-%d" % i)[1]["success"] is True
    d = fk.create(cargo(1), "INF-20")[1]
    assert d["code"] == "500_004"
    assert reported(fk) == 100 and fk.sku_state()["real"] == 0
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "reported": None,
                             "inflation": None})
    assert reported(fk) == 0


def test_reported_lags(fk):
    fk.ok("POST", "/config", {"lag_ms": 600})
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "real": 5})
    assert reported(fk) == 20                       # still the old figure
    assert fk.preview(cargo(6))[1]["errorCode"] == "500_004"   # real is checked
    fk.create(cargo(2))
    assert fk.sku_state()["real"] == 3 and fk.sku_state()["reported"] == 20
    time.sleep(0.8)
    assert reported(fk) == 3
    # With delta
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "delta": 7})
    assert fk.sku_state()["real"] == 10 and reported(fk) == 3


def test_manual_clock_drives_the_lag(fk):
    """POST /clock: a simulator's time, not the wall clock, ages the reported
    figure, so a replayed night sees the same figures."""
    fk.ok("POST", "/clock", {"now_ms": 0})
    fk.ok("POST", "/catalogue", {"products": [product()]})
    fk.ok("POST", "/config", {"lag_ms": 60000})
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "real": 5})
    assert reported(fk) == 20
    fk.ok("POST", "/clock", {"now_ms": 59999})
    assert reported(fk) == 20
    fk.ok("POST", "/clock", {"now_ms": 60000})
    assert reported(fk) == 5
    assert fk.ok("GET", "/clock")["now_ms"] == 60000
    st, d = fk.ctl("POST", "/clock", {"now_ms": 10})
    assert st == 400 and "backwards" in d["error"], d
    for bad in ({}, {"now_ms": -1}, {"now_ms": "1"}, {"manual": 1}, {"manual": False, "now_ms": 5}):
        st, d = fk.ctl("POST", "/clock", bad)
        assert st == 400, (bad, d)
    fk.ok("POST", "/clock", {"manual": False})
    c = fk.ok("GET", "/clock")
    assert c["manual"] is False and c["now_ms"] > 1600000000000, c
    fk.ok("POST", "/clock", {"now_ms": 5})
    fk.ok("POST", "/reset", {})
    assert fk.ok("GET", "/clock")["manual"] is False


# ---- faults ----------------------------------------------------------------------

def test_fault_queue(fk):
    fk.ok("POST", "/faults", {"next": [{"kind": "qos", "count": 2}, {"kind": "401"},
                                       {"kind": "5xx"}, {"kind": "garbage"}]})
    for _ in range(2):
        st, d = fk.product_get()
        assert (st, d["error_code"], d["error_message"]) == \
            (400, "gw.QosAppFrequencyLimit", "App call exceeds limited frequency")
    st, d = fk.product_get()
    assert (st, d["error_code"]) == (401, "401")
    st, d = fk.product_get()
    assert st == 503 and d["error_code"].startswith("gw.")
    # garbage: the API ran, the answer is not JSON
    url_path = "param2/1/com.alibaba.product/alibaba.product.get/1000000"
    p = {"productID": str(OFFER), "webSite": "1688", "access_token": "TESTTOKEN"}
    p["_aop_signature"] = sign("test123", url_path, p)
    st, body = fk.raw("/openapi/" + url_path, urllib.parse.urlencode(p))
    assert st == 200
    with pytest.raises(ValueError):
        json.loads(body)
    assert fk.product_get()[0] == 200                # queue used up
    c = fk.ok("GET", "/counters")
    assert c["faults"]["qos"] == 2 and c["faults"]["garbage"] == 1
    assert c["codes"]["gw.QosAppFrequencyLimit"] == 2


def test_fault_timeout_keeps_effect(fk):
    # The create runs, its answer is held: the client times out, the order exists.
    fk.ok("POST", "/faults", {"next": [{"kind": "timeout"}], "timeout_hold_ms": 1500,
                              "apis": ["alibaba.trade.fastCreateOrder"]})
    assert fk.product_get()[0] == 200                # other APIs unaffected
    with pytest.raises(socket.timeout):
        fk.create(cargo(2), "RES-TO", timeout=0.3)
    st, v = fk.view(outOrderId="RES-TO")
    assert v["success"] == "true"
    assert fk.create(cargo(2), "RES-TO")[1]["result"]["orderId"] == v["result"]["baseInfo"]["idOfStr"]
    assert fk.ok("GET", "/counters")["out_orders"]["RES-TO"]["orders"] == 1


def test_fault_reset_and_refuse(fk):
    fk.ok("POST", "/faults", {"next": [{"kind": "reset"}]})
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        fk.product_get()
    assert fk.product_get()[0] == 200
    fk.ok("POST", "/faults", {"refuse": True})
    with pytest.raises(ConnectionRefusedError):
        fk.product_get()
    fk.ok("POST", "/faults", {"refuse": False})
    assert fk.product_get()[0] == 200


def test_fault_rates_and_latency(fk):
    fk.ok("POST", "/faults", {"rates": {"5xx": 0.5}, "seed": 7, "http5xx_status": 502})
    codes = [fk.product_get()[0] for _ in range(200)]
    assert 60 < codes.count(502) < 140 and codes.count(502) + codes.count(200) == 200
    fk.ok("POST", "/faults", {"clear": True})
    assert all(fk.product_get()[0] == 200 for _ in range(20))
    fk.ok("POST", "/config", {"latency_ms": 200})
    t = time.monotonic()
    assert fk.product_get()[0] == 200
    assert time.monotonic() - t >= 0.19
    fk.ok("POST", "/config", {"latency_ms": 0})


def test_keyed_faults_follow_the_call_not_the_order(fk):
    """keyed: each call's fault is drawn from the call itself (its params
    and how many identical ones came before), so the same calls in another
    order meet the same faults; the n-th repeat of a call draws afresh."""
    offers = [OFFER + i for i in range(1, 41)]
    fk.ok("POST", "/catalogue", {"products": [product(offer=o) for o in offers]})

    def pattern(order):
        fk.ok("POST", "/faults", {"clear": True, "rates": {"5xx": 0.5}, "seed": 11,
                                  "keyed": True, "http5xx_status": 502})
        got = {}
        for o in order:
            got.setdefault(o, []).append(fk.product_get(offer=o)[0])
        return got

    first = pattern(offers + offers)
    again = pattern(list(reversed(offers)) + offers)
    assert first == again
    codes = [c for v in first.values() for c in v]
    assert 20 < codes.count(502) < 60 and codes.count(502) + codes.count(200) == 80, codes
    # A repeat is a fresh draw: some offers failed once and passed once.
    assert any(v[0] != v[1] for v in first.values()), first
    # keyed stays on when not named again; /reset turns it off.
    fk.ok("POST", "/faults", {"clear": True, "rates": {"5xx": 0.5}, "seed": 12})
    assert fk.ok("GET", "/faults")["faults"]["keyed"] is True  # stays on until /reset
    fk.ok("POST", "/reset", {})
    assert fk.ok("GET", "/faults")["faults"]["keyed"] is False


def test_keyed_faults_ignore_the_credentials(fk):
    """keyed draws leave the run's credentials out (a replay signs in with a
    new secret and token): a second fake with other ones, the same seed
    and the same calls meets the same faults."""
    offers = [OFFER + i for i in range(1, 31)]
    other = Fake(["--app-secret", "other-secret", "--access-token", "OTHERTOKEN"])
    other.secret, other.token = "other-secret", "OTHERTOKEN"
    try:
        got = []
        for f in (fk, other):
            f.ok("POST", "/catalogue", {"products": [product(offer=o) for o in offers]})
            f.ok("POST", "/faults", {"clear": True, "rates": {"5xx": 0.5}, "seed": 21,
                                     "keyed": True, "http5xx_status": 502})
            got.append([f.product_get(offer=o)[0] for o in offers])
        assert got[0] == got[1], got
        assert 5 < got[0].count(502) < 25, got
    finally:
        other.stop()


def test_qos_limit(fk):
    fk.ok("POST", "/config", {"qos_limit_per_s": 5})
    codes = [fk.product_get()[1].get("error_code") for _ in range(12)]
    assert codes.count("gw.QosAppFrequencyLimit") >= 5
    assert codes.count(None) >= 5
    fk.ok("POST", "/config", {"qos_limit_per_s": 0})


# ---- link changes ------------------------------------------------------------------

def test_link_changes(fk):
    d = fk.ok("POST", "/link", {"offer_id": OFFER, "spec_id": SPEC2, "action": "spec_removed"})
    assert [s["spec_id"] for s in d["product"]["skus"]] == [SPEC]
    info = fk.product_get()[1]["productInfo"]
    assert [s["specId"] for s in info["skuInfos"]] == [SPEC]
    assert fk.preview(cargo(1, SPEC2))[1]["errorCode"] == "500_003"
    fk.ok("POST", "/link", {"offer_id": OFFER, "spec_id": SPEC, "action": "price",
                            "price_fen": 990})
    assert fk.product_get()[1]["productInfo"]["skuInfos"][0]["price"] == 9.9
    fk.ok("POST", "/link", {"offer_id": OFFER, "spec_id": SPEC, "action": "attributes",
                            "attributes": [{"attributeID": 3216, "attributeValue": "blue"}]})
    assert fk.product_get()[1]["productInfo"]["skuInfos"][0]["attributes"][0]["attributeValue"] \
        == "blue"
    fk.ok("POST", "/link", {"offer_id": OFFER, "action": "offline"})
    assert fk.product_get()[1]["productInfo"]["status"] == "member expired"
    assert fk.preview(cargo(1))[1]["errorCode"] == "500_001"
    fk.ok("POST", "/link", {"offer_id": OFFER, "action": "online"})
    assert fk.preview(cargo(1))[1]["success"] is True
    fk.ok("POST", "/link", {"offer_id": OFFER, "action": "spec_added",
                            "sku": {"sku_id": 5000000000009, "spec_id": "new", "price_fen": 100,
                                    "real": 3}})
    assert fk.preview(cargo(3, "new"))[1]["success"] is True
    st, d = fk.ctl("POST", "/link", {"offer_id": OFFER, "spec_id": "new", "action": "bogus"})
    assert st == 400 and d["ok"] is False


# ---- push ------------------------------------------------------------------------

class PushSink:
    """A loopback HTTP receiver that answers "success" and keeps each push."""

    def __init__(self):
        self.got = []
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
                sink.got.append((self.path, form))
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/push/1688?x=1" % self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n, timeout=5):
        end = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < end:
            time.sleep(0.02)
        return self.got

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_push_delivery(fk):
    sink = PushSink()
    try:
        fk.ok("POST", "/config", {"push_url": sink.url})
        fk.create(cargo(4), "RES-P")
        got = sink.wait(1)
        assert len(got) == 1
        path, form = got[0]
        assert path == "/push/1688?x=1"
        msg = form["message"][0]
        # params-only signature over "message" + JSON
        assert form["_aop_signature"][0] == sign("test123", "", {"message": msg})
        env = json.loads(msg)
        assert env["type"] == "PRODUCT_PRODUCT_INVENTORY_CHANGE"
        assert {"msgId", "gmtBorn", "userInfo", "data"} <= set(env)
        ch = env["data"]["OfferInventoryChangeList"][0]
        assert (ch["offerId"], ch["skuId"], ch["skuOnSale"], ch["quantity"]) == \
            (OFFER, 5000000000001, 16, -4)
        assert ch["offerOnSale"] == 21
        fk.ok("POST", "/link", {"offer_id": OFFER, "action": "offline"})
        fk.ok("POST", "/link", {"offer_id": OFFER, "spec_id": SPEC2, "action": "spec_removed"})
        fk.ok("POST", "/push", {"type": "ORDER_BUYER_VIEW_ORDER_PAY", "data": {"orderId": 1}})
        got = sink.wait(4)
        # A retried delivery may overtake, as on 1688: compare as a set.
        msgs = {json.loads(f["message"][0])["type"]: json.loads(f["message"][0])
                for _, f in got[1:]}
        assert set(msgs) == {"PRODUCT_RELATION_VIEW_PRODUCT_EXPIRE",
                             "PRODUCT_RELATION_VIEW_PRODUCT_CHANGE", "ORDER_BUYER_VIEW_ORDER_PAY"}
        ch = msgs["PRODUCT_RELATION_VIEW_PRODUCT_CHANGE"]["data"]
        assert (ch["productIds"], ch["action"]) == (str(OFFER), "sku_delete")
        assert msgs["PRODUCT_RELATION_VIEW_PRODUCT_EXPIRE"]["data"]["status"] == \
            "RELATION_VIEW_PRODUCT_EXPIRE"
        # The fake counts a delivery once the sink's answer is back, which
        # may be just after the sink has handed the message to this test.
        deadline = time.monotonic() + 5
        while True:
            c = fk.ok("GET", "/counters")["push"]
            if c["ok"] >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert c["ok"] == 4 and c["failed"] == 0, c
        # Pushes lag like the reported figure.
        fk.ok("POST", "/config", {"lag_ms": 400})
        fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "real": 1})
        time.sleep(0.2)
        assert len(sink.got) == 4
        got = sink.wait(5)
        ch = json.loads(got[4][1]["message"][0])["data"]["OfferInventoryChangeList"][0]
        assert ch["skuOnSale"] == 1
    finally:
        sink.close()


def test_push_failure_counted(fk):
    # Nothing listens: FK_PUSH_ATTEMPTS tries, then one failure.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there
    fk.ok("POST", "/config", {"push_url": "http://127.0.0.1:%d/" % port})
    fk.ok("POST", "/stock", {"offer_id": OFFER, "spec_id": SPEC, "real": 1})
    end = time.monotonic() + 5
    while fk.ok("GET", "/counters")["push"]["failed"] < 1 and time.monotonic() < end:
        time.sleep(0.05)
    c = fk.ok("GET", "/counters")["push"]
    assert (c["failed"], c["sent"], c["ok"]) == (1, 3, 0)


# ---- control API, counters, bounds -------------------------------------------------

def test_counters(fk):
    fk.product_get()
    fk.product_get(secret="bad")
    fk.preview(cargo(100))
    fk.create(cargo(1), "C-1")
    c = fk.ok("GET", "/counters")
    assert c["calls"]["alibaba.product.get"] == 2
    assert c["succeeded"]["alibaba.product.get"] == 1
    assert c["gateway_errors"]["alibaba.product.get"] == 1
    assert c["business_errors"]["alibaba.createOrder.preview"] == 1
    assert c["calls"]["alibaba.trade.fastCreateOrder"] == 1
    assert c["codes"]["500_004"] == 1 and c["codes"]["gw.SignatureInvalid"] == 1
    assert c["out_orders"] == {"C-1": {"create_calls": 1, "orders": 1}}
    fk.ok("POST", "/reset", {})
    c = fk.ok("GET", "/counters")
    assert c["calls"]["alibaba.product.get"] == 0 and c["products"] == 0


def test_control_validation(fk):
    for path, body in [("/catalogue", {"products": [{"offer_id": 1}]}),
                       ("/catalogue", {"products": [{"offer_id": 1, "skus": [{"spec_id": "x"}]}]}),
                       ("/products", {"offer_id": 1, "skus": [
                           {"sku_id": 1, "spec_id": "a", "price_fen": 1},
                           {"sku_id": 2, "spec_id": "a", "price_fen": 1}]}),
                       ("/stock", {"offer_id": OFFER, "spec_id": SPEC, "real": -1}),
                       ("/config", {"lag_ms": "x"}),
                       ("/config", {"acl_deny": ["no.such.api"]}),
                       ("/faults", {"rates": {"5xx": 2}}),
                       ("/faults", {"next": [{"kind": "meteor"}]})]:
        st, d = fk.ctl("POST", path, body)
        assert st == 400 and d["ok"] is False and d["error"], (path, body, d)
    st, d = fk.ctl("POST", "/config", None)
    assert st == 400
    st, d = fk.ctl("GET", "/nope")
    assert st == 404
    st, d = fk.ctl("POST", "/stock", {"offer_id": 1, "spec_id": SPEC, "real": 1})
    assert st == 404
    # A failed update changes nothing.
    fk.ctl("POST", "/config", {"lag_ms": 5, "inflation": -1})
    assert fk.ok("GET", "/config")["config"]["lag_ms"] == 0
    assert len(fk.ok("GET", "/products")["products"]) == 1


def test_bounds():
    f = Fake(["--max-products", "2", "--max-orders", "2"])
    try:
        st, d = f.ctl("POST", "/catalogue", {"products": [product(offer=o) for o in (1, 2, 3)]})
        assert st == 400
        f.ok("POST", "/catalogue", {"products": [product(offer=o) for o in (1, 2)]})
        st, d = f.ctl("POST", "/products", product(offer=3))
        assert st == 400
        f.ok("POST", "/products", product(offer=2, subject="replaced"))
        f.create(cargo(1, offer=1), "B-1")
        f.create(cargo(1, offer=1), "B-2")
        st, d = f.create(cargo(1, offer=1), "B-3")
        assert d["success"] is False and d["code"] == "ORDER_LIMIT"
        # Bodies over 256 KiB are refused before they are parsed.
        st, _ = f.raw("/openapi/param2/1/com.alibaba.product/alibaba.product.get/1000000",
                      "a=" + "x" * (300 * 1024))
        assert st == 413
        p = {"k%d" % i: "v" for i in range(70)}
        st, d = f.call("com.alibaba.product", "alibaba.product.get", p, signed=False)
        assert (st, d["error_code"]) == (400, "gw.ParamInvalid")
        st, body = f.raw("/openapi/param2/1/com.alibaba.product/alibaba.product.get/1000000",
                         "a=%zz")
        assert json.loads(body)["error_code"] == "gw.ParamInvalid"
        assert f.proc.poll() is None
    finally:
        f.stop()


def test_stack_fake_answers():
    url = os.environ.get("STOCKD_FAKE1688_CONTROL")
    if not url:
        itestlib.skip_or_fail("STOCKD_FAKE1688_CONTROL not set (tools/stack env)")
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    c.request("GET", "/health")
    d = json.loads(c.getresponse().read())
    assert d["ok"] is True
    assert "127.0.0.1:%d" % d["api_port"] in os.environ["STOCKD_FAKE1688"]
