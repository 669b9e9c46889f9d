"""Bad input and resource limits.

Goal: truncated and random bytes, a msgpack array
header claiming 4 billion elements, 1,000-deep nesting, wrong types,
negative/huge/float qty, a 65-byte order_id, an unknown method, a 10 MB
frame, 5,000 idle connections: stockd answers or closes as specified, keeps
serving well-behaved clients, and its RSS stays bounded.

Method: each case runs on its own connection against one stockd
(--max-connections 6000). "As specified" (proto/PROTOCOL.md): malformed
msgpack, or a frame whose msgid cannot be read, closes the connection; a
message with a readable msgid but a bad shape gets an error reply; bad
fields get `invalid` naming the field; an over-long frame gets `too_large`
(when its msgid is readable) and the connection is closed. After every case
a canary connection opened at the start and a fresh connection must both get
ping answers, stockd must be alive, and VmRSS must stay under 300 MB.
Separate small instances check --max-connections refusal and
--idle-timeout-ms. Bounded: every read has a timeout.
"""
import random
import resource
import socket
import struct
import threading
import time

import msgpack
import pytest

from stockrpc import Rpc, RpcClosed, RpcTimeout, pack, request_bytes
from itestlib import HOST, wait_until

RSS_LIMIT_KB = 300 * 1024


@pytest.fixture(scope="module")
def bad(make_stockd, db):
    s = make_stockd(args=["--max-connections", "6000"], db=db, name="itest-bad")
    with s.client() as c:
        c.ok("sku.put", {"sku": "bad-1", "own_on_hand": 100})
    return s


@pytest.fixture(scope="module")
def canary(bad):
    c = bad.client(timeout=5)
    yield c
    c.close()


def healthy(s, canary):
    assert s.alive(), "stockd died"
    r = canary.ok("ping", {}, timeout=5)
    assert r["node"] == s.name, r
    with s.client(timeout=5) as c:
        st = c.ok("stock.get", {"sku": "bad-1"}, timeout=5)
        assert st["own_on_hand"] == 100, st
    rss = s.rss_kb()
    assert rss < RSS_LIMIT_KB, "stockd RSS %d kB over %d kB" % (rss, RSS_LIMIT_KB)


def raw_conn(s, timeout=5):
    return Rpc(HOST, s.port, timeout)


def expect_closed(c, timeout=5):
    """The connection must be closed by stockd; returns messages seen before."""
    try:
        return c.recv_until_closed(timeout)
    except RpcTimeout:
        raise AssertionError("stockd kept the connection open")


def expect_error_reply(c, msgid, code=None, field=None, timeout=5):
    err, res = c.wait(msgid, timeout)
    assert err is not None and res is None, (err, res)
    assert list(err)[:3] == ["code", "message", "retryable"], err
    if code:
        assert err["code"] == code, err
    if field:
        assert err.get("field") == field, err
    return err


# --------------------------------------------------------- malformed bytes
CLOSERS = {
    "never_used_byte_c1": b"\xc1",
    "array32_4e9": b"\xdd\xff\xff\xff\xff" + b"\x00" * 16,
    "array32_4e9_alone": b"\xdd\xee\x6b\x28\x00",
    "map32_4e9": b"\xdf\xff\xff\xff\xff",
    "str32_4g": b"\xdb\xff\xff\xff\xff",
    "bin32_4g": b"\xc6\xff\xff\xff\xff",
    "nesting_1000": b"\x91" * 1000 + b"\xc0",
}


@pytest.mark.parametrize("name", sorted(CLOSERS))
def test_malformed_closes(bad, canary, name):
    with raw_conn(bad) as c:
        c.send_raw(CLOSERS[name])
        seen = expect_closed(c)
        for m in seen:   # anything said before closing must be an error
            assert m[0] == 1 and m[2] is not None, m
    healthy(bad, canary)


