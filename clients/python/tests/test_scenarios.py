"""The shared scenarios of clients/scenarios.json against real servers
(started by tests/integration/clientenv.py, addresses in the environment),
each played by the blocking Client and by the AsyncClient.

One body serves both: `await aw(c.reserve(...))` is the value itself for the
blocking client and the awaited coroutine for the asyncio one.
"""
import asyncio
import inspect
import json
import os
import secrets
import socket
import time

import pytest

import stockd

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "..", "scenarios.json")) as _f:
    FILE = json.load(_f)
SCENARIOS = {s["id"]: s for s in FILE["scenarios"]}
FLAVORS = ("sync", "async")
RUN = secrets.token_hex(3)


def env(k):
    v = os.environ.get(k)
    if not v:
        pytest.fail("%s is not set: run the suite through tests/integration/clientenv.py "
                    "(tools/test does), which starts the servers" % k)
    return v


async def aw(v):
    return await v if inspect.isawaitable(v) else v


class Kit:
    """Makes clients of one flavor and does what differs between them."""

    def __init__(self, flavor):
        self.flavor = flavor
        self.p = "py-%s-%s-" % (flavor, RUN)
        self.made = []

    def client(self, addr_var="STOCKD_ADDR", token=None, endpoints=None):
        cls = stockd.Client if self.flavor == "sync" else stockd.AsyncClient
        if token is None and not addr_var.startswith("STOCKD_CLUSTER"):
            token = env("STOCKD_ADMIN_TOKEN")
        c = cls(endpoints or env(addr_var), connect_timeout_ms=2000, timeout_ms=15000,
                token=token)
        self.made.append(c)
        return c

    async def close(self):
        for c in self.made:
            await aw(c.close())

    async def together(self, clients, calls):
        """One request per client, all sent before any reply is read: a
        result (Order) or the exception, per client."""
        if self.flavor == "async":
            return await asyncio.gather(
                *(c.reserve(*a, **kw) for c, (a, kw) in zip(clients, calls)),
                return_exceptions=True)
        ids = [c.send("reserve", stockd._wire.reserve_params(
                   a[0], a[1], a[2], kw.get("hold_ms"), kw.get("deadline_ms")))
               for c, (a, kw) in zip(clients, calls)]
        for c in clients:
            c.flush()
        out = []
        for c, i in zip(clients, ids):
            err, res = c.wait(i)
            out.append(stockd.from_wire(err) if err is not None else stockd.Order.from_wire(res))
        return out

    async def next_update(self, updates):
        if self.flavor == "async":
            try:
                return await updates.__anext__()
            except StopAsyncIteration:
                return None
        return next(updates, None)


def play(flavor, body):
    async def main():
        kit = Kit(flavor)
        try:
            await body(kit)
        finally:
            await kit.close()
    asyncio.run(main())


async def hoodie_round(kit, admin, buyers, sku, units, oid_prefix):
    await aw(admin.sku_put(sku, units))
    res = await kit.together(buyers, [(("%s-b%d" % (oid_prefix, b), sku, 1), {})
                                      for b in range(len(buyers))])
    yes = [r for r in res if isinstance(r, stockd.Order)]
    no = [r for r in res if not isinstance(r, stockd.Order)]
    assert (len(yes), len(no)) == (units, len(buyers) - units), res
    for r in yes:
        assert (r.status, r.from_own) == ("confirmed", 1), r
    for e in no:
        assert isinstance(e, stockd.Insufficient), e
        assert e.available == 0, e.details
    st = await aw(admin.stock_get(sku))
    assert (st.own_reserved, st.available) == (units, 0), st


# ------------------------------------------------------------------ the list
PLAYED = {"hoodie": "test_hoodie", "cut_retry": "test_cut_retry", "pipeline": "test_pipeline",
          "subscribe": "test_subscribe", "check": "test_check", "errors": "test_error_case",
          "cluster": "test_cluster"}


