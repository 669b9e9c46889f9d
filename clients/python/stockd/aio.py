"""The asyncio client: the blocking client's API and errors as coroutines.
Calls made concurrently on one AsyncClient share its connection and are
pipelined (matched by msgid), so `asyncio.gather` of many reserves is a batch."""
import asyncio
import random
import socket
from collections import deque

from . import _wire
from .errors import (ConnectionFailed, ConnectionLost, OutcomeUnknown, ProtocolError, Retryable,
                     StockdError, Timeout, from_wire)
from .results import Order, Stock, identity


class AsyncClient:
    """See stockd.Client: the same options, methods (as coroutines), results
    and exceptions.

        async with stockd.AsyncClient(["10.0.0.5:7400"]) as c:
            order = await c.reserve_with_retry("shop1:1001", "hoodie-L", 1)

    Limits as in Client: connect_timeout_ms per endpoint, timeout_ms per call
    (then Timeout, and the connection is closed: every call in flight on it
    gets ConnectionLost), max_reply_bytes per reply, at most pipeline_window
    calls in flight (more wait their turn), at most MAX_NOTIFICATIONS unread
    order updates. Bound to the event loop of its first call.
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
        self.endpoint = None
        self._conn = None               # the live connection's state, or None
        self._connecting = None         # asyncio.Lock, made on the loop
        self._window = None             # asyncio.Semaphore(pipeline_window)
        self._notes = deque()
        self._note_event = None
        self.dropped_notifications = 0
        self._msgid = 0

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ------------------------------------------------------------ the methods
    async def ping(self):
        return await self.call("ping")

    async def reserve(self, order_id, sku, qty=None, *, hold_ms=None, deadline_ms=None,
                      check=False):
        """See Client.reserve."""
        return Order.from_wire(await self.call(
            "reserve", _wire.reserve_params(order_id, sku, qty, hold_ms, deadline_ms, check)))

    async def reserve_with_retry(self, order_id, sku, qty=None, *, hold_ms=None, deadline_ms=None,
                                 check=False, total_ms=10000, backoff_ms=50, backoff_max_ms=1000):
        """See Client.reserve_with_retry."""
        params = _wire.reserve_params(order_id, sku, qty, hold_ms, deadline_ms, check)
        loop = asyncio.get_running_loop()
        end = loop.time() + total_ms / 1000.0
        unknown = None
        attempts = 0
        pause = max(1, backoff_ms)
        while True:
            attempts += 1
            left_ms = int((end - loop.time()) * 1000)
            p = dict(params)
            if left_ms < p.get("deadline_ms", _wire.SERVER_DEFAULT_DEADLINE_MS):
                p["deadline_ms"] = max(1, left_ms)
            try:
                return Order.from_wire(await self._call("reserve", p,
                                                        max(1, min(self.timeout_ms, left_ms))))
            except Retryable as e:
                if isinstance(e, OutcomeUnknown):
                    unknown = e
                sleep_ms = random.randint(pause // 2, pause)
                if int((end - loop.time()) * 1000) <= sleep_ms:
                    if unknown is not None:
                        raise OutcomeUnknown(
                            "reserve %s: outcome unknown after %d attempts in %d ms (last: %s); "
                            "retry later with the same order_id"
                            % (order_id, attempts, total_ms, e), unknown.code, True,
                            unknown.details) from e
                    raise
                await asyncio.sleep(sleep_ms / 1000.0)
                pause = min(backoff_max_ms, pause * 2)

    async def confirm(self, order_id, sku=None):
        return Order.from_wire(await self.call("confirm", _wire.order_params(order_id, sku)))

    async def release(self, order_id, sku=None):
        return Order.from_wire(await self.call("release", _wire.order_params(order_id, sku)))

    async def ship(self, order_id, sku=None):
        return Order.from_wire(await self.call("ship", _wire.order_params(order_id, sku)))

    async def order_get(self, order_id, sku=None):
        return Order.from_wire(await self.call("order.get", _wire.order_params(order_id, sku)))

    async def stock_get(self, sku):
        return Stock.from_wire(await self.call("stock.get", {"sku": sku}))

    async def sku_put(self, sku, own_on_hand=None, supplier_reported=None, supplier=None):
        return Stock.from_wire(await self.call(
            "sku.put", _wire.sku_put_params(sku, own_on_hand, supplier_reported, supplier)))

    async def stock_adjust(self, sku, delta, reason):
        return Stock.from_wire(await self.call("stock.adjust",
                                               {"sku": sku, "delta": delta, "reason": reason}))

    async def subscribe(self, wait_ms=None):
        """Subscribes (now) and returns an async iterator of Orders; see
        Client.subscribe."""
        await self.call("order.subscribe")
        return self._updates(wait_ms)

    async def _updates(self, wait_ms):
        while True:
            if not self._notes:
                conn = self._conn
                if conn is None:
                    raise ConnectionLost("the connection to stockd is closed", "transport", True)
                self._note_event.clear()
                try:
                    await asyncio.wait_for(self._note_event.wait(),
                                           None if wait_ms is None else wait_ms / 1000.0)
                except asyncio.TimeoutError:
                    return
                if not self._notes:
                    raise conn.failure or ConnectionLost("the connection to stockd is closed",
                                                         "transport", True)
            yield Order.from_wire(self._notes.popleft())

    async def call(self, method, params=None):
        """Any method (see Client.call)."""
        return await self._call(method, params, self.timeout_ms)

    def pipeline(self):
        """Queued requests go out together when `await execute()`."""
        return AsyncPipeline(self)

    async def connect(self):
        await self._ensure_connected()

    async def close(self):
        conn = self._conn
        if conn is not None:
            self._drop(conn, ConnectionLost("the client was closed", "transport", True))
            try:
                await asyncio.wait_for(conn.writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass

    # ------------------------------------------------------------ internals
    async def _call(self, method, params, timeout_ms):
        if self._window is None:
            self._window = asyncio.Semaphore(self.pipeline_window)
        async with self._window:
            conn = await self._ensure_connected()
            err, res = await self._start(conn, method, params, timeout_ms)
            if err is not None:
                raise from_wire(err)
            return res

    def _start(self, conn, method, params, timeout_ms):
        """Writes one request on conn; returns the future of its (error,
        result). A timer, not wait_for: a task per call would cost more than
        the call."""
        self._msgid = 1 if self._msgid >= _wire.MSGID_MAX else self._msgid + 1
        msgid = self._msgid
        frame = _wire.request(msgid, method, params, self.token)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def expire():
            if fut.done():
                return
            conn.pending.pop(msgid, None)
            fut.set_exception(Timeout("no reply from stockd at %s within %d ms; outcome unknown"
                                      % (conn.label, timeout_ms), "timeout", True))
            self._drop(conn, ConnectionLost("another call on this connection timed out; "
                                            "outcome unknown", "transport", True))

        timer = loop.call_later(timeout_ms / 1000.0, expire)
        fut.add_done_callback(lambda _f: timer.cancel())
        conn.pending[msgid] = fut
        conn.writer.write(frame)
        return fut

    async def _ensure_connected(self):
        if self._connecting is None:
            self._connecting = asyncio.Lock()
            self._note_event = asyncio.Event()
        async with self._connecting:
            if self._conn is not None and self._conn.doomed:
                self._drop(self._conn, ConnectionLost("stockd closed the connection after "
                                                      "too_large", "transport", True))
            if self._conn is not None:
                return self._conn
            errors = []
            n = len(self._endpoints)
            for i in range(n):
                k = (self._next + i) % n
                host, port, label = self._endpoints[k]
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), self.connect_timeout_ms / 1000.0)
                except asyncio.TimeoutError:
                    errors.append("%s: timed out" % label)
                    continue
                except OSError as e:
                    errors.append("%s: %s" % (label, e.strerror or e))
                    continue
                self._next = k
                self.endpoint = label
                conn = _Conn(reader, writer, label, _wire.Reader(self.max_reply_bytes))
                conn.task = asyncio.ensure_future(self._read_loop(conn))
                self._conn = conn
                return conn
            self._next = (self._next + 1) % n
            raise ConnectionFailed("cannot connect to stockd: " + "; ".join(errors),
                                   "transport", True)

    async def _read_loop(self, conn):
        try:
            while True:
                data = await conn.reader.read(_wire.READ_CHUNK_BYTES)
                if not data:
                    raise ConnectionLost("stockd at %s closed the connection; outcome of "
                                         "requests in flight unknown" % conn.label,
                                         "transport", True)
                for m in conn.wire.feed(data):
                    if m[0] == "reply":
                        _, msgid, err, res = m
                        fut = conn.pending.pop(msgid, None)
                        if fut is None:
                            raise ProtocolError("stockd answered msgid %d, which is not in "
                                                "flight" % msgid, "protocol")
                        if not fut.done():
                            fut.set_result((err, res))
                        if isinstance(err, dict) and err.get("code") == "too_large":
                            conn.doomed = True
                    elif len(self._notes) >= self.MAX_NOTIFICATIONS:
                        self.dropped_notifications += 1
                    else:
                        self._notes.append(m[1])
                        self._note_event.set()
        except asyncio.CancelledError:
            return
        except StockdError as e:
            self._drop(conn, e)
        except OSError as e:
            self._drop(conn, ConnectionLost("read from stockd at %s failed (%s); outcome of "
                                            "requests in flight unknown" % (conn.label, e),
                                            "transport", True))

    def _drop(self, conn, exc):
        """Ends conn: every call in flight on it gets exc."""
        if conn.failure is None:
            conn.failure = exc
        if self._conn is conn:
            self._conn = None
            self.endpoint = None
            self._next = (self._next + 1) % len(self._endpoints)
        for fut in conn.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        conn.pending.clear()
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()
        conn.writer.close()
        if self._note_event is not None:
            self._note_event.set()      # a waiting subscriber learns of the loss


class _Conn:
    def __init__(self, reader, writer, label, wire):
        self.reader, self.writer, self.label, self.wire = reader, writer, label, wire
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = {}
        self.task = None
        self.failure = None
        self.doomed = False


class AsyncPipeline:
    """Requests queued here are sent concurrently on the client's connection
    when `await execute()` runs (at most pipeline_window in flight); one
    result per request in the order queued: the typed result or its
    StockdError."""

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

    async def execute(self):
        """Sends everything queued, at most pipeline_window at a time; one
        result per request, in order. The pipeline is empty afterwards."""
        entries, self._entries = self._entries, []
        c = self._client
        out = []
        for i in range(0, len(entries), c.pipeline_window):
            chunk = entries[i:i + c.pipeline_window]
            try:
                conn = await c._ensure_connected()
            except StockdError as e:
                out += [e] * len(chunk)
                continue
            futs = [c._start(conn, method, params, c.timeout_ms) for method, params, _ in chunk]
            for (_m, _p, decode), r in zip(chunk, await asyncio.gather(*futs,
                                                                         return_exceptions=True)):
                if isinstance(r, StockdError):
                    out.append(r)
                elif isinstance(r, BaseException):
                    raise r
                elif r[0] is not None:
                    out.append(from_wire(r[0]))
                else:
                    try:
                        out.append(decode(r[1]))
                    except ProtocolError as e:
                        out.append(e)
        return out
