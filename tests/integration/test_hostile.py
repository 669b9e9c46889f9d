"""A hostile client against one stockd (and a small cluster): every attack
here was tried on a stockd that believed any client, and each test asserts
the bounded outcome now (../shared/DESIGN.md, trust boundaries):

- peer-only fields (forwarded requests, cart parts, decisions, cascades,
  order updates) from a connection that did not prove the cluster secret
  are `unauthorized` and change nothing: no hold, no row, no notification;
  whatever the probes left, a restart starts;
- a wrong cluster secret fails closed: no forwarded call is ever sent;
- idle HTTP connections cannot take the client port's descriptors;
- clients that pipeline and never read cannot grow memory past the total
  output cap, and a well-behaved client is answered meanwhile;
- a large frame dribbled in 1 KiB pieces costs CPU linear in its size.

Bounded: every server is started by the fixtures and stopped by pid; every
wait has a timeout.
"""
import os
import resource
import socket
import struct
import subprocess
import time

import msgpack
import pytest

import itestlib
from itestlib import HOST
from stockrpc import RpcClosed, RpcTimeout, peer_handshake, peer_key_id, peer_mac

FORGED_PART = {"order_id": "forged-part", "sku": "hoodie", "qty": 2, "_fwd": 1,
               "part_lines": 2, "line_no": 0, "hold_ms": 600000}


def asan_build():
    """The ASan build is several times slower: CPU bounds are relative there."""
    out = subprocess.run(["ldd", itestlib.stockd_bin()], stdout=subprocess.PIPE, text=True)
    return "libasan" in out.stdout


@pytest.fixture(scope="module")
def one(make_stockd):
    s = make_stockd(name="itest-hostile")
    with s.client() as c:
        c.ok("sku.put", {"sku": "hoodie", "own_on_hand": 2})
    return s


def unauthorized(c, method, params, field):
    err = c.err(method, params)
    assert err["code"] == "unauthorized" and err["retryable"] is False, err
    assert err["field"] == field, err
    return err


# ------------------------------------------------------------ forged peer traffic
def test_forged_part_reserve_holds_nothing(one):
    """A client's cart part with a 10-minute hold: refused; the stock stays
    on sale and nobody needs to release anything."""
    with one.client() as c:
        unauthorized(c, "reserve", FORGED_PART, "_fwd")
        unauthorized(c, "reserve", {k: v for k, v in FORGED_PART.items() if k != "_fwd"},
                     "part_lines")
        assert c.ok("stock.get", {"sku": "hoodie"})["available"] == 2
        assert c.err("order.get", {"order_id": "forged-part"})["code"] == "not_found"
        assert c.err("release", {"order_id": "forged-part"})["code"] == "not_found"
        # The real thing still works: two buyers, two hoodies.
        assert c.ok("reserve", {"order_id": "real-1", "sku": "hoodie", "qty": 1})[
            "status"] == "confirmed"
        assert c.ok("release", {"order_id": "real-1"})["status"] == "released"
    assert one.db.order("forged-part") is None


def test_forged_part_then_restart_starts(one):
    """The same forgery with a 1 s hold, then a restart once it would have
    lapsed: stockd starts (it used to abort at every start)."""
    with one.client() as c:
        p = dict(FORGED_PART, order_id="forged-short", hold_ms=1000)
        unauthorized(c, "reserve", p, "_fwd")
    time.sleep(1.2)
    one.restart(kill=True)
    with one.client() as c:
        assert c.ok("ping", {})["node"] == one.name
        assert c.ok("stock.get", {"sku": "hoodie"})["available"] == 2


def test_forged_confirm_and_release_change_nothing(one):
    with one.client() as c:
        held = c.ok("reserve", {"order_id": "held-1", "sku": "hoodie", "qty": 1,
                                "hold_ms": 60000})
        assert held["status"] == "held"
        unauthorized(c, "confirm", {"order_id": "held-1", "_fwd": 1, "decided": True}, "_fwd")
        unauthorized(c, "confirm", {"order_id": "held-1", "decided": True}, "decided")
        unauthorized(c, "release", {"order_id": "held-1", "as_failed": True,
                                    "reason": "forged"}, "as_failed")
        unauthorized(c, "ship", {"order_id": "held-1", "part_lines": 2, "line_no": 1},
                     "part_lines")
        o = c.ok("order.get", {"order_id": "held-1"})
        assert o["status"] == "held" and "reason" not in o, o
        assert c.ok("release", {"order_id": "held-1"})["status"] == "released"