def test_every_scenario_is_played():
    for sid in SCENARIOS:
        assert sid in PLAYED, "scenario %s is not played by the Python suite" % sid
        assert callable(globals().get(PLAYED[sid]))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_hoodie(flavor):
    sc = SCENARIOS["hoodie"]

    async def body(kit):
        admin = kit.client()
        buyers = [kit.client() for _ in range(sc["buyers"])]
        for r in range(sc["rounds"]):
            await hoodie_round(kit, admin, buyers, "%shoodie-%d" % (kit.p, r), sc["units"],
                               "%sh%d" % (kit.p, r))
    play(flavor, body)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cut_retry(flavor):
    sc = SCENARIOS["cut_retry"]

    async def body(kit):
        admin = kit.client()
        sku = kit.p + "cut"
        await aw(admin.sku_put(sku, sc["units"]))
        cut = kit.client("STOCKD_CUT_ADDR")
        a = "cut-%sa" % kit.p
        with pytest.raises(stockd.ConnectionLost) as ei:
            await aw(cut.reserve(a, sku, 2))
        assert isinstance(ei.value, stockd.OutcomeUnknown) and ei.value.retryable
        oa = await aw(cut.reserve(a, sku, 2))
        assert (oa.status, oa.qty) == ("confirmed", 2)

        b = "cut-%sb" % kit.p
        ob = await aw(cut.reserve_with_retry(b, sku, 1, total_ms=10000))
        assert (ob.status, ob.qty) == ("confirmed", 1)

        st = await aw(admin.stock_get(sku))
        assert (st.own_reserved, st.available) == (3, 2), "each order reserved once: %r" % (st,)
        assert (await aw(admin.order_get(a))).created_at == oa.created_at
        assert (await aw(admin.order_get(b))).qty == 1
    play(flavor, body)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_pipeline(flavor):
    sc = SCENARIOS["pipeline"]

    async def body(kit):
        c = kit.client()
        sku = kit.p + "pipe"
        await aw(c.sku_put(sku, sc["units"]))
        p = c.pipeline()
        for i in range(sc["reserves"]):
            p.reserve("%spipe-%d" % (kit.p, i), sku, 1)
        assert len(p) == sc["reserves"]
        res = await aw(p.execute())
        assert len(res) == sc["reserves"]
        for i, r in enumerate(res):
            if i < sc["units"]:
                assert isinstance(r, stockd.Order), (i, r)
                assert r.order_id == "%spipe-%d" % (kit.p, i)
            else:
                assert isinstance(r, stockd.Insufficient), (i, r)
        st = await aw(c.stock_get(sku))
        assert (st.own_reserved, st.available) == (sc["units"], 0)
    play(flavor, body)


async def play_subscribe(kit):
    """The subscribe scenario; returns the error of the late confirm."""
    sc = SCENARIOS["subscribe"]
    listener = kit.client()
    updates = await aw(listener.subscribe(wait_ms=sc["wait_ms"]))
    c = kit.client()
    sku, oid = kit.p + "expiring", kit.p + "expiring-1"
    await aw(c.sku_put(sku, 1))
    assert (await aw(c.reserve(oid, sku, 1, hold_ms=sc["hold_ms"]))).status == "held"
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < sc["wait_ms"] / 1000.0:
        o = await kit.next_update(updates)
        if o is None or o.order_id == oid:
            got = o
            break
    assert got is not None, "no order.update for %s within %d ms" % (oid, sc["wait_ms"])
    assert got.status == "expired", got
    try:
        await aw(c.confirm(oid))
    except stockd.StockdError as e:
        return e
    pytest.fail("confirm after the hold lapsed succeeded")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_subscribe(flavor):
    async def body(kit):
        e = await memo(kit, "subscribe", play_subscribe)
        assert e.code == "expired"
    play(flavor, body)


async def sleep(kit, s):
    if kit.flavor == "async":
        await asyncio.sleep(s)
    else:
        time.sleep(s)


