"""The support console over plain HTTP: forged and oversized input from
anyone who can reach the --http port, the session and CSRF rules, and the
two RPC methods it added (alerts.ack, sku.recheck).

Method: one stockd with an admin token and --http (and a second one with
--console-public-read, --console-token and --console-max-sessions 2 for the
rules that change with those flags); requests through http.client, alerts
written straight into MariaDB (the console reads them from there, as it
reads every instance's). Bounded: a few seconds.
"""
import http.client
import json
import secrets
import socket
import subprocess
import time

import pytest

import itestlib

TOKEN = "admin-" + secrets.token_hex(8)
CTOKEN = "console-" + secrets.token_hex(12)


def http_port_args():
    p = itestlib.free_port()
    return p, ["--http", "127.0.0.1:%d" % p]


@pytest.fixture(scope="module")
def srv(make_stockd, db):
    port, args = http_port_args()
    s = make_stockd(db=db, name="console-http", args=["--admin-token", TOKEN] + args)
    s.http_port = port
    return s


@pytest.fixture(scope="module")
def pub(make_stockd, db):
    port, args = http_port_args()
    s = make_stockd(db=db, name="console-pub", args=[
        "--admin-token", TOKEN, "--console-token", CTOKEN, "--console-public-read", "yes",
        "--console-max-sessions", "2"] + args)
    s.http_port = port
    return s