def test_forged_update_reaches_no_listener(one):
    """A client's order.subscribe {update}: refused, and no listener hears
    of the forged order."""
    with one.client() as listener, one.client() as c:
        assert listener.ok("order.subscribe", {}) == {"subscribed": True}
        rec = {"order_id": "forged-upd", "sku": "hoodie", "qty": 1, "status": "failed",
               "reason": "your order was cancelled"}
        unauthorized(c, "order.subscribe", {"_fwd": 1, "update": rec}, "_fwd")
        unauthorized(c, "order.subscribe", {"update": rec}, "update")
        assert listener.next_order_update(timeout=0.5) is None
        assert listener.ok("ping", {})["node"] == one.name


def test_handshake_on_a_single_node_is_refused(one):
    """A node without --peers trusts no peer, whatever it proves."""
    with one.client() as c:
        err = c.err("peer.hello", {"node": "n1", "nonce": os.urandom(32),
                                   "keys": [peer_key_id("x" * 32)]})
        assert err["code"] == "unauthorized", err
        err = c.err("peer.auth", {"mac": os.urandom(32)})
        assert err["code"] == "unauthorized", err
        unauthorized(c, "stats", {"_fwd": 1}, "_fwd")


# ------------------------------------------------------------ descriptors
def test_idle_http_connections_leave_the_client_port(make_stockd):
    """stockd at 2,048 descriptors; 3 x 2,048 HTTP connections attempted and
    held idle: the HTTP port keeps to its cap, the client port answers ping
    in under 100 ms throughout, and a connection trickling a request is
    closed at the 10 s whole-request limit."""
    limit = 2048
    http_port = itestlib.free_port()
    s = make_stockd(args=["--max-connections", "1000", "--http", "%s:%d" % (HOST, http_port)],
                    name="itest-hostile-fd", start=False)
    s.nofile = limit
    s.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * limit + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    # A trickler: one header byte every 2 s; evhttp restarted its timeout
    # on every byte, so this held a descriptor for ever.
    trickle = socket.create_connection((HOST, http_port))
    trickle_t0 = time.monotonic()
    trickle.sendall(b"GET /metrics HTTP/1.1\r\n")
    socks, lat = [], []
    with s.client(timeout=5) as c:
        try:
            for i in range(3 * limit):
                try:
                    socks.append(socket.create_connection((HOST, http_port), timeout=2))
                except OSError:
                    pass
                if i % 256 == 0:
                    t0 = time.monotonic()
                    c.ok("ping", {})
                    lat.append(time.monotonic() - t0)
            # and with all of them held: new clients are still served
            for _ in range(20):
                t0 = time.monotonic()
                with s.client(timeout=2) as c2:
                    c2.ok("ping", {})
                lat.append(time.monotonic() - t0)
            fds = s.open_fds()
            print("idle HTTP flood: %d of %d connections opened, stockd holds %d descriptors, ping "
                  "max %.1f ms" % (len(socks), 3 * limit, fds, max(lat) * 1000))
            assert fds < 64 + 200, "stockd holds %d descriptors" % fds
            assert max(lat) < 0.1, "ping took %.1f ms" % (max(lat) * 1000)
            st = c.ok("stats", {})
            assert st["connections"]["current"] >= 1
        finally:
            for k in socks:
                k.close()
    # The trickler: closed within the 10 s whole-request limit (+ slack).
    trickle.settimeout(0.5)
    closed_at = None
    while time.monotonic() - trickle_t0 < 14:
        try:
            trickle.sendall(b"X")
            d = trickle.recv(100)
            if d == b"":
                closed_at = time.monotonic() - trickle_t0
                break
        except socket.timeout:
            continue
        except OSError:
            closed_at = time.monotonic() - trickle_t0
            break
    trickle.close()
    assert closed_at is not None and 9 < closed_at < 13, closed_at