async def play_check(kit):
    """The check scenario; returns the CheckFailed of case (c)."""
    sc = SCENARIOS["check"]
    c = kit.client("STOCKD_CHECK_ADDR")
    p = kit.p + "check-"
    offer = int(env("STOCKD_CHECK_OFFER"))
    ok, short, own = p + "ok", p + "short", p + "own"
    await aw(c.sku_put(ok, 0, supplier={"supplier_id": kit.p + "sup-ok", "offer_id": offer,
                                        "spec_id": env("STOCKD_CHECK_SPEC")}))
    await aw(c.sku_put(short, 0, supplier={"supplier_id": kit.p + "sup-short", "offer_id": offer,
                                           "spec_id": env("STOCKD_CHECK_SPEC_SHORT")}))
    await aw(c.sku_put(own, 1))
    want = {ok: 100000, short: 50}
    end = time.monotonic() + sc["sync_wait_ms"] / 1000.0
    while True:
        got = {k: (await aw(c.stock_get(k))).supplier_reported for k in want}
        if got == want:
            break
        assert time.monotonic() < end, "supplier figures not synced: %r" % (got,)
        await sleep(kit, 0.05)

    # (a) passes: the ordinary record.
    o = await aw(c.reserve(p + "a", ok, 2, hold_ms=60000, check=True))
    assert (o.status, o.from_own, o.from_supplier, o.reason) == ("held", 0, 2, None), o
    assert (await aw(c.release(p + "a"))).status == "released"
    # (b) a cart, checked.
    o = await aw(c.reserve(p + "b", {ok: 1, own: 1}, hold_ms=60000, check=True))
    assert (o.status, len(o.lines), o.from_supplier) == ("held", 2, 1), o
    assert (await aw(c.release(p + "b"))).status == "released"
    # (c) refused by 1688's check: CheckFailed, again on a retry; the order failed.
    with pytest.raises(stockd.CheckFailed) as ei:
        await aw(c.reserve(p + "c", short, 3, check=True))
    e = ei.value
    assert isinstance(e, stockd.Refused) and not e.retryable and e.code == "check_failed", e
    assert e.order_id == p + "c" and "500_004" in e.message, (e, e.details)
    with pytest.raises(stockd.CheckFailed) as again:
        await aw(c.reserve_with_retry(p + "c", short, 3, check=True, total_ms=5000))
    assert again.value.order_id == p + "c"
    assert (await aw(c.order_get(p + "c"))).status == "failed"
    # (d) without the check the figure (50) says yes.
    o = await aw(c.reserve(p + "d", short, 3, hold_ms=60000))
    assert (o.status, o.from_supplier) == ("held", 3), o
    await aw(c.release(p + "d"))
    # (e) not a bool: refused here, nothing sent.
    for bad in ("yes", 1):
        with pytest.raises(TypeError, match="check must be a bool"):
            await aw(c.reserve(p + "e", ok, 1, check=bad))
        with pytest.raises(TypeError, match="check must be a bool"):
            await aw(c.reserve_with_retry(p + "e", ok, 1, check=bad))
        pl = c.pipeline()
        with pytest.raises(TypeError, match="check must be a bool"):
            pl.reserve(p + "e", {ok: 1}, check=bad)
        assert len(pl) == 0
    with pytest.raises(stockd.NotFound):
        await aw(c.order_get(p + "e"))
    return e


@pytest.mark.parametrize("flavor", FLAVORS)
def test_check(flavor):
    async def body(kit):
        e = await memo(kit, "check", play_check)
        assert type(e) is stockd.CheckFailed
    play(flavor, body)


def stall(ms):
    host, port = env("STOCKD_STALL_CONTROL").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"stall %d\n" % ms)
        assert s.makefile("rb").readline() == b"ok\n"


