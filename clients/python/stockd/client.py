"""The blocking client: one TCP connection at a time, used by one thread."""
import random
import select
import socket
import time
from collections import deque

from . import _wire
from .errors import (ConnectionFailed, ConnectionLost, OutcomeUnknown, ProtocolError, Retryable,
                     StockdError, Timeout, from_wire)
from .results import Order, Stock, identity


class Client:
    """A blocking stockd client (wire contract: proto/PROTOCOL.md).

        c = stockd.Client(["10.0.0.5:7400"], token=os.environ.get("STOCKD_ADMIN_TOKEN"))
        order = c.reserve_with_retry("shop1:1001", "hoodie-L", 1)

    Limits: connecting is bounded by connect_timeout_ms per endpoint; every
    call by timeout_ms (no reply for that long: Timeout, and the connection is
    closed); a reply over max_reply_bytes is refused before it is decoded
    (ProtocolError); at most pipeline_window requests are in flight; at most
    MAX_NOTIFICATIONS order updates wait unread.

    Endpoints: a balancer address or a cluster's instances. The client
    connects to the first that answers, beginning where the last connection
    was, and after a lost connection with the next one. Use IP addresses (a
    name lookup is not bounded by the timeouts). The connection opens on the
    first call and reopens on the call after a failure; the client never
    resends a request by itself, except reserve_with_retry (same order_id).
    """

    MAX_NOTIFICATIONS = _wire.MAX_NOTIFICATIONS

    def __init__(self, endpoints, *, connect_timeout_ms=_wire.DEFAULT_CONNECT_TIMEOUT_MS,
                 timeout_ms=_wire.DEFAULT_TIMEOUT_MS, token=None,
                 max_reply_bytes=_wire.DEFAULT_MAX_REPLY_BYTES,
                 pipeline_window=_wire.DEFAULT_PIPELINE_WINDOW):
        self._endpoints = _wire.parse_endpoints(endpoints)
        _wire.check_positive(connect_timeout_ms=connect_timeout_ms, timeout_ms=timeout_ms,
                             max_reply_bytes=max_reply_bytes, pipeline_window=pipeline_window)
        self.connect_timeout_ms = connect_timeout_ms
        self.timeout_ms = timeout_ms
        self.token = token
        self.max_reply_bytes = max_reply_bytes
        self.pipeline_window = pipeline_window
        self._next = 0
        self._sock = None
        self.endpoint = None            # "host:port" of the connection, or None
        self._reader = None
        self._wbuf = bytearray()
        self._waiting = set()           # msgids sent, no reply yet
        self._replies = {}              # msgid -> (error, result) not yet taken
        self._lost = set()              # in flight when the last connection was lost
        self._notes = deque()           # order.update records not yet taken
        self.dropped_notifications = 0
        self._msgid = 0
        self._doomed = False            # stockd answered too_large and closes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ the methods
    def ping(self):
        """{"node", "version"}"""
        return self.call("ping")

    def reserve(self, order_id, sku, qty=None, *, hold_ms=None, deadline_ms=None,
                check=False):
        """Reserves stock for an order: one SKU and qty, or the lines of a
        cart ({"hoodie": 1, "cap": 2}, all or nothing). Without hold_ms the
        order is confirmed at once; with it, held until confirm() or the hold
        lapses. A repeat with the same order_id returns the order's current
        record: safe to retry. Final: Insufficient, UnknownSku, Conflict,
        Invalid, CheckFailed. Retryable: Busy, Deadline, Unavailable,
        OutcomeUnknown.

        check=True asks stockd to have 1688 check the order's supplier units
        (createOrder.preview) before it answers (PROTOCOL §4, "Checked
        reserves"): a refusal raises CheckFailed (a Refused; the order stays
        failed, a retry with the same order_id answers it again); a check
        that could not be made in time raises Unavailable (retryable, with
        reason "check_unavailable"). Own stock needs no check. check must be
        a bool: anything else raises TypeError and sends nothing."""
        return Order.from_wire(self.call(
            "reserve", _wire.reserve_params(order_id, sku, qty, hold_ms, deadline_ms, check)))

    def reserve_with_retry(self, order_id, sku, qty=None, *, hold_ms=None, deadline_ms=None,
                           check=False, total_ms=10000, backoff_ms=50, backoff_max_ms=1000):
        """reserve(), retried with the same order_id and jittered exponential
        backoff while the answer is Retryable, until a final answer or until
        total_ms have passed. Returns the Order (after an unknown outcome, the
        record the first attempt committed: never two reservations); raises
        a Refused at once. Out of time: OutcomeUnknown if an attempt's outcome
        stayed unknown (the order may exist), else the last Retryable."""
        params = _wire.reserve_params(order_id, sku, qty, hold_ms, deadline_ms, check)
        end = time.monotonic() + total_ms / 1000.0
        unknown = None
        attempts = 0
        pause = max(1, backoff_ms)
        saved = self.timeout_ms
        try:
            while True:
                attempts += 1
                left_ms = int((end - time.monotonic()) * 1000)
                # An attempt never outlives the budget: neither our wait nor
                # stockd's queueing.
                self.timeout_ms = max(1, min(saved, left_ms))
                p = dict(params)
                if left_ms < p.get("deadline_ms", _wire.SERVER_DEFAULT_DEADLINE_MS):
                    p["deadline_ms"] = max(1, left_ms)
                try:
                    return Order.from_wire(self.call("reserve", p))
                except Retryable as e:
                    if isinstance(e, OutcomeUnknown):
                        unknown = e
                    sleep_ms = random.randint(pause // 2, pause)
                    if int((end - time.monotonic()) * 1000) <= sleep_ms:
                        if unknown is not None:
                            raise OutcomeUnknown(
                                "reserve %s: outcome unknown after %d attempts in %d ms (last: %s); "
                                "retry later with the same order_id"
                                % (order_id, attempts, total_ms, e), unknown.code, True,
                                unknown.details) from e
                        raise
                    time.sleep(sleep_ms / 1000.0)
                    pause = min(backoff_max_ms, pause * 2)
        finally:
            self.timeout_ms = saved

    def confirm(self, order_id, sku=None):
        """A held order becomes confirmed. sku: routing hint in a cluster."""
        return Order.from_wire(self.call("confirm", _wire.order_params(order_id, sku)))

    def release(self, order_id, sku=None):
        """A held or confirmed order gives its stock back; safe to repeat."""
        return Order.from_wire(self.call("release", _wire.order_params(order_id, sku)))

    def ship(self, order_id, sku=None):
        """A confirmed (or purchased) order is shipped: its own units leave."""
        return Order.from_wire(self.call("ship", _wire.order_params(order_id, sku)))

    def order_get(self, order_id, sku=None):
        """The committed record; NotFound when there is none."""
        return Order.from_wire(self.call("order.get", _wire.order_params(order_id, sku)))

    def stock_get(self, sku):
        return Stock.from_wire(self.call("stock.get", {"sku": sku}))

    def sku_put(self, sku, own_on_hand=None, supplier_reported=None, supplier=None):
        """Admin: creates or updates a SKU (the client's token is sent)."""
        return Stock.from_wire(self.call(
            "sku.put", _wire.sku_put_params(sku, own_on_hand, supplier_reported, supplier)))

    def stock_adjust(self, sku, delta, reason):
        """Admin: moves own_on_hand by delta, with a ledger reason."""
        return Stock.from_wire(self.call("stock.adjust",
                                         {"sku": sku, "delta": delta, "reason": reason}))

    def subscribe(self, wait_ms=None):
        """Subscribes this connection to order updates (purchased, failed,
        expired) and returns an iterator of Orders. It waits at most wait_ms
        for the next update, then ends (None: as long as it takes). Updates
        are not persistent: after ConnectionLost, subscribe again and catch up
        with order_get(). In a cluster, subscribe on every instance."""
        self.call("order.subscribe")
        return self._updates(wait_ms)

    def _updates(self, wait_ms):
        while True:
            if not self._notes:
                deadline = None if wait_ms is None else time.monotonic() + wait_ms / 1000.0
                self._ensure_connected()
                if not self._pump(deadline, want_note=True, soft=True):
                    return
            yield Order.from_wire(self._notes.popleft())

    def call(self, method, params=None):
        """Any method; params is the one map of PROTOCOL §2 (admin methods
        get the token). Returns the result as decoded; raises its error."""
        err, res = self.wait(self.send(method, params))
        if err is not None:
            raise from_wire(err)
        return res

    def pipeline(self):
        """Requests queued on it go out together (batch jobs)."""
        return Pipeline(self)

    def connect(self):
        self._ensure_connected()

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self.endpoint = None
        self._wbuf = bytearray()
        self._lost = self._waiting
        self._waiting = set()
        self._replies.clear()
        self._doomed = False

    # ------------------------------------------------------ requests by hand
    def send(self, method, params=None):
        """Queues one request and returns its msgid; it goes out with flush()
        or while waiting."""
        self._ensure_connected()
        if len(self._waiting) >= self.pipeline_window:
            raise RuntimeError("more than %d requests in flight: wait for replies first"
                               % self.pipeline_window)
        self._msgid = 1 if self._msgid >= _wire.MSGID_MAX else self._msgid + 1
        self._wbuf += _wire.request(self._msgid, method, params, self.token)
        self._waiting.add(self._msgid)
        return self._msgid

    def flush(self):
        self._ensure_connected()
        self._pump(time.monotonic() + self.timeout_ms / 1000.0, flush_only=True)

    def wait(self, msgid):
        """(error map or None, result) of msgid. Transport failures raise
        (ConnectionLost, Timeout, ProtocolError): every request in flight on
        the connection then has an unknown outcome."""
        if msgid in self._lost:
            self._lost.discard(msgid)
            raise ConnectionLost("the connection was lost with request %d in flight; outcome "
                                 "unknown" % msgid, "transport", True)
        if msgid not in self._replies:
            if msgid not in self._waiting or self._sock is None:
                raise RuntimeError("no request %d in flight on this connection" % msgid)
            self._pump(time.monotonic() + self.timeout_ms / 1000.0, want_id=msgid)
        return self._replies.pop(msgid)

    # ------------------------------------------------------------ internals
    def _run_pipeline(self, entries):
        n = len(entries)
        out = [None] * n
        if n == 0:
            return out
        try:
            self._ensure_connected()
        except ConnectionFailed as e:
            return [e] * n
        ids = {}
        sent = done = 0
        try:
            while done < n:
                while sent < n and len(ids) < self.pipeline_window:
                    method, params, _dec = entries[sent]
                    ids[self.send(method, params)] = sent
                    sent += 1
                self._pump(time.monotonic() + self.timeout_ms / 1000.0, want_any=True)
                for msgid in [m for m in self._replies if m in ids]:
                    k = ids.pop(msgid)
                    err, res = self._replies.pop(msgid)
                    done += 1
                    if err is not None:
                        out[k] = from_wire(err)
                        continue
                    try:
                        out[k] = entries[k][2](res)
                    except ProtocolError as e:
                        out[k] = e
        except StockdError as e:
            for k in ids.values():
                out[k] = e
            for k in range(sent, n):
                out[k] = Retryable("not sent: the connection was lost before this request "
                                   "went out", "transport", True)
        return out

    def _ensure_connected(self):
        if self._doomed:
            self.close()
        if self._sock is not None:
            return
        errors = []
        n = len(self._endpoints)
        for i in range(n):
            k = (self._next + i) % n
            host, port, label = self._endpoints[k]
            try:
                s = socket.create_connection((host, port), timeout=self.connect_timeout_ms / 1000.0)
            except OSError as e:
                errors.append("%s: %s" % (label, e.strerror or e))
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self._sock = s
            self._next = k
            self.endpoint = label
            self._reader = _wire.Reader(self.max_reply_bytes)
            return
        self._next = (self._next + 1) % n
        raise ConnectionFailed("cannot connect to stockd: " + "; ".join(errors), "transport", True)

    def _pump(self, deadline, want_id=None, want_note=False, flush_only=False, want_any=False,
              soft=False):
        """Writes and reads until the wanted thing is there (True). At the
        deadline: False if soft (nothing was owed), else Timeout and the
        connection is closed (a late reply could not be told apart)."""
        while True:
            if ((want_id is not None and want_id in self._replies)
                    or (want_note and self._notes)
                    or (flush_only and not self._wbuf)
                    or (want_any and self._replies)):
                return True
            if self._sock is None:
                raise ConnectionLost("the connection to stockd is closed", "transport", True)
            timeout = None
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    if soft:
                        return False
                    self._fail(Timeout("no reply from stockd at %s within %d ms; outcome unknown"
                                       % (self.endpoint, self.timeout_ms), "timeout", True))
            # poll, not select: a process with many sockets may hold fds past FD_SETSIZE.
            poller = select.poll()
            poller.register(self._sock, select.POLLIN | (select.POLLOUT if self._wbuf else 0))
            try:
                events = poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
            except InterruptedError:
                continue
            ev = events[0][1] if events else 0
            w = ev & (select.POLLOUT | select.POLLERR | select.POLLHUP)
            r = ev & (select.POLLIN | select.POLLERR | select.POLLHUP)
            if w and self._wbuf:
                try:
                    k = self._sock.send(self._wbuf)
                except BlockingIOError:
                    k = 0
                except OSError as e:
                    self._fail(ConnectionLost("write to stockd at %s failed (%s); outcome of "
                                              "requests in flight unknown" % (self.endpoint, e),
                                              "transport", True))
                del self._wbuf[:k]
            if r:
                try:
                    data = self._sock.recv(_wire.READ_CHUNK_BYTES)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._fail(ConnectionLost("read from stockd at %s failed (%s); outcome of "
                                              "requests in flight unknown" % (self.endpoint, e),
                                              "transport", True))
                if not data:
                    self._fail(ConnectionLost("stockd at %s closed the connection; outcome of "
                                              "requests in flight unknown" % self.endpoint,
                                              "transport", True))
                try:
                    self._take(data)
                except ProtocolError as e:
                    self._fail(e)

    def _take(self, data):
        for m in self._reader.feed(data):
            if m[0] == "reply":
                _, msgid, err, res = m
                if msgid not in self._waiting:
                    raise ProtocolError("stockd answered msgid %d, which is not in flight"
                                        % msgid, "protocol")
                self._waiting.discard(msgid)
                self._replies[msgid] = (err, res)
                if isinstance(err, dict) and err.get("code") == "too_large":
                    self._doomed = True
            elif len(self._notes) >= self.MAX_NOTIFICATIONS:
                self.dropped_notifications += 1
            else:
                self._notes.append(m[1])

    def _fail(self, exc):
        self.close()
        self._next = (self._next + 1) % len(self._endpoints)
        raise exc


class Pipeline:
    """Requests queued here go out back to back when execute() is called (at
    most the client's pipeline_window in flight), and come back one result
    per request in the order queued: the typed result or the StockdError of
    that request (one failure does not stop the others). A transport failure
    gives the requests in flight the same OutcomeUnknown and the requests not
    sent yet a plain Retryable."""

    def __init__(self, client):
        self._client = client
        self._entries = []

    def __len__(self):
        return len(self._entries)

    def _add(self, method, params, decode):
        self._entries.append((method, params, decode))
        return len(self._entries) - 1

    def reserve(self, order_id, sku, qty=None, *, hold_ms=None, deadline_ms=None,
                check=False):
        return self._add("reserve",
                         _wire.reserve_params(order_id, sku, qty, hold_ms, deadline_ms, check),
                         Order.from_wire)

    def confirm(self, order_id, sku=None):
        return self._add("confirm", _wire.order_params(order_id, sku), Order.from_wire)

    def release(self, order_id, sku=None):
        return self._add("release", _wire.order_params(order_id, sku), Order.from_wire)

    def ship(self, order_id, sku=None):
        return self._add("ship", _wire.order_params(order_id, sku), Order.from_wire)

    def order_get(self, order_id, sku=None):
        return self._add("order.get", _wire.order_params(order_id, sku), Order.from_wire)

    def stock_get(self, sku):
        return self._add("stock.get", {"sku": sku}, Stock.from_wire)

    def sku_put(self, sku, own_on_hand=None, supplier_reported=None, supplier=None):
        return self._add("sku.put",
                         _wire.sku_put_params(sku, own_on_hand, supplier_reported, supplier),
                         Stock.from_wire)

    def call(self, method, params=None):
        return self._add(method, params, identity)

    def execute(self):
        """Sends everything queued; one result per request, in order. The
        pipeline is empty afterwards."""
        entries, self._entries = self._entries, []
        return self._client._run_pipeline(entries)