# ------------------------------------------------------------ memory
def test_non_readers_bounded_by_total_output_cap(make_stockd):
    """100 clients pipeline `stats` and never read: RSS grows by at most
    the total output cap + 64 MiB, and a well-behaved client is answered in
    under 10 ms meanwhile (99 of 100 pings; the slowest, when all 100 start
    at once, under 100 ms; 3x both under ASan)."""
    cap = 32 << 20
    s = make_stockd(args=["--max-output-total-bytes", str(cap)], name="itest-hostile-mem")
    with s.client() as c:
        c.ok("stats", {})
    base_kb = s.rss_kb()
    one_req = msgpack.packb([0, 1, "stats", [{}]])
    burst = one_req * 4000
    hogs = []
    for _ in range(100):
        k = socket.socket()
        k.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        k.connect((HOST, s.port))
        k.setblocking(False)
        hogs.append([k, memoryview(burst)])
    lat, outs = [], []
    # Until the cap has been reached and held for 3 s (at most 30 s).
    t_end = time.monotonic() + 30
    capped_at = None
    with s.client(timeout=5) as good:
        while time.monotonic() < t_end:
            for h in hogs:
                if len(h[1]):
                    try:
                        n = h[0].send(h[1][:65536])
                        h[1] = h[1][n:]
                    except BlockingIOError:
                        pass
            t0 = time.monotonic()
            good.ok("ping", {})
            lat.append(time.monotonic() - t0)
            if len(lat) % 20 == 0:
                cs = good.ok("stats", {})["connections"]
                outs.append(cs["output_bytes"])
                if capped_at is None and cs["output_paused"] >= 1:
                    capped_at = time.monotonic()
                    t_end = min(t_end, capped_at + 3)
            time.sleep(0.01)
        st = good.ok("stats", {})["connections"]
    peak_kb = s.rss_kb("VmHWM")
    for h in hogs:
        h[0].close()
    grown = (peak_kb - base_kb) * 1024
    assert st["output_paused"] >= 1, st
    # What the cap bounds, in stockd's own count: at most one more reply
    # per connection past it.
    assert max(outs) <= cap + 100 * 8192, (max(outs), cap)
    if not asan_build():
        # (ASan keeps freed memory in quarantine: its RSS says nothing here.)
        assert grown <= cap + (64 << 20), "RSS grew %d MiB (cap %d MiB)" % (grown >> 20,
                                                                          cap >> 20)
    lat.sort()
    med = lat[len(lat) // 2]
    print("non-readers: RSS +%d MiB (peak), ping median %.2f ms, p99 %.2f ms, max %.2f ms, "
          "%d pings, connections %r" % (grown >> 20, med * 1e3, lat[len(lat) * 99 // 100] * 1e3,
                                        lat[-1] * 1e3, len(lat), st))
    p99 = lat[len(lat) * 99 // 100]
    slow = 3 if asan_build() else 1   # ASan runs stockd about 3x slower
    assert p99 < 0.010 * slow, "p99 ping %.1f ms" % (p99 * 1000)
    assert lat[-1] < 0.100 * slow, "slowest ping %.1f ms" % (lat[-1] * 1000)


# ------------------------------------------------------------ CPU
def _frame_of_small_ints(nbytes):
    """[0, 1, "ping", [[1, 1, ...]]] of about nbytes (params not one map:
    answered invalid, the connection stays)."""
    n = nbytes - 32
    return b"\x94\x00\x01\xa4ping\x91\xdd" + struct.pack(">I", n) + b"\x01" * n


def _send_and_wait(s, frame, piece):
    with s.client(timeout=30) as c:
        c.ok("ping", {})
        before = s.cpu_ns()
        if piece:
            for off in range(0, len(frame), piece):
                c.send_raw(frame[off:off + piece])
                if off % (64 * piece) == 0:
                    time.sleep(0.0005)  # let stockd see small reads, not one big one
        else:
            c.send_raw(frame)
        err, res = c.wait(1, timeout=30)
        assert err is not None and err["code"] == "invalid", err
        used = s.cpu_ns() - before
        assert c.ok("ping", {})
    return used


def test_dribbled_frame_costs_linear_cpu(make_stockd):
    """A 4 MiB frame of small objects in 1 KiB pieces, twice: under 50 ms
    of server CPU each (ASan build: within 3x the cost of the same frame
    sent at once), not seconds."""
    s = make_stockd(args=["--max-message-bytes", str(16 << 20)], name="itest-hostile-cpu")
    frame = _frame_of_small_ints(4 << 20)
    whole = _send_and_wait(s, frame, 0)
    pieces = [_send_and_wait(s, frame, 1024) for _ in range(2)]
    print("4 MiB frame: %.1f ms CPU sent at once, %s ms in 1 KiB pieces" %
          (whole / 1e6, ", ".join("%.1f" % (p / 1e6) for p in pieces)))
    if not asan_build():
        assert max(pieces) < 50e6, "dribbled 4 MiB frame: %.1f ms CPU" % (max(pieces) / 1e6)
    assert max(pieces) < 3 * whole + 20e6, (whole, pieces)


# ------------------------------------------------------------ a cluster with secrets
def test_cluster_peers_need_the_secret(tmp_path, make_db):
    """Two nodes share a secret, a third has another: forwarding between the
    first two works; to and from the third it fails closed (the call is
    never sent: plain `unavailable`, no outcome unknown); a client that
    names itself a peer without the secret is refused."""
    from test_cluster import Cluster, haproxy_present
    if not haproxy_present():
        itestlib.skip_or_fail("haproxy not installed")
    cl = Cluster(str(tmp_path / "cl"), "it_hostile_cl_%d" % os.getpid())
    os.makedirs(cl.dir, exist_ok=True)
    with open(os.path.join(cl.dir, "n3.secret"), "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write("w" * 40 + "\n")
    try:
        cl.up(3)
        secret = cl.secret()
        # SKUs owned by each node, found through the ring.
        ring = cl.ring()
        owned = {}
        for i in range(400):
            sku = "hs-%d" % i
            owned.setdefault(ring.owner(sku), sku)
        assert set(owned) == {"n1", "n2", "n3"}, owned
        with cl.node_client("n1") as c:
            # n1 -> n2 (same secret): a forwarded sku.put works
            st = c.ok("sku.put", {"sku": owned["n2"], "own_on_hand": 5})
            assert st["own_on_hand"] == 5
            # n1 -> n3 (another secret): never sent, plain unavailable
            err = c.err("sku.put", {"sku": owned["n3"], "own_on_hand": 5})
            assert err["code"] == "unavailable" and err.get("owner") == "n3", err
            assert "outcome" not in err, err
        with cl.node_client("n3") as c:
            err = c.err("stock.get", {"sku": owned["n1"]})
            assert err["code"] == "unavailable" and "outcome" not in err, err
        # A client with the wrong secret: refused at peer.hello or peer.auth,
        # and the connection is closed after a wrong proof.
        with cl.node_client("n1") as c:
            with pytest.raises(AssertionError):
                peer_handshake(c, "n2", ["z" * 40])
        with cl.node_client("n1") as c:
            na = os.urandom(32)
            res = c.ok("peer.hello", {"node": "n2", "nonce": na, "keys": [peer_key_id(secret)]})
            err = c.err("peer.auth", {"mac": peer_mac("y" * 40, "A>B", "n2", "n1", na,
                                                      res["nonce"])})
            assert err["code"] == "unauthorized", err
            with pytest.raises((RpcClosed, RpcTimeout)):
                c.call("ping", {}, timeout=2)
        # The right secret: a proven peer's fields count (a forwarded read).
        with cl.node_client("n1") as c:
            c.ok("sku.put", {"sku": owned["n1"], "own_on_hand": 3})
        with cl.peer_client("n1") as c:
            assert c.ok("stock.get", {"sku": owned["n1"], "_fwd": 1})["own_on_hand"] == 3
        # Forged part reserve from a client through the balancer: refused.
        with cl.client() as c:
            err = c.err("reserve", dict(FORGED_PART, sku=owned["n2"]))
            assert err["code"] == "unauthorized", err
            assert c.ok("stock.get", {"sku": owned["n2"]})["available"] == 5
    finally:
        try:
            cl.run("down")
        except Exception:
            pass


# ------------------------------------------------------------ startup and fresh clones
def test_refuses_to_start_beyond_the_descriptor_limit(make_stockd):
    """A configuration that may need more descriptors than the hard limit
    allows does not start, and says which number to lower; one that fits
    starts (the soft limit raised up to the hard one)."""
    s = make_stockd(name="itest-hostile-nofile", start=False)
    s.nofile = 1024
    argv = s.argv()  # default --max-connections 10000
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKD_")}

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    r = subprocess.run(argv, env=env, preexec_fn=limit, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=20)
    assert r.returncode == 2, r.stdout
    assert "lower --max-connections to at most" in r.stdout, r.stdout
    s.args += ["--max-connections", "900"]
    s.start()
    with s.client() as c:
        assert c.ok("ping", {})["node"] == s.name


@pytest.mark.not_sanitized("tools/stack on a fresh clone: no stockd code")
def test_stack_up_on_a_fresh_clone(tmp_path):
    """tools/stack up in a clone that has no build: it builds what it needs
    (fake1688) and starts, or fails saying what is missing (it used to exit
    silently)."""
    if asan_build():
        pytest.skip("runs no stockd: checked once, in the plain pass")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", itestlib.ROOT, str(clone)], check=True, timeout=60)
    env = dict(os.environ, STACK_DIR=str(tmp_path / "stack"))
    env.pop("FAKE1688_BIN", None)
    try:
        r = subprocess.run([str(clone / "tools" / "stack"), "up"], env=env, cwd=str(clone),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout
        assert "fake1688: started" in r.stdout, r.stdout
        st = subprocess.run([str(clone / "tools" / "stack"), "status"], env=env,
                            stdout=subprocess.PIPE, text=True, timeout=30)
        assert st.returncode == 0 and "fake1688: running" in st.stdout, st.stdout
    finally:
        subprocess.run([str(clone / "tools" / "stack"), "down"], env=env, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