async def play_stall(kit):
    """The stall sequence; returns its errors by case."""
    c = kit.client("STOCKD_STALL_ADDR")
    s = kit.p + "stall"
    await aw(c.sku_put(s, 100))
    await aw(c.reserve(kit.p + "stall-warm", s, 1))
    stall(1500)
    n_c = SCENARIOS["errors"]["stall_c_count"]
    if kit.flavor == "sync":
        a = c.send("reserve", {"order_id": kit.p + "stall-a", "sku": s, "qty": 1,
                               "deadline_ms": 10000})
        c.flush()
        time.sleep(0.1)     # A's commit is under way (and hanging) before B arrives
        b = c.send("reserve", {"order_id": kit.p + "stall-b", "sku": s, "qty": 1,
                               "deadline_ms": 50})
        cs = [c.send("reserve", {"order_id": "%sstall-c%d" % (kit.p, i), "sku": s, "qty": 1})
              for i in range(n_c)]
        c.flush()
        got = {}
        for name, msgid in [("deadline", b), ("outcome_unknown", a)] + \
                [("c%d" % i, m) for i, m in enumerate(cs)]:
            err, res = c.wait(msgid)
            assert err is not None, "stall sequence: %s succeeded: %r" % (name, res)
            got[name] = stockd.from_wire(err)
    else:
        async def reserve(oid, **kw):
            try:
                return await c.reserve(oid, s, 1, **kw)
            except stockd.StockdError as e:
                return e
        ta = asyncio.ensure_future(reserve(kit.p + "stall-a", deadline_ms=10000))
        await asyncio.sleep(0.1)
        tb = asyncio.ensure_future(reserve(kit.p + "stall-b", deadline_ms=50))
        tcs = [asyncio.ensure_future(reserve("%sstall-c%d" % (kit.p, i))) for i in range(n_c)]
        got = {"deadline": await tb, "outcome_unknown": await ta}
        for i, t in enumerate(tcs):
            got["c%d" % i] = await t
        for k, v in got.items():
            assert isinstance(v, stockd.StockdError), "stall sequence: %s succeeded: %r" % (k, v)
    out = {"deadline": got["deadline"], "outcome_unknown": got["outcome_unknown"]}
    for i in range(n_c):
        e = got["c%d" % i]
        if "busy" not in out and e.code == "busy":
            out["busy"] = e
        else:
            assert e.code in ("busy", "unavailable"), e
    assert "busy" in out, "no C was refused busy: %r" % got
    try:
        await aw(c.reserve(kit.p + "stall-d", s, 1))
        pytest.fail("stall sequence: D succeeded while the database is frozen")
    except stockd.StockdError as e:
        out["unavailable"] = e
    # The database is back: retries settle A (committed or decided afresh) and D.
    oa = await aw(c.reserve_with_retry(kit.p + "stall-a", s, 1, total_ms=10000))
    od = await aw(c.reserve_with_retry(kit.p + "stall-d", s, 1, total_ms=10000))
    assert (oa.status, od.status) == ("confirmed", "confirmed")
    assert (await aw(c.stock_get(s))).own_reserved == 3, "warm + A + D, each once"
    return out


_memo = {}


async def memo(kit, name, fn):
    key = (kit.flavor, name)
    if key not in _memo:
        _memo[key] = await fn(kit)
    return _memo[key]