def req(s, method, path, body=None, headers=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read()
    c.close()
    try:
        j = json.loads(text)
    except ValueError:
        j = None
    return r.status, dict(r.getheaders()), j, text


def login(s, token=TOKEN, name="ann"):
    st, h, j, _ = req(s, "POST", "/console/api/login", {"token": token, "name": name})
    assert st == 200, j
    cookie = h["Set-Cookie"].split(";")[0]
    return {"Cookie": cookie, "X-CSRF-Token": j["csrf"]}


def add_alert(db, sku="c-sku", order_id="c-o1", reason="test alert"):
    db.query("INSERT INTO alerts (kind, sku, order_id, reason, at) VALUES"
             " ('purchase_failed', %s, %s, %s, %s)", (sku, order_id, reason, int(time.time() * 1000)))
    return db.query("SELECT MAX(id) AS id FROM alerts")[0]["id"]


# ---------------------------------------------------------------- the page

def test_page_and_headers(srv):
    st, h, _, text = req(srv, "GET", "/console/")
    assert st == 200 and b"<title>stockd support console</title>" in text
    assert "script-src 'self'" in h["Content-Security-Policy"]
    assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
    for name, ctype in (("console.js", "text/javascript"), ("console.css", "text/css")):
        st, h, _, _ = req(srv, "GET", "/console/" + name)
        assert st == 200 and h["Content-Type"].startswith(ctype)
    st, h, _, _ = req(srv, "GET", "/console")
    assert st == 303 and h["Location"] == "/console/"
    assert req(srv, "GET", "/console/../metrics")[0] == 404
    assert req(srv, "GET", "/console/nope.js")[0] == 404
    assert req(srv, "DELETE", "/console/api/live")[0] == 405
    # The rest of the port is unchanged.
    assert req(srv, "GET", "/healthz")[0] == 200


def test_reads_need_a_session(srv):
    st, _, j, _ = req(srv, "GET", "/console/api/session")
    assert st == 200 and j["signed_in"] is False and j["public_read"] is False
    for path in ("/console/api/live", "/console/api/sku?sku=x", "/console/api/supplier?id=x"):
        assert req(srv, "GET", path)[0] == 401, path


# ---------------------------------------------------------------- sign-in

def test_wrong_token_refused(srv):
    for tok in ("", "x", TOKEN + "x", TOKEN[:-1], "A" * 255):
        st, h, j, _ = req(srv, "POST", "/console/api/login", {"token": tok})
        assert st in (400, 401), (tok, st, j)
        assert "Set-Cookie" not in h
    st, _, j, _ = req(srv, "POST", "/console/api/login", {"token": 5})
    assert st == 400
    # Over CFG_STR_MAX - 1: refused before any comparison.
    assert req(srv, "POST", "/console/api/login", {"token": "A" * 300})[0] == 400


def test_session_cookie_and_logout(srv):
    st, h, j, _ = req(srv, "POST", "/console/api/login", {"token": TOKEN, "name": "bob"})
    assert st == 200, j
    sc = h["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/console/", "Max-Age=28800"):
        assert flag in sc, sc
    assert "Secure" not in sc
    hd = {"Cookie": sc.split(";")[0], "X-CSRF-Token": j["csrf"]}
    st, _, j, _ = req(srv, "GET", "/console/api/session", headers=hd)
    assert j["signed_in"] and j["name"] == "bob" and j["expires_at"] > time.time() * 1000
    assert req(srv, "GET", "/console/api/live", headers=hd)[0] == 200
    st, h, _, _ = req(srv, "POST", "/console/api/logout", {}, headers=hd)
    assert st == 200 and "Max-Age=0" in h["Set-Cookie"]
    assert req(srv, "GET", "/console/api/live", headers=hd)[0] == 401


def test_forged_cookies(srv):
    login(srv)
    forged = [
        "stockd_console=" + secrets.token_hex(32),           # well formed, unknown
        "stockd_console=" + secrets.token_hex(32).upper(),   # not our alphabet
        "stockd_console=" + secrets.token_hex(31),           # short
        "stockd_console=" + secrets.token_hex(33),           # long
        "stockd_console=",
        "stockd_console",
        "; ;;; stockd_console=%00" + "a" * 62,
        "other=1; stockd_console=" + "g" * 64,
    ]
    for ck in forged:
        assert req(srv, "GET", "/console/api/live", headers={"Cookie": ck})[0] == 401, ck
    # An oversized cookie is refused by the HTTP server itself (head over 8 KiB).
    st = req(srv, "GET", "/console/api/live", headers={"Cookie": "stockd_console=" + "a" * 9000})[0]
    assert st == 431


# ---------------------------------------------------------------- CSRF and bodies

def test_posts_need_csrf_and_same_origin(srv, db):
    aid = add_alert(db, order_id="c-csrf")
    hd = login(srv)
    cookie = {"Cookie": hd["Cookie"]}
    body = {"id": aid}
    assert req(srv, "POST", "/console/api/ack", body, headers=cookie)[0] == 403
    assert req(srv, "POST", "/console/api/ack", body,
               headers=dict(cookie, **{"X-CSRF-Token": secrets.token_hex(32)}))[0] == 403
    assert req(srv, "POST", "/console/api/ack", body,
               headers=dict(cookie, **{"X-CSRF-Token": hd["X-CSRF-Token"][:-1]}))[0] == 403
    evil = dict(hd, Origin="http://evil.example")
    assert req(srv, "POST", "/console/api/ack", body, headers=evil)[0] == 403
    assert req(srv, "POST", "/console/api/ack", body, headers=dict(hd, Origin="null"))[0] == 403
    assert req(srv, "POST", "/console/api/ack", body,
               headers=dict(hd, **{"Sec-Fetch-Site": "cross-site"}))[0] == 403
    assert req(srv, "POST", "/console/api/ack", body,
               headers=dict(hd, **{"Sec-Fetch-Site": "same-site"}))[0] == 403
    # A form post (no preflight) is not JSON.
    st = req(srv, "POST", "/console/api/ack", headers=dict(
        hd, **{"Content-Type": "application/x-www-form-urlencoded"}), raw=b"id=%d" % aid)[0]
    assert st == 415
    # Nothing above touched the alert.
    assert db.query("SELECT acked_at FROM alerts WHERE id = %s", (aid,))[0]["acked_at"] is None
    # The console's own page: same origin, token.
    ok = dict(hd, Origin="http://127.0.0.1:%d" % srv.http_port, Host="127.0.0.1:%d" % srv.http_port)
    st, _, j, _ = req(srv, "POST", "/console/api/ack", {"id": aid, "note": "done"}, headers=ok)
    assert st == 200 and j["result"]["acked_by"] == "ann" and j["result"]["acked_now"], j


def test_bad_bodies(srv):
    hd = login(srv)
    bad = [
        b"", b"[]", b"1", b"{", b'{"id": 1,}', b'{"id": 1, "id": 2}', b'{"id": "1"}',
        b'{"id": 0}', b'{"id": -5}', b'{"id": 1.5}', b'{"id": 1, "x": 1}',
        b'{"id": 1, "note": 5}', b'{"id": 1, "note": "' + b"n" * 256 + b'"}',
        b'{"id": 1, "note": "a\\u0000b"}', b'\xff\xfe',
    ]
    for raw in bad:
        st, _, j, _ = req(srv, "POST", "/console/api/ack",
                          headers=dict(hd, **{"Content-Type": "application/json"}), raw=raw)
        assert st == 400, (raw, st, j)
    st = req(srv, "POST", "/console/api/ack", headers=dict(
        hd, **{"Content-Type": "application/json"}), raw=b'{"note": "' + b"x" * 5000 + b'"}')[0]
    assert st == 413
    # Over the HTTP server's body limit (64 KiB): refused before the console.
    st = req(srv, "POST", "/console/api/ack", headers=dict(
        hd, **{"Content-Type": "application/json"}), raw=b" " * 70000)[0]
    assert st == 413
    for body in ({"order_id": "bad id!"}, {"order_id": ""}, {"order_id": "o" * 65},
                 {"order_id": "o1", "sku": ""}, {}):
        assert req(srv, "POST", "/console/api/release", body, headers=hd)[0] == 400, body
    for body in ({"supplier_id": "s1"}, {"supplier_id": "a:b", "trust": 0.5},
                 {"supplier_id": "s1", "trust": 2}, {"supplier_id": "s1", "event_mode": "yes"},
                 {"supplier_id": "s1", "trust": -0.1}):
        assert req(srv, "POST", "/console/api/supplier", body, headers=hd)[0] == 400, body
    assert req(srv, "POST", "/console/api/nope", {}, headers=hd)[0] == 404


def test_bad_query_strings(srv):
    hd = login(srv)
    for q in ("", "sku=", "sku=%", "sku=%zz", "sku=%ff", "sku=%00x", "sku=" + "a" * 65,
              "other=1", "sku"):
        assert req(srv, "GET", "/console/api/sku?" + q, headers=hd)[0] == 400, q
    assert req(srv, "GET", "/console/api/supplier?id=a%3Ab", headers=hd)[0] == 400
    st, _, j, _ = req(srv, "GET", "/console/api/sku?sku=no%20such%20sku", headers=hd)
    assert st == 200 and j["sku"] == "no such sku" and j["stock"]["code"] == "unknown_sku", j


# ---------------------------------------------------------------- what it shows

def test_live_views_and_actions(srv, db):
    c = srv.client()
    c.ok("sku.put", {"sku": "c-mug", "own_on_hand": 5, "token": TOKEN})
    assert c.ok("reserve", {"order_id": "c-rel", "sku": "c-mug", "qty": 2})["status"] == "confirmed"
    aid = add_alert(db, sku="c-mug", order_id="c-rel", reason="\u4e0d\u8db3 <b>not html</b>")
    hd = login(srv)
    time.sleep(0.3)  # past the freshness of a result shared by earlier polls
    st, _, j, _ = req(srv, "GET", "/console/api/live", headers=hd)
    assert st == 200 and j["node"] == "console-http"
    mine = [a for a in j["alerts"] if a["id"] == aid]
    assert mine and mine[0]["reason"] == "\u4e0d\u8db3 <b>not html</b>"
    ids = [a["id"] for a in j["alerts"]]
    assert ids == sorted(ids, reverse=True), "newest first"
    st, _, j, _ = req(srv, "GET", "/console/api/sku?sku=c-mug", headers=hd)
    assert j["stock"]["result"]["own_reserved"] == 2
    assert [m["order_id"] for m in j["moves"]] == ["c-rel"]
    st, _, j, _ = req(srv, "POST", "/console/api/release", {"order_id": "c-rel"}, headers=hd)
    assert st == 200 and j["result"]["status"] == "released", j
    st, _, j, _ = req(srv, "POST", "/console/api/release", {"order_id": "c-none"}, headers=hd)
    assert st == 404 and j["code"] == "not_found", j
    st, _, j, _ = req(srv, "POST", "/console/api/recheck", {"sku": "c-mug"}, headers=hd)
    assert st == 200 and j["result"] == {"sku": "c-mug", "mapping": "none", "rechecking": False}
    st, _, j, _ = req(srv, "POST", "/console/api/supplier",
                      {"supplier_id": "c-sup", "event_mode": True, "event_trust": 0.25},
                      headers=hd)
    assert st == 200, j
    assert [n["node"] for n in j["nodes"]] == ["console-http"]
    assert j["nodes"][0]["result"]["effective"] == 0.25
    st, _, j, _ = req(srv, "GET", "/console/api/supplier?id=c-sup", headers=hd)
    assert j["nodes"][0]["result"]["event_mode"] is True and j["alerts"] == []
    st, _, j, _ = req(srv, "POST", "/console/api/ack", {"id": aid}, headers=hd)
    assert st == 200
    time.sleep(0.3)  # past the shared result's freshness
    st, _, j, _ = req(srv, "GET", "/console/api/live", headers=hd)
    assert aid not in [a["id"] for a in j["alerts"]]
    c.close()


def test_clients_that_leave(srv):
    """A deferred answer whose client left is dropped; the server goes on."""
    hd = login(srv)
    for path in ("/console/api/live", "/console/api/sku?sku=c-mug"):
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n"
                       % (path, hd["Cookie"])).encode())
            s.close()
    time.sleep(0.3)
    assert srv.alive()
    assert req(srv, "GET", "/console/api/live", headers=hd)[0] == 200


