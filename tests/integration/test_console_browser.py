"""The support console in a real browser (tests/browser: Playwright's
playwright-core driving Debian's chromium headless, node --test).

Method: a private fake1688 (test_supplier_sync.Fake) whose only offer holds
1 real unit but reports 10 (inflation), and one stockd pointed at it with an
admin token and --http. A SKU mapped to that offer makes every reserve of 3
supplier units fail its order check (preview: 500_004) and write a
purchase_failed alert. A confirmed order on an own-stock SKU is the target
of the forged release. A few reserves, some refused, give the chart data.
The node suite then checks, in the browser: a wrong token is refused; the
session cookie is HttpOnly, SameSite=Strict and expires; a failed order
check shows up within 2 s without a reload; the SKU and supplier views;
acknowledging an alert takes it off the open list; a cross-site POST
without the CSRF token is refused and changes nothing. It saves a
screenshot (CONSOLE_SCREENSHOT, else the test's temporary directory;
docs/console.png was made with CONSOLE_SCREENSHOT=docs/console.png).

node_modules comes from tests/browser/package-lock.json (npm ci) when it
does not match. A missing chromium or node fails under ITEST_STRICT=1
(tools/deps installs both). Bounded: about 15 s.
"""
import os
import secrets
import time

import pytest

import itestlib
from itestlib import supplier_flags, wait_until
from test_clients import last_match, need, npm_ci, run_suite
from test_supplier_sync import Fake

BROWSER_DIR = os.path.join(itestlib.ROOT, "tests", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
OFFER = 640000000001
SPEC = "console000000000000000000000000001"
TOKEN = "console-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def env(make_stockd, tmp_path_factory):
    if not os.access(CHROMIUM, os.X_OK):
        itestlib.skip_or_fail("%s not found: apt-get install chromium (tools/deps does)"
                              % CHROMIUM)
    secret = "sec-" + secrets.token_hex(12)
    token = "tok-" + secrets.token_hex(12)
    fake = Fake(secret, token)
    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": OFFER, "subject": "inflated hoodie", "skus": [
                {"sku_id": 5500000000001, "spec_id": SPEC, "price": 9, "real": 1,
                 "inflation": 10}]}]})
        http_port = itestlib.free_port()
        s = make_stockd(name="console", args=supplier_flags(
            fake.port, secret, token, sync_ms=500, validate_ms=500, upstream_lag_ms=0,
            rate_per_s=2000, purchase_backoff_max_ms=500, timeout_ms=3000) + [
            "--admin-token", TOKEN, "--http", "127.0.0.1:%d" % http_port])
        c = s.client()
        c.ok("sku.put", {"sku": "web-hoodie", "token": TOKEN, "supplier": {
            "supplier_id": "1688-web", "offer_id": OFFER, "spec_id": SPEC}})
        wait_until(lambda: c.ok("stock.get", {"sku": "web-hoodie"})["supplier_reported"] == 10,
                   5, what="web-hoodie synced")
        c.ok("sku.put", {"sku": "web-mug", "own_on_hand": 25, "token": TOKEN})
        assert c.ok("reserve", {"order_id": "web-victim", "sku": "web-mug", "qty": 1})[
            "status"] == "confirmed"
        # The chart's data: reserves over a few seconds, the last ones refused.
        for i in range(30):
            err, _ = c.call("reserve", {"order_id": "web-load-%d" % i, "sku": "web-mug",
                                        "qty": 1})
            time.sleep(0.03)
        c.close()
        shot = os.environ.get("CONSOLE_SCREENSHOT") or str(
            tmp_path_factory.mktemp("console") / "console.png")
        yield {
            "CONSOLE_URL": "http://127.0.0.1:%d/console/" % http_port,
            "CONSOLE_TOKEN": TOKEN,
            "STOCKD_ADDR": s.addr,
            "STOCKCTL_BIN": itestlib.stockctl_bin(),
            "FAIL_SKU": "web-hoodie",
            "FAIL_QTY": "3",
            "VICTIM_ORDER": "web-victim",
            "SCREENSHOT": os.path.abspath(shot),
            "CHROMIUM": CHROMIUM,
        }
    finally:
        fake.stop()


class Servers:
    """What run_suite (test_clients) expects: env() and tails()."""

    def __init__(self, env):
        self._env = env

    def env(self):
        return self._env

    def tails(self):
        return "\n".join(s.tail() for s in itestlib.recent_instances())


def test_console_in_chromium(env, capsys):
    node = need("node", "nodejs")
    npm_ci(BROWSER_DIR)
    run_suite(Servers(env), capsys, "console (chromium)",
              [node, "--test", "--test-reporter=tap", "test/"], BROWSER_DIR,
              lambda out: "%s passed, %s failed" % (last_match(r"^# pass (\d+)", out, "?"),
                                                   last_match(r"^# fail (\d+)", out, "?")))
    assert os.path.getsize(env["SCREENSHOT"]) > 10000, "no screenshot saved"