CASES = SCENARIOS["errors"]["cases"]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_error_case(flavor, case):
    async def provoke(kit):
        p = kit.p + "err-" + case["case"]
        c = kit.client()
        name = case["case"]
        if name == "invalid":
            await aw(c.reserve(p, p, 0))
        elif name == "unknown_method":
            await aw(c.call("no.such.method"))
        elif name == "unknown_sku":
            await aw(c.reserve(p, p + "-never-put", 1))
        elif name == "insufficient":
            await aw(c.sku_put(p, 3))
            await aw(c.reserve(p, p, 5))
        elif name == "insufficient_lines":
            await aw(c.sku_put(p + "-a", 5))
            await aw(c.sku_put(p + "-b", 1))
            await aw(c.reserve(p, {p + "-a": 1, p + "-b": 2}))
        elif name == "conflict":
            await aw(c.sku_put(p, 5))
            await aw(c.reserve(p, p, 1))
            await aw(c.reserve(p, p, 2))
        elif name == "not_found":
            await aw(c.order_get(p))
        elif name == "invalid_state":
            await aw(c.sku_put(p, 5))
            await aw(c.reserve(p, p, 1))
            await aw(c.release(p))
            await aw(c.ship(p))
        elif name == "expired":
            return await memo(kit, "subscribe", play_subscribe)
        elif name == "unauthorized":
            await aw(kit.client(token="not-the-token").sku_put(p, 1))
        elif name == "too_large":
            try:
                await aw(c.reserve("x" * 70000, p, 1))
            finally:
                assert "node" in await aw(c.ping()), "the client reconnects after too_large"
        elif name in ("busy", "deadline", "unavailable", "outcome_unknown"):
            return (await memo(kit, "stall", play_stall))[name]
        elif name == "set_aside":
            t0 = time.monotonic()
            try:
                await aw(c.reserve_with_retry(p, env("STOCKD_SET_ASIDE_SKU"), 1, total_ms=10000))
            finally:
                assert time.monotonic() - t0 < 2.0, "a set-aside SKU was retried"
        elif name == "check_failed":
            return await memo(kit, "check", play_check)
        elif name == "internal":
            return stockd.from_wire({"code": "internal", "message": "bug", "retryable": True})
        else:
            pytest.fail("error case %s of scenarios.json is not played by the Python suite" % name)
        return None

    async def body(kit):
        try:
            e = await provoke(kit)
        except stockd.StockdError as caught:
            e = caught
        assert e is not None, "case %s: no error" % case["case"]
        assert type(e).__name__ == case["exception"], "case %s: %r" % (case["case"], e)
        assert type(e) is getattr(stockd, case["exception"])
        assert e.code == case["code"]
        assert e.retryable is case["retryable"]
        assert isinstance(e, stockd.Retryable if case["retryable"] else stockd.Refused)
        for k, v in case.get("detail", {}).items():
            assert e.details.get(k) == v, "detail %s of %r" % (k, e.details)
    play(flavor, body)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cluster(flavor):
    sc = SCENARIOS["cluster"]

    async def body(kit):
        admin = kit.client("STOCKD_CLUSTER_ADDR")
        buyers = [kit.client("STOCKD_CLUSTER_ADDR") for _ in range(3)]
        for i in range(sc["skus"]):
            await hoodie_round(kit, admin, buyers, "%scl-%d" % (kit.p, i), 2, "%scl%d" % (kit.p, i))

        skus = [kit.p + "cart-" + x for x in "abc"]
        p = admin.pipeline()
        for k in skus:
            p.sku_put(k, 5)
        for r in await aw(p.execute()):
            assert isinstance(r, stockd.Stock) and r.available == 5, r
        oid = kit.p + "cart-1"
        o = await aw(admin.reserve(oid, {skus[0]: 1, skus[1]: 2, skus[2]: 3}, hold_ms=60000))
        assert (o.status, o.qty, len(o.lines)) == ("held", 6, 3), o
        assert (await aw(admin.confirm(oid))).status == "confirmed"
        got = await aw(admin.order_get(oid))
        assert (got.status, [l.sku for l in got.lines]) == ("confirmed", skus), got

        nodes = [item.split("=", 1)[1] for item in env("STOCKD_CLUSTER_NODES").split(",")]
        direct = kit.client(endpoints=[env("STOCKD_DEAD_ADDR")] + nodes)
        again = await aw(direct.order_get(oid, skus[0]))
        assert (again.status, again.created_at) == ("confirmed", o.created_at)
        assert direct.endpoint in nodes

        assert (await aw(admin.release(oid))).status == "released"
        for k in skus:
            assert (await aw(admin.stock_get(k))).available == 5
    play(flavor, body)