# ---------------------------------------------------------------- flags

def test_public_read_console_token_and_session_cap(pub):
    st, _, j, _ = req(pub, "GET", "/console/api/live")
    assert st == 200 and "alerts" in j
    # Reading is public; acting is not.
    assert req(pub, "POST", "/console/api/release", {"order_id": "x"})[0] == 401
    # The console token signs in, the admin token does not (when both are set).
    assert req(pub, "POST", "/console/api/login", {"token": TOKEN})[0] == 401
    first = login(pub, CTOKEN, "one")
    login(pub, CTOKEN, "two")
    assert req(pub, "GET", "/console/api/session", headers=first)[2]["signed_in"]
    third = login(pub, CTOKEN, "three")   # the cap is 2: "one" ends
    assert req(pub, "GET", "/console/api/session", headers=first)[2]["signed_in"] is False
    assert req(pub, "GET", "/console/api/session", headers=third)[2]["name"] == "three"


def test_failed_sign_ins_are_limited(pub):
    codes = [req(pub, "POST", "/console/api/login", {"token": "guess-%d" % i})[0]
             for i in range(14)]
    assert codes[0] == 401 and 429 in codes, codes
    st, h, _, _ = req(pub, "POST", "/console/api/login", {"token": CTOKEN})
    assert st == 429 and h.get("Retry-After") == "5"


