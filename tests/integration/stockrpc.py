"""A small pure-Python MessagePack-RPC client for stockd, written against
proto/PROTOCOL.md only (python3-msgpack and sockets, nothing else).

One Rpc object is one TCP connection, used by one thread at a time. Requests
may be pipelined: send() returns the msgid, wait() returns the reply for a
msgid, keeping replies that arrive for other msgids until they are asked for.
"""
import socket
import time

import msgpack

MSGID_MAX = 2**32 - 1


class RpcClosed(Exception):
    """The server closed the connection (EOF or reset)."""


class RpcTimeout(Exception):
    """No reply within the timeout."""


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def request_bytes(msgid, method, params=None):
    """Encodes [0, msgid, method, [params]]: what a well-behaved client sends."""
    return pack([0, msgid, method, [params if params is not None else {}]])


class Rpc:
    def __init__(self, host, port, timeout=10.0):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.replies = {}      # msgid -> (error, result)
        self.others = []       # anything that was not a response
        self.next_id = 1
        self.closed = False

    # -- plumbing --------------------------------------------------------
    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def new_id(self):
        i = self.next_id
        self.next_id = 1 if i >= MSGID_MAX else i + 1
        return i

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads once from the socket into the unpacker; raises on EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise RpcTimeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise RpcTimeout()
        except (ConnectionResetError, BrokenPipeError) as e:
            raise RpcClosed(str(e))
        if not data:
            raise RpcClosed("eof")
        self.unpacker.feed(data)
        for msg in self.unpacker:
            if (isinstance(msg, list) and len(msg) == 4 and msg[0] == 1
                    and isinstance(msg[1], int)):
                self.replies[msg[1]] = (msg[2], msg[3])
            else:
                self.others.append(msg)

    def read_any(self, timeout=None):
        """Returns the next decoded message of any shape (raw view)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if self.replies:
                k = next(iter(self.replies))
                e, r = self.replies.pop(k)
                return [1, k, e, r]
            if self.others:
                return self.others.pop(0)
            self._fill(deadline)

    def recv_until_closed(self, timeout=5.0):
        """Reads until EOF/reset; returns the decoded messages seen. Raises
        RpcTimeout if the connection stays open."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except RpcClosed:
            pass
        out = [[1, k, e, r] for k, (e, r) in self.replies.items()] + self.others
        self.replies, self.others = {}, []
        return out

    # -- requests --------------------------------------------------------
    def send(self, method, params=None, msgid=None):
        if msgid is None:
            msgid = self.new_id()
        self.send_raw(request_bytes(msgid, method, params))
        return msgid

    def notify(self, method, params=None):
        self.send_raw(pack([2, method, [params if params is not None else {}]]))

    def wait(self, msgid, timeout=None):
        """Returns (error, result) for msgid."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while msgid not in self.replies:
            self._fill(deadline)
        return self.replies.pop(msgid)

    def call(self, method, params=None, timeout=None):
        """One request, one reply: (error, result)."""
        return self.wait(self.send(method, params), timeout)

    def ok(self, method, params=None, timeout=None):
        """Calls and insists on success; returns the result map."""
        err, res = self.call(method, params, timeout)
        if err is not None:
            raise AssertionError("%s %r failed: %r" % (method, params, err))
        assert isinstance(res, dict), res
        return res

    # -- notifications (order.subscribe) ---------------------------------
    def next_notification(self, timeout=None, method=None):
        """Returns the next notification [2, method, params] (of that method
        when given; others are dropped), or None when none came in time.
        Replies that arrive meanwhile are kept for wait()."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, m in enumerate(self.others):
                if isinstance(m, list) and len(m) == 3 and m[0] == 2:
                    del self.others[i]
                    if method is None or m[1] == method:
                        return m
                    break
            else:
                try:
                    self._fill(deadline)
                except RpcTimeout:
                    return None

    def next_order_update(self, timeout=None):
        """The order record of the next order.update notification, or None."""
        m = self.next_notification(timeout, "order.update")
        if m is None:
            return None
        assert isinstance(m[2], list) and len(m[2]) == 1 and isinstance(m[2][0], dict), m
        return m[2][0]

    # -- supplier round helpers ------------------------------------------
    def subscribe(self):
        return self.ok("order.subscribe", {})

    def alerts(self, limit=None, timeout=None):
        """alerts.list: the list of alert maps, newest first."""
        err, res = self.call("alerts.list", {} if limit is None else {"limit": limit}, timeout)
        if err is not None:
            raise AssertionError("alerts.list failed: %r" % (err,))
        assert isinstance(res, list), res
        return res

    def supplier_put(self, supplier_id, **fields):
        p = {"supplier_id": supplier_id}
        p.update(fields)
        return self.ok("supplier.put", p)

    def supplier_get(self, supplier_id):
        return self.ok("supplier.get", {"supplier_id": supplier_id})

    def err(self, method, params=None, timeout=None):
        """Calls and insists on an error; returns the error map."""
        err, res = self.call(method, params, timeout)
        if err is None:
            raise AssertionError("%s %r succeeded unexpectedly: %r" % (method, params, res))
        assert res is None, res
        return err


def wait_ready(host, port, timeout=20.0, proc=None):
    """Polls TCP connect + ping until stockd answers. Returns the ping result."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("stockd exited with %s before answering" % proc.returncode)
        try:
            with Rpc(host, port, timeout=1.0) as c:
                err, res = c.call("ping", {}, timeout=1.0)
                if err is None:
                    return res
                last = err
        except (OSError, RpcClosed, RpcTimeout) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError("stockd at %s:%d not ready after %.0fs: %r" % (host, port, timeout, last))


# -- the peer handshake (proto/PROTOCOL.md §13) -------------------------------
PEER_LABEL = b"stockd-peer-v1 "


def peer_key_id(secret):
    """The 8-byte name of a cluster secret."""
    import hashlib
    import hmac
    return hmac.new(secret.encode(), PEER_LABEL + b"key id", hashlib.sha256).digest()[:8]


def peer_mac(secret, direction, id_a, id_b, na, nb):
    """HMAC-SHA256 over label | direction | len-prefixed ids | both nonces;
    direction is "B>A" (the accepting node's answer) or "A>B"."""
    import hashlib
    import hmac
    a, b = id_a.encode(), id_b.encode()
    msg = (PEER_LABEL + direction.encode() + bytes([len(a)]) + a + bytes([len(b)]) + b +
           na + nb)
    return hmac.new(secret.encode(), msg, hashlib.sha256).digest()


def peer_handshake(rpc, node, secrets, expect_node=None):
    """Proves the cluster secret on an open Rpc as node `node` (secrets: the
    ones offered, preferred first). Returns the accepting node's name; raises
    AssertionError when either side's proof fails or the server refuses."""
    import os
    na = os.urandom(32)
    err, res = rpc.call("peer.hello", {"node": node, "nonce": na,
                                       "keys": [peer_key_id(s) for s in secrets]})
    if err is not None:
        raise AssertionError("peer.hello refused: %r" % (err,))
    kid = res["key"]
    secret = next(s for s in secrets if peer_key_id(s) == kid)
    b = res["node"]
    if expect_node is not None:
        assert b == expect_node, res
    assert res["mac"] == peer_mac(secret, "B>A", node, b, na, res["nonce"]), "bad server proof"
    err, res2 = rpc.call("peer.auth", {"mac": peer_mac(secret, "A>B", node, b, na,
                                                       res["nonce"])})
    if err is not None:
        raise AssertionError("peer.auth refused: %r" % (err,))
    assert res2 == {"ok": True}, res2
    return b