def test_nesting_inside_request(bad, canary):
    """1,000-deep nesting inside a request whose msgid is readable: an error
    reply for msgid 1 or a close, never a crash or a success."""
    frame = b"\x94\x00\x01\xa4ping\x91\x81\xa1x" + b"\x91" * 1000 + b"\xc0"
    with raw_conn(bad) as c:
        c.send_raw(frame)
        try:
            err, res = c.wait(1, 5)
            assert err is not None, res
        except RpcClosed:
            pass
    healthy(bad, canary)


def test_truncated_is_buffered_then_completed(bad, canary):
    frame = request_bytes(5, "ping", {})
    with raw_conn(bad) as c:
        c.send_raw(frame[:-1])
        with pytest.raises(RpcTimeout):
            c.wait(5, 0.5)
        c.send_raw(frame[-1:])
        err, res = c.wait(5, 5)
        assert err is None and res["node"] == bad.name, (err, res)
    healthy(bad, canary)


@pytest.mark.parametrize("cut", [1, 3, 7, 12])
def test_truncated_then_eof(bad, canary, cut):
    frame = request_bytes(6, "stock.get", {"sku": "bad-1"})
    with raw_conn(bad) as c:
        c.send_raw(frame[:cut])
        c.sock.shutdown(socket.SHUT_WR)
        seen = expect_closed(c)
        assert all(m[2] is not None for m in seen if m and m[0] == 1), seen
    healthy(bad, canary)


def test_random_bytes(bad, canary):
    r = random.Random(7)
    for i in range(60):
        blob = bytes(r.getrandbits(8) for _ in range(r.randint(1, 300)))
        with raw_conn(bad) as c:
            try:
                c.send_raw(blob)
                c.sock.shutdown(socket.SHUT_WR)
                seen = expect_closed(c)
            except (BrokenPipeError, ConnectionResetError):
                seen = []
            for m in seen:
                assert isinstance(m, list) and m[0] == 1 and m[2] is not None, (i, m)
    healthy(bad, canary)


def test_garbage_after_good_request(bad, canary):
    """A good request followed by garbage: the good one is answered, then
    the connection is closed."""
    with raw_conn(bad) as c:
        c.send_raw(request_bytes(9, "ping", {}) + b"\xc1\xc1\xc1")
        seen = expect_closed(c)
        assert any(m[1] == 9 and m[2] is None for m in seen), seen
    healthy(bad, canary)


