"""Protocol vectors replay.

Goal: the byte-exact request/response vectors in
proto/vectors/vectors.json pass against a fresh stockd.

Method: a stockd started with --node vec-node on an empty database; each
vector is sent on its own connection (the "setup_" ones first, once more, for
the state later vectors need) and the reply must equal response_hex
byte for byte, with nothing else following; a vector with response_hex ""
(a notification) must get no reply within 300 ms, and the connection must
still answer a ping afterwards. Vectors whose response has not been
recorded yet (null) are skipped, saying so; record them with
`tools/record-vectors --start`.
"""
import json
import os
import socket
import time

import pytest

from itestlib import HOST, ROOT

PATH = os.path.join(ROOT, "proto", "vectors", "vectors.json")
with open(PATH) as f:
    VECTORS = json.load(f)
PING = next(v for v in VECTORS if v["name"] == "ping")


@pytest.fixture(scope="module")
def vec(make_stockd):
    s = make_stockd(name="vec-node")
    # State other vectors need (e.g. a SKU for the lines vectors): applied
    # first, so any subset (-k) replays as recorded; each is idempotent and
    # also checked byte for byte as a vector of its own.
    for v in VECTORS:
        if v["name"].startswith("setup_") and v["response_hex"]:
            c = socket.create_connection((HOST, s.port), timeout=5)
            try:
                c.sendall(bytes.fromhex(v["request_hex"]))
                want = bytes.fromhex(v["response_hex"])
                assert read_exact(c, len(want), 5) == want, v["name"]
            finally:
                c.close()
    return s


def read_exact(s, n, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = s.recv(n - len(buf))
        except socket.timeout:
            break
        if not d:
            break
        buf += d
    return buf


def silent(s, seconds):
    s.settimeout(seconds)
    try:
        d = s.recv(1)
        return d == b""   # closed counts as "nothing more sent"
    except socket.timeout:
        return True


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vec, v):
    if v["response_hex"] is None:
        pytest.skip("response for %r not recorded yet: run tools/record-vectors --start"
                    % v["name"])
    want = bytes.fromhex(v["response_hex"])
    s = socket.create_connection((HOST, vec.port), timeout=5)
    try:
        s.sendall(bytes.fromhex(v["request_hex"]))
        if not want:
            assert silent(s, 0.3), "%s: got a reply, expected none" % v["name"]
            if PING["response_hex"]:
                s.sendall(bytes.fromhex(PING["request_hex"]))
                got = read_exact(s, len(bytes.fromhex(PING["response_hex"])), 5)
                assert got.hex() == PING["response_hex"], got.hex()
            return
        got = read_exact(s, len(want), 5)
        assert got.hex() == want.hex(), "%s (%s):\n want %s\n  got %s" % (
            v["name"], v["note"], want.hex(), got.hex())
        assert silent(s, 0.1), "%s: extra bytes after the reply" % v["name"]
    finally:
        s.close()