def test_console_token_too_short():
    r = subprocess.run([itestlib.stockd_bin(), "--console-token", "short", "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "console-token must be at least 16 bytes" in r.stderr, r.stderr


# ---------------------------------------------------------------- the RPC methods

def test_alerts_ack_rpc(srv, db):
    aid = add_alert(db, order_id="c-rpc")
    c = srv.client()
    err, _ = c.call("alerts.ack", {"id": aid, "by": "ops"})
    assert err["code"] == "unauthorized"
    for params, field in (({"id": aid, "token": TOKEN}, "by"), ({"by": "x", "token": TOKEN}, "id"),
                          ({"id": 0, "by": "x", "token": TOKEN}, "id"),
                          ({"id": aid, "by": "", "token": TOKEN}, "by"),
                          ({"id": aid, "by": "x" * 65, "token": TOKEN}, "by"),
                          ({"id": aid, "by": "x", "note": "n" * 256, "token": TOKEN}, "note"),
                          ({"id": aid, "by": "x", "extra": 1, "token": TOKEN}, "extra")):
        err, _ = c.call("alerts.ack", params)
        assert err["code"] == "invalid" and err["field"] == field, (params, err)
    err, _ = c.call("alerts.ack", {"id": 10 ** 15, "by": "ops", "token": TOKEN})
    assert err["code"] == "not_found"
    res = c.ok("alerts.ack", {"id": aid, "by": "ops", "note": "called back", "token": TOKEN})
    assert (res["id"], res["acked_by"], res["note"], res["acked_now"]) == (aid, "ops", "called back", True)
    again = c.ok("alerts.ack", {"id": aid, "by": "other", "token": TOKEN})
    assert (again["acked_by"], again["acked_now"], again["acked_at"]) == ("ops", False, res["acked_at"])
    row = db.query("SELECT acked_by, ack_note FROM alerts WHERE id = %s", (aid,))[0]
    as_text = lambda v: v.decode() if isinstance(v, (bytes, bytearray)) else v
    assert (as_text(row["acked_by"]), as_text(row["ack_note"])) == ("ops", "called back")
    c.close()


def test_sku_recheck_rpc(srv):
    c = srv.client()
    err, _ = c.call("sku.recheck", {"sku": "c-mug"})
    assert err["code"] == "unauthorized"
    err, _ = c.call("sku.recheck", {"sku": "c-nothing", "token": TOKEN})
    assert err["code"] == "unknown_sku"
    assert c.ok("sku.recheck", {"sku": "c-mug", "token": TOKEN})["rechecking"] is False
    c.close()


# ---------------------------------------------------------------- a cluster

@pytest.fixture(scope="module")
def pair(make_db, log_dir):
    """Two instances on one MariaDB; the console is on "ca"."""
    db = make_db("pair")
    pa, pb = itestlib.free_port(), itestlib.free_port()
    peers = "ca=127.0.0.1:%d,cb=127.0.0.1:%d" % (pa, pb)
    secret = secrets.token_hex(24)
    hp = itestlib.free_port()
    common = ["--peers", peers, "--cluster-secret", secret, "--admin-token", TOKEN]
    b = itestlib.Stockd(db.url, log_dir, name="cb", args=common, port=pb)
    a = itestlib.Stockd(db.url, log_dir, name="ca", port=pa,
                        args=common + ["--http", "127.0.0.1:%d" % hp])
    a.http_port = hp
    try:
        b.start()
        a.start()
        yield a, b, db
    finally:
        a.stop()
        b.stop()


def test_cluster_actions_go_to_the_owner(pair):
    from test_cluster import Ring
    a, b, db = pair
    ca = a.client()
    ring = Ring.from_reply(ca.ok("cluster.ring", {}))
    sku = next("cb-sku-%d" % i for i in range(1000) if ring.owner("cb-sku-%d" % i) == "cb")
    ca.ok("sku.put", {"sku": sku, "own_on_hand": 4, "token": TOKEN})
    assert ca.ok("reserve", {"order_id": "cl-o1", "sku": sku, "qty": 1})["status"] == "confirmed"
    forwarded = ca.ok("stats", {})["cluster"]["forwarded"]
    # An alert another instance wrote is on this instance's list.
    db.query("INSERT INTO alerts (kind, sku, order_id, reason, at, node) VALUES"
             " ('purchase_failed', %s, 'cl-o1', 'written by cb', %s, 'cb')",
             (sku, int(time.time() * 1000)))
    hd = login(a)
    st, _, j, _ = req(a, "GET", "/console/api/live", headers=hd)
    assert any(x["reason"] == "written by cb" for x in j["alerts"]), j["alerts"]
    # The SKU's figures are the owner's; actions on it go there.
    st, _, j, _ = req(a, "GET", "/console/api/sku?sku=" + sku, headers=hd)
    assert j["stock"]["result"]["own_reserved"] == 1, j
    st, _, j, _ = req(a, "POST", "/console/api/recheck", {"sku": sku}, headers=hd)
    assert st == 200 and j["result"]["sku"] == sku, j
    st, _, j, _ = req(a, "POST", "/console/api/release", {"order_id": "cl-o1"}, headers=hd)
    assert st == 200 and j["result"]["status"] == "released", j
    assert ca.ok("stats", {})["cluster"]["forwarded"] >= forwarded + 3
    cb = b.client()
    assert cb.ok("order.get", {"order_id": "cl-o1"})["status"] == "released"
    # Trust is per instance: the console sets it on both.
    st, _, j, _ = req(a, "POST", "/console/api/supplier",
                      {"supplier_id": "cl-sup", "event_mode": True}, headers=hd)
    assert st == 200 and sorted(n["node"] for n in j["nodes"]) == ["ca", "cb"], j
    assert cb.ok("supplier.get", {"supplier_id": "cl-sup"})["event_mode"] is True
    st, _, j, _ = req(a, "GET", "/console/api/supplier?id=cl-sup", headers=hd)
    assert [n["result"]["event_mode"] for n in j["nodes"]] == [True, True], j
    ca.close()
    cb.close()