# --------------------------------------------------------- bad shapes
SHAPES = {
    "method_not_str": ([0, 1, 5, [{}]], None),
    "params_map": ([0, 1, "ping", {}], "params"),
    "params_empty": ([0, 1, "ping", []], "params"),
    "params_two_maps": ([0, 1, "ping", [{}, {}]], "params"),
    "params_int": ([0, 1, "ping", [1]], "params"),
    "params_nil": ([0, 1, "ping", None], "params"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_bad_shape_gets_error_reply(bad, canary, name):
    msg, field = SHAPES[name]
    with raw_conn(bad) as c:
        c.send_raw(pack(msg))
        err = expect_error_reply(c, 1, code="invalid", field=field)
        assert err["retryable"] is False, err
        # The connection stays usable after a well-formed bad message.
        assert c.ok("ping", {}, timeout=5)["node"] == bad.name
    healthy(bad, canary)


@pytest.mark.parametrize("msg", [[0, -1, "ping", [{}]], [0, 2**32, "ping", [{}]],
                                 [0, "1", "ping", [{}]], [3, 1, "ping", [{}]],
                                 [1, 1, None, {}], [0, 1.0, "ping", [{}]],
                                 "ping", 7, []])
def test_unreadable_msgid_or_type(bad, canary, msg):
    """Not a 4-element request with a uint32 msgid (or not an array at all):
    close, an error reply, or silence; never a success, never a crash."""
    with raw_conn(bad) as c:
        c.send_raw(pack(msg))
        try:
            m = c.read_any(2)
            assert m[0] == 1 and m[2] is not None, m
        except (RpcClosed, RpcTimeout):
            pass
    healthy(bad, canary)


@pytest.mark.parametrize("msg,field", [([0, 1, "ping"], "message"),
                                       ([0, 1, "ping", [{}], 5], "message"),
                                       ([0, 1, 5, [{}]], "method")])
def test_request_shape_with_readable_msgid(bad, canary, msg, field):
    """A request-like array with a readable msgid but the wrong shape gets an
    `invalid` reply naming what is wrong, and the connection stays open."""
    with raw_conn(bad) as c:
        c.send_raw(pack(msg))
        expect_error_reply(c, 1, code="invalid", field=field)
        assert c.ok("ping", {}, timeout=5)["node"] == bad.name
    healthy(bad, canary)


def test_int_map_key(bad, canary):
    with raw_conn(bad) as c:
        c.send_raw(pack([0, 1, "ping", [{1: 2}]]))
        expect_error_reply(c, 1, code="invalid")
    healthy(bad, canary)


# --------------------------------------------------------- bad fields
R = {"order_id": "bad-ok", "sku": "bad-1", "qty": 1}


def with_(base, **kw):
    p = dict(base)
    for k, v in kw.items():
        if v is _DROP:
            p.pop(k)
        else:
            p[k] = v
    return p


_DROP = object()

FIELDS = [
    ("reserve", with_(R, order_id=5), "order_id"),
    ("reserve", with_(R, order_id=""), "order_id"),
    ("reserve", with_(R, order_id="a" * 65), "order_id"),
    ("reserve", with_(R, order_id="a b"), "order_id"),
    ("reserve", with_(R, order_id="caf\u00e9"), "order_id"),
    ("reserve", with_(R, order_id="x/y"), "order_id"),
    ("reserve", with_(R, order_id=b"binary"), "order_id"),
    ("reserve", with_(R, order_id=_DROP), "order_id"),
    ("reserve", with_(R, sku=""), "sku"),
    ("reserve", with_(R, sku="s" * 65), "sku"),
    ("reserve", with_(R, sku=7), "sku"),
    ("reserve", with_(R, sku=_DROP), "sku"),
    ("reserve", with_(R, qty=-1), "qty"),
    ("reserve", with_(R, qty=0), "qty"),
    ("reserve", with_(R, qty=1000001), "qty"),
    ("reserve", with_(R, qty=2**31), "qty"),
    ("reserve", with_(R, qty=2**63 - 1), "qty"),
    ("reserve", with_(R, qty=2**64 - 1), "qty"),
    ("reserve", with_(R, qty=-2**63), "qty"),
    ("reserve", with_(R, qty=1.0), "qty"),
    ("reserve", with_(R, qty=1.5), "qty"),
    ("reserve", with_(R, qty="1"), "qty"),
    ("reserve", with_(R, qty=True), "qty"),
    ("reserve", with_(R, qty=None), "qty"),
    ("reserve", with_(R, qty=[1]), "qty"),
    ("reserve", with_(R, qty=_DROP), "qty"),
    ("reserve", with_(R, hold_ms=999), "hold_ms"),
    ("reserve", with_(R, hold_ms="1000"), "hold_ms"),
    ("reserve", with_(R, deadline_ms=-1), "deadline_ms"),
    ("reserve", with_(R, deadline_ms="x"), "deadline_ms"),
    ("reserve", with_(R, colour="red"), "colour"),
    ("confirm", {"order_id": 5}, "order_id"),
    ("confirm", {}, "order_id"),
    ("release", {"order_id": "a" * 65}, "order_id"),
    ("ship", {"order_id": "a b"}, "order_id"),
    # "sku" is a routing hint on order methods (sharding); it must still be a string.
    ("order.get", {"order_id": "x", "sku": 7}, "sku"),
    ("order.get", {"order_id": "x", "qty": 1}, "qty"),
    ("stock.get", {"sku": 5}, "sku"),
    ("stock.get", {}, "sku"),
    ("sku.put", {"sku": "bad-2", "own_on_hand": -1}, "own_on_hand"),
    ("sku.put", {"sku": "bad-2", "own_on_hand": "3"}, "own_on_hand"),
    ("sku.put", {"sku": "bad-2", "own_on_hand": 1.5}, "own_on_hand"),
    ("sku.put", {"sku": "bad-2", "supplier_reported": -5}, "supplier_reported"),
    ("stock.adjust", {"sku": "bad-1", "delta": "1", "reason": "x"}, "delta"),
    ("stock.adjust", {"sku": "bad-1", "delta": 1}, "reason"),
    ("stock.adjust", {"sku": "bad-1", "delta": 1, "reason": 5}, "reason"),
    ("ping", {"x": 1}, "x"),
]


def test_bad_fields(bad, canary, db):
    wrong = []
    with bad.client(timeout=5) as c:
        ids = [(m, p, f, c.send(m, p)) for m, p, f in FIELDS]
        for m, p, f, i in ids:
            err, res = c.wait(i)
            if (err is None or err.get("code") != "invalid" or err.get("field") != f
                    or err.get("retryable") is not False):
                wrong.append((m, p if len(repr(p)) < 120 else "...", f, err, res))
        # Invalid UTF-8 in a str-typed sku (hand-packed: msgpack refuses to).
        bad_utf8 = (b"\x94\x00\xcd\x27\x10\xa9stock.get\x91\x81\xa3sku\xa2\xff\xfe")
        c.send_raw(bad_utf8)
        err, res = c.wait(10000)
        if err is None or err.get("code") != "invalid" or err.get("field") != "sku":
            wrong.append(("stock.get", "sku=<ff fe>", "sku", err, res))
        # Exactly 64 bytes is fine.
        ok = c.ok("reserve", {"order_id": "b" * 64, "sku": "bad-1", "qty": 1})
        assert ok["order_id"] == "b" * 64
        ok = c.ok("reserve", {"order_id": "Az09._:-", "sku": "bad-1", "qty": 1})
        assert ok["status"] == "confirmed"
    assert not wrong, "not `invalid` with the field named:\n" + "\n".join(map(repr, wrong))
    assert db.order("bad-ok") is None, "an invalid reserve left a row"
    assert db.sku("bad-2") is None, "an invalid sku.put created a SKU"
    healthy(bad, canary)


# --------------------------------------------------------- bad lines
L = {"order_id": "bad-lines", "lines": [{"sku": "bad-1", "qty": 1}]}
LINE = {"sku": "bad-1", "qty": 1}

LINES_FIELDS = [
    # (params, field, words the message must contain)
    (with_(L, lines=[]), "lines", "empty"),
    (with_(L, order_id="o" * 62), "order_id", "61 bytes"),
    (with_(L, lines=[LINE] * 51), "lines", "50"),
    (with_(L, lines=LINE), "lines", "array"),
    (with_(L, lines="bad-1"), "lines", "array"),
    (with_(L, lines=None), "lines", "array"),
    (with_(L, lines=[LINE, 5]), "lines[1]", "map"),
    (with_(L, lines=[LINE, [1, 2]]), "lines[1]", "map"),
    (with_(L, lines=[{"sku": "bad-1"}]), "lines[0].qty", "required"),
    (with_(L, lines=[LINE, LINE, {"qty": 1}]), "lines[2].sku", "required"),
    (with_(L, lines=[{"sku": "bad-1", "qty": 1, "colour": "red"}]), "lines[0]", "unknown"),
    (with_(L, lines=[{"sku": "bad-1", "qty": 1, 7: 1}]), "lines[0]", "unknown"),
    (with_(L, lines=[{}]), "lines[0].sku", "required"),
    (with_(L, lines=[{"sku": "", "qty": 1}]), "lines[0].sku", "empty"),
    (with_(L, lines=[{"sku": "s" * 65, "qty": 1}]), "lines[0].sku", "long"),
    (with_(L, lines=[{"sku": 5, "qty": 1}]), "lines[0].sku", "string"),
    (with_(L, lines=[LINE, LINE, LINE, {"sku": "bad-1", "qty": 0}]), "lines[3].qty", "range"),
    (with_(L, lines=[{"sku": "bad-1", "qty": -1}]), "lines[0].qty", "range"),
    (with_(L, lines=[{"sku": "bad-1", "qty": 1000001}]), "lines[0].qty", "range"),
    (with_(L, lines=[{"sku": "bad-1", "qty": 1.0}]), "lines[0].qty", "integer"),
    (with_(L, lines=[{"sku": "bad-1", "qty": "1"}]), "lines[0].qty", "integer"),
    # Lines of one SKU are summed: the sum obeys the qty limit too.
    (with_(L, lines=[{"sku": "bad-1", "qty": 600000}, {"sku": "bad-1", "qty": 400001}]),
     "lines[1].qty", "add up"),
    (with_(L, sku="bad-1", qty=1), "lines", "not both"),
    (with_(L, sku="bad-1"), "lines", "not both"),
    (with_(L, qty=1), "lines", "not both"),
    (with_(L, lines=_DROP), "sku", "lines"),
    (with_(L, lines="x", sku="bad-1"), "lines", "array"),
]
# Fields only a peer that proved the cluster secret may send: from a client
# they are unauthorized, named, whatever else the request holds (the range
# checks a peer's values get are unit tests: tests/unit/test_rpc_parse.c).
PEER_ONLY_FIELDS = [
    ("reserve", with_(L, part_lines=2, line_no=0), "part_lines"),
    ("reserve", with_(R, part_lines=2, line_no=1), "part_lines"),
    ("reserve", with_(R, line_no=0), "line_no"),
    ("confirm", {"order_id": "bad-ok", "decided": True}, "decided"),
    ("confirm", {"order_id": "bad-ok", "part_lines": 2, "line_no": 0}, "part_lines"),
    ("release", {"order_id": "bad-ok", "line_no": 0}, "line_no"),
    ("ship", {"order_id": "bad-ok", "part_lines": 3, "line_no": 2}, "part_lines"),
    ("order.get", {"order_id": "bad-ok", "part_lines": 2, "line_no": 1}, "part_lines"),
    ("release", {"order_id": "bad-ok", "decided": True}, "decided"),
    ("stock.get", {"sku": "bad-1", "part_lines": 2, "line_no": 0}, "part_lines"),
    # "_fwd" proves nothing: any client can write it.
    ("reserve", with_(R, _fwd=1, part_lines=1, line_no=0), "_fwd"),
    ("reserve", with_(R, _fwd=1), "_fwd"),
    ("ping", {"_fwd": 1}, "_fwd"),
    ("stats", {"_fwd": 1}, "_fwd"),
    ("sku.put", {"sku": "bad-2", "own_on_hand": 5, "_fwd": 7}, "_fwd"),
    ("reserve", with_(L, _fwd=1, part_lines=2, line_no=0), "_fwd"),
    ("confirm", {"order_id": "bad-ok", "_fwd": 1, "part_lines": 2, "line_no": 0,
                 "decided": 1}, "_fwd"),
    ("release", {"order_id": "bad-ok", "as_failed": True, "reason": "x"}, "as_failed"),
    ("release", {"order_id": "bad-ok", "reason": "x"}, "reason"),
    ("order.subscribe", {"update": {"order_id": "bad-ok", "status": "failed"}}, "update"),
    # Malformed besides: still unauthorized, so probing teaches nothing.
    ("reserve", {"order_id": "", "sku": 5, "part_lines": "x"}, "part_lines"),
]


def test_bad_lines(bad, canary, db):
    """reserve with lines: every malformed cart is `invalid` naming the
    exact field ("lines[3].qty"), nothing is written, the connection stays
    usable; peer-only fields from a client are unauthorized, naming the
    field, and change nothing."""
    wrong = []
    with bad.client(timeout=5) as c:
        ids = [("reserve", p, f, w, c.send("reserve", p)) for p, f, w in LINES_FIELDS]
        for m, p, f, words, i in ids:
            err, res = c.wait(i)
            if (err is None or err.get("code") != "invalid" or err.get("field") != f
                    or err.get("retryable") is not False
                    or words.lower() not in err.get("message", "").lower()
                    or not err.get("message", "").startswith(f + ":")):
                wrong.append((m, p if len(repr(p)) < 160 else "...", f, words, err, res))
        ids = [(m, p, f, c.send(m, p)) for m, p, f in PEER_ONLY_FIELDS]
        for m, p, f, i in ids:
            err, res = c.wait(i)
            if (err is None or err.get("code") != "unauthorized" or err.get("field") != f
                    or err.get("retryable") is not False
                    or "peer" not in err.get("message", "")):
                wrong.append((m, p if len(repr(p)) < 160 else "...", f, err, res))
        # 50 lines is fine (the limit), and so is a one-line cart.
        ok = c.ok("reserve", {"order_id": "bad-lines-50",
                              "lines": [{"sku": "bad-1", "qty": 1}] * 50})
        assert ok["qty"] == 50 and ok["sku"] == "bad-1", ok
        assert c.ok("release", {"order_id": "bad-lines-50"})["status"] == "released"
        assert c.ok("ping", {}, timeout=5)["node"] == bad.name
    assert not wrong, "not `invalid`/`unauthorized` with the field named:\n" + "\n".join(
        map(repr, wrong))
    assert db.order("bad-lines") is None, "an invalid reserve with lines left a row"
    assert db.sku("bad-2") is None, "a forwarded-looking sku.put from a client created a SKU"
    assert db.order("bad-ok") is None, "an invalid reserve left a row"
    healthy(bad, canary)


def test_bad_lines_unknown_sku(bad, canary, db):
    """A cart naming an unknown SKU: unknown_sku with the line and its SKU,
    nothing held on the known line."""
    with bad.client(timeout=5) as c:
        before = c.ok("stock.get", {"sku": "bad-1"})["available"]
        err = c.err("reserve", {"order_id": "bad-lines-unk",
                                "lines": [{"sku": "bad-1", "qty": 1},
                                          {"sku": "bad-nope", "qty": 1}]})
        assert err["code"] == "unknown_sku" and err["retryable"] is False, err
        assert err.get("line") == 1 and err.get("sku") == "bad-nope", err
        err = c.err("reserve", {"order_id": "bad-lines-ins",
                                "lines": [{"sku": "bad-1", "qty": 1},
                                          {"sku": "bad-1", "qty": 999999}]})
        assert err["code"] == "insufficient", err
        assert err.get("line") == 0 and err.get("sku") == "bad-1", err
        assert err.get("available") == before, err
        assert c.ok("stock.get", {"sku": "bad-1"})["available"] == before
    assert db.order("bad-lines-unk") is None and db.order("bad-lines-ins") is None
    healthy(bad, canary)


def test_unknown_method(bad, canary):
    with bad.client(timeout=5) as c:
        for name in ("nope", "", "x" * 300, "Ping", "ping "):
            e = c.err(name, {})
            assert e["code"] == "unknown_method" and e["retryable"] is False, (name, e)
            # The echo may be cut to a bounded length, never changed.
            m = e.get("method")
            assert isinstance(m, str) and name.startswith(m), (name, e)
            assert m == name or len(m) >= 64, (name, e)
    healthy(bad, canary)


# --------------------------------------------------------- size limits
def test_too_large_header_only(bad, canary):
    """A request whose str header alone exceeds the 64 KiB default: the msgid
    is readable, so `too_large` for that msgid, then the connection closes."""
    frame = b"\x94\x00\x08\xa4ping\x91\x81\xa1x" + b"\xdb" + struct.pack(">I", 1 << 20)
    with raw_conn(bad) as c:
        c.send_raw(frame)
        seen = expect_closed(c)
        errs = [m for m in seen if m[0] == 1 and m[1] == 8]
        assert errs and errs[0][2]["code"] == "too_large", seen
        assert errs[0][3] is None
    healthy(bad, canary)


def test_ten_megabyte_frame(bad, canary):
    """10 MB in one request: `too_large` for msgid 7 (if it can still be read
    before the close) and the connection closed; RSS stays bounded."""
    frame = pack([0, 7, "ping", [{"x": "A" * (10 * 1024 * 1024)}]])
    rss0 = bad.rss_kb()
    with raw_conn(bad, timeout=10) as c:
        sent = []

        def writer():
            try:
                c.sock.sendall(frame)
                sent.append(True)
            except OSError:
                sent.append(False)
        t = threading.Thread(target=writer)
        t.start()
        try:
            seen = expect_closed(c, timeout=15)
        except (ConnectionResetError, OSError):
            seen = []
        t.join(15)
        assert not t.is_alive(), "sender stuck: stockd neither read nor closed"
        for m in seen:
            assert m[0] == 1 and m[1] == 7 and m[2]["code"] == "too_large", m
    assert bad.rss_kb() - rss0 < 64 * 1024, "RSS grew by more than 64 MB for a 10 MB frame"
    healthy(bad, canary)


def test_pipelined_within_limits(bad, canary):
    with bad.client(timeout=10) as c:
        ids = [c.send("ping", {}) for _ in range(500)]
        for i in reversed(ids):
            assert c.wait(i)[0] is None
    healthy(bad, canary)


# --------------------------------------------------------- connections
def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def test_5000_idle_connections(bad, canary):
    if raise_nofile(5600) < 5600:
        pytest.skip("RLIMIT_NOFILE hard limit below 5600 in the test process")
    socks = []
    t0 = time.monotonic()
    try:
        for i in range(5000):
            s = socket.create_connection((HOST, bad.port), timeout=10)
            socks.append(s)
            assert time.monotonic() - t0 < 60, "opening 5000 connections took > 60 s"
        # They were accepted (not left in the backlog): a sample answers.
        for s in socks[::100]:
            s.sendall(request_bytes(77, "ping", {}))
        for s in socks[::100]:
            u = msgpack.Unpacker(raw=False)
            while True:
                d = s.recv(4096)
                assert d, "idle connection closed before the idle timeout"
                u.feed(d)
                msgs = list(u)
                if msgs:
                    assert msgs[0][1] == 77 and msgs[0][2] is None, msgs
                    break
        healthy(bad, canary)
        print("5000 idle connections: RSS %d kB" % bad.rss_kb())
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    healthy(bad, canary)


def test_max_connections_refused_cleanly(make_stockd):
    s = make_stockd(args=["--max-connections", "10"], name="itest-maxconn")
    conns = [s.client(timeout=5) for _ in range(10)]
    try:
        # Wait until stockd has accepted the readiness probe's close etc.
        for c in conns:
            c.ok("ping", {})
        extra = s.client(timeout=5)
        try:
            err, res = extra.call("ping", {}, timeout=5)
            assert err is not None, "11th connection served beyond --max-connections 10"
        except RpcClosed:
            pass
        except RpcTimeout:
            raise AssertionError("11th connection neither served nor closed (left hanging)")
        finally:
            extra.close()
        for c in conns:
            c.ok("ping", {})
        conns.pop().close()

        def fresh_ok():
            try:
                with s.client(timeout=2) as c:
                    return c.call("ping", {}, timeout=2)[0] is None
            except (RpcClosed, RpcTimeout, OSError):
                return False
        wait_until(fresh_ok, 5, 0.1, "a slot to free up after a close")
    finally:
        for c in conns:
            c.close()


def test_idle_timeout(make_stockd):
    s = make_stockd(args=["--idle-timeout-ms", "500"], name="itest-idle")
    idle = s.client(timeout=5)
    busy = s.client(timeout=5)
    try:
        idle.ok("ping", {})
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            busy.ok("ping", {})
            time.sleep(0.1)
        expect_closed(idle, timeout=3)
        assert busy.ok("ping", {})["node"] == s.name
    finally:
        idle.close()
        busy.close()
