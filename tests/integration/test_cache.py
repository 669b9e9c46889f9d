"""Read path: Redis cache refreshed after commits, Bloom filter of
known SKUs, single-flight loads of cold SKUs, Redis down under load.

stockd runs with --preload-skus no, so SKUs without orders are "cold" after
a restart: known to the Bloom filter and MariaDB, not in memory.

- After a committed reservation, a Redis reader sees the new availability
  within 50 ms (stack Redis, STOCKD_REDIS).
- 100,000 stock.get for random unknown SKUs reach MariaDB and Redis zero
  times beyond the Bloom false positives stockd counts: MariaDB's global
  Com_select delta equals stockd's load queries, Questions grows by no more
  than those plus our own status queries, Redis INFO commandstats shows no
  command but our INFO calls.
- 1,000 concurrent stock.get for one cold SKU cause one MariaDB read
  (Com_select delta 1) and all get the row.
- Redis frozen (SIGSTOP) and killed under a steady reserve load (stockbench,
  open loop): no errors, p99 within 2x of the Redis-up run (floor 1.5 ms so
  a sub-millisecond baseline on a noisy 2-core box does not make the bound
  meaningless; one re-measure allowed), and within 1 s after Redis returns
  every key changed meanwhile shows stockd's figure. These use a private
  redis-server on a free port, so the shared stack's Redis is never stopped.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import msgpack
import pytest

import itestlib
from itestlib import Db, free_port

redis = pytest.importorskip("redis")

BENCH_RATE = 1500
P99_FLOOR_US = 1500


# ---------------------------------------------------------------- helpers
def redis_url():
    url = os.environ.get("STOCKD_REDIS")
    if not url:
        itestlib.skip_or_fail("STOCKD_REDIS not set (tools/stack env)")
    return url


def redis_client(url):
    u = urllib.parse.urlparse(url)
    return redis.Redis(host=u.hostname, port=u.port or 6379, socket_timeout=2)


def cache_args(url, extra=()):
    return ["--redis", url, "--preload-skus", "no"] + list(extra)


def stats(s):
    with s.client() as c:
        return c.ok("stats", {})["read_path"]


def db_status():
    c = Db.connect_server(os.environ["STOCKD_DB"])
    try:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_select', 'Questions')")
            return {r["Variable_name"]: int(r["Value"]) for r in cur.fetchall()}
    finally:
        c.close()


def redis_calls(r):
    """Calls per command from INFO commandstats, without INFO itself."""
    info = r.info("commandstats")
    return {k: v["calls"] for k, v in info.items() if k != "cmdstat_info"}


def pipelined(port, reqs, window=2000):
    """Sends [(method, params)] pipelined on one connection, at most window
    in flight; returns [(error, result)] in order."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    unp = msgpack.Unpacker(raw=False)
    out = [None] * len(reqs)
    sent = got = 0
    try:
        while got < len(reqs):
            if sent < len(reqs) and sent - got < window:
                n = min(len(reqs) - sent, window - (sent - got))
                buf = b"".join(msgpack.packb([0, sent + i, m, [p]], use_bin_type=True)
                               for i, (m, p) in enumerate(reqs[sent:sent + n]))
                sock.sendall(buf)
                sent += n
            data = sock.recv(1 << 20)
            assert data, "stockd closed the connection"
            unp.feed(data)
            for msg in unp:
                out[msg[1]] = (msg[2], msg[3])
                got += 1
    finally:
        sock.close()
    return out


def restart_cold(s):
    """Restart: SKUs without orders are cold again."""
    s.restart()
    st = stats(s)
    assert st["cold"]["preload_skus"] is False
    return st


def wait_cache_up(s, timeout=5.0):
    itestlib.wait_until(lambda: stats(s)["cache"]["up"], timeout, what="stockd cache up")


# ---------------------------------------------------------------- private redis
class PrivateRedis:
    def __init__(self, tmpdir):
        self.port = free_port()
        self.dir = tmpdir
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            itestlib.skip_or_fail("redis-server not installed")
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = redis_client(self.url)
        t = time.monotonic()
        while True:
            try:
                r.ping()
                return r
            except redis.exceptions.ConnectionError:
                assert time.monotonic() - t < 10, "private redis-server did not start"
                time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def signal(self, sig):
        self.proc.send_signal(sig)


@pytest.fixture
def private_redis(tmp_path):
    pr = PrivateRedis(str(tmp_path))
    pr.start()
    yield pr
    if pr.proc and pr.proc.poll() is None:
        pr.signal(signal.SIGCONT)
    pr.kill()


def bench_bin():
    return os.path.join(os.path.dirname(itestlib.stockd_bin()), "bench", "stockbench")


def run_bench(s, out_json, duration=3.0):
    """A steady open-loop reserve load; returns the stockd result map."""
    b = bench_bin()
    if not os.path.exists(b):
        itestlib.skip_or_fail("stockbench not built: %s" % b)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKD_")}
    cmd = [b, "--mode", "stockd", "--target", s.addr, "--skus", "200", "--connections", "8",
           "--rate", str(BENCH_RATE), "--duration", str(duration), "--warmup", "0.5",
           "--json", out_json]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=duration + 30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")[-2000:]
    with open(out_json) as f:
        return json.load(f)["modes"]["stockd"]


def key_of(sku):
    return "stock:own:%s" % sku


def stale_keys(s, r, skus):
    """SKUs whose Redis value differs from stockd's committed figure."""
    bad = []
    with s.client() as c:
        for k in skus:
            want = c.ok("stock.get", {"sku": k})["available"]
            raw = r.get(key_of(k))
            if raw is None or json.loads(raw)["available"] != want:
                bad.append((k, want, raw))
    return bad


# ---------------------------------------------------------------- tests
def test_refresh_visible_within_50ms(make_stockd):
    url = redis_url()
    r = redis_client(url)
    s = make_stockd(args=cache_args(url), name="cache-fresh")
    wait_cache_up(s)
    sku = "fresh-%d" % random.randrange(1 << 30)
    worst = 0.0
    with s.client() as c:
        c.ok("sku.put", {"sku": sku, "own_on_hand": 1000})
        for i in range(30):
            res = c.ok("reserve", {"order_id": "%s-o%d" % (sku, i), "sku": sku, "qty": 1})
            t0 = time.monotonic()
            while True:
                raw = r.get(key_of(sku))
                if raw is not None and json.loads(raw)["available"] == res["available"]:
                    break
                assert time.monotonic() - t0 < 1.0, "key never refreshed: %r" % raw
            worst = max(worst, time.monotonic() - t0)
    v = json.loads(r.get(key_of(sku)))
    assert v["available"] == 970 and v["own_reserved"] == 30 and v["mapping"] == "none"
    assert 0 < r.ttl(key_of(sku)) <= 60
    assert worst <= 0.050, "refresh took %.1f ms" % (worst * 1000)
    print("worst refresh after reserve reply: %.2f ms" % (worst * 1000))


def test_cache_keys_unambiguous(make_stockd):
    """stock:{supplier}:{sku} splits one way: a supplier id with ':' (or the
    own-stock word "own") is refused, so supplier "a" with SKU "b:c" and
    any other pair never share a key."""
    url = redis_url()
    r = redis_client(url)
    s = make_stockd(args=cache_args(url), name="cache-keys")
    wait_cache_up(s)
    tag = "%x" % random.randrange(1 << 30)
    with s.client() as c:
        for sid in ("a:b", ":", "own", "x:"):
            err = c.err("sku.put", {"sku": "k-" + tag, "own_on_hand": 1,
                                    "supplier": {"supplier_id": sid, "offer_id": 1,
                                                 "spec_id": "s"}})
            assert err["code"] == "invalid" and err["field"] == "supplier.supplier_id", err
            assert "':'" in err["message"], err
            err = c.err("supplier.put", {"supplier_id": sid, "trust": 0.5})
            assert err["code"] == "invalid" and err["field"] == "supplier_id", err
        assert c.err("stock.get", {"sku": "k-" + tag})["code"] == "unknown_sku"
        # An own-stock SKU whose name has colons keeps its own key.
        c.ok("sku.put", {"sku": "b:c:" + tag, "own_on_hand": 4})
    key = "stock:own:b:c:" + tag
    itestlib.wait_until(lambda: r.get(key) is not None, 2, what="key " + key)
    assert json.loads(r.get(key))["own_on_hand"] == 4


def test_unknown_skus_touch_no_backend(make_stockd):
    url = redis_url()
    r = redis_client(url)
    # Sized small (capacity 2 x 100 SKUs at 0.1 %) so false positives happen
    # and their accounting is checked, not just their absence.
    s = make_stockd(args=cache_args(url, ["--bloom-min-skus", "100"]), name="cache-unknown")
    with s.client() as c:
        for i in range(100):
            c.ok("sku.put", {"sku": "known-%d" % i, "own_on_hand": 5})
    restart_cold(s)
    wait_cache_up(s)
    before = stats(s)
    db0, rc0 = db_status(), redis_calls(r)
    n = 100000
    rnd = random.Random(5)
    reqs = [("stock.get", {"sku": "ghost-%016x" % rnd.getrandbits(64)}) for _ in range(n)]
    t = time.monotonic()
    res = pipelined(s.port, reqs)
    took = time.monotonic() - t
    db1, rc1 = db_status(), redis_calls(r)
    after = stats(s)
    codes = {}
    for e, _ in res:
        codes[e["code"] if e else "ok"] = codes.get(e["code"] if e else "ok", 0) + 1
    assert codes == {"unknown_sku": n}, codes
    fp = after["bloom"]["false_positives"] - before["bloom"]["false_positives"]
    queries = after["cold"]["db_queries"] - before["cold"]["db_queries"]
    loads = after["cold"]["loads"] - before["cold"]["loads"]
    assert loads == fp, (loads, fp)            # every load was a Bloom false positive
    assert after["cold"]["missing"] - before["cold"]["missing"] == fp
    assert fp <= n * 0.005, "false positives %d of %d" % (fp, n)   # target 0.1 %
    assert db1["Com_select"] - db0["Com_select"] == queries, (db0, db1, queries)
    # our two SHOW GLOBAL STATUS count as Questions too
    assert db1["Questions"] - db0["Questions"] <= queries + 2, (db0, db1, queries)
    diff = {k: rc1.get(k, 0) - rc0.get(k, 0) for k in rc1 if rc1.get(k, 0) != rc0.get(k, 0)}
    assert diff == {}, "Redis saw commands: %r" % diff
    assert after["bloom"]["negatives"] - before["bloom"]["negatives"] == n - fp
    print("%d unknown stock.get in %.2f s: %d Bloom false positives, %d MariaDB queries, "
          "0 Redis commands" % (n, took, fp, queries))


def test_cold_sku_single_flight(make_stockd):
    url = redis_url()
    r = redis_client(url)
    s = make_stockd(args=cache_args(url), name="cache-cold")
    with s.client() as c:
        c.ok("sku.put", {"sku": "cold-1", "own_on_hand": 77})
        c.ok("sku.put", {"sku": "cold-2", "own_on_hand": 5})
        c.ok("sku.put", {"sku": "cold-3", "own_on_hand": 9})
    restart_cold(s)
    wait_cache_up(s)
    r.delete(key_of("cold-1"))
    before = stats(s)
    db0 = db_status()
    # 10 connections x 100 pipelined requests, all written before reading.
    conns = [s.client(timeout=15) for _ in range(10)]
    try:
        ids = []
        for c in conns:
            buf = b""
            for _ in range(100):
                mid = c.new_id()
                buf += msgpack.packb([0, mid, "stock.get", [{"sku": "cold-1"}]], use_bin_type=True)
                ids.append((c, mid))
            c.send_raw(buf)
        res = [c.wait(m) for c, m in ids]
    finally:
        for c in conns:
            c.close()
    db1 = db_status()
    after = stats(s)
    assert all(e is None and v["available"] == 77 for e, v in res), res[:3]
    assert db1["Com_select"] - db0["Com_select"] == 1, (db0, db1)
    assert after["cold"]["db_queries"] - before["cold"]["db_queries"] == 1
    assert after["cold"]["loads"] - before["cold"]["loads"] == 1
    waits = after["cold"]["waits"] - before["cold"]["waits"]
    print("1000 stock.get on a cold SKU: 1 MariaDB SELECT, %d waited on the load" % waits)
    # loaded SKUs are written to Redis for storefronts
    itestlib.wait_until(lambda: r.get(key_of("cold-1")) is not None, 2.0, what="key after load")
    # changes on cold SKUs load first, then go through the engine
    with s.client() as c:
        res = c.ok("reserve", {"order_id": "cold-2-o1", "sku": "cold-2", "qty": 2})
        assert res["available"] == 3
        st = c.ok("sku.put", {"sku": "cold-3", "own_on_hand": 10})  # an update, not an insert
        assert st["own_on_hand"] == 10
        e = c.err("reserve", {"order_id": "cold-x-o1", "sku": "never-there", "qty": 1})
        assert e["code"] == "unknown_sku"
    itestlib.audit(s.db)


def _redis_down_case(make_stockd, private_redis, tmp_path, how):
    pr = private_redis
    r = redis_client(pr.url)
    s = make_stockd(args=cache_args(pr.url, ["--redis-timeout-ms", "100"]), name="cache-" + how)
    wait_cache_up(s)
    skus = ["down-%d" % i for i in range(40)]
    with s.client() as c:
        for k in skus:
            c.ok("sku.put", {"sku": k, "own_on_hand": 100000})
    for attempt in range(2):
        up = run_bench(s, str(tmp_path / ("up%d.json" % attempt)))
        assert up["errors"] == {}, up["errors"]
        bench_out = str(tmp_path / ("down%d.json" % attempt))
        b = bench_bin()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKD_")}
        p = subprocess.Popen([b, "--mode", "stockd", "--target", s.addr, "--skus", "200",
                              "--connections", "8", "--rate", str(BENCH_RATE), "--duration", "3",
                              "--warmup", "0.5", "--json", bench_out],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        back_at = None
        try:
            time.sleep(0.8)
            if how == "sigstop":
                pr.signal(signal.SIGSTOP)
            else:
                pr.kill()
            # changes while Redis is away: their keys must be refreshed later
            with s.client() as c:
                for i, k in enumerate(skus):
                    c.ok("reserve", {"order_id": "%s-%s-%d-%d" % (how, k, attempt, i), "sku": k,
                                     "qty": 1})
            time.sleep(1.2)
            assert stats(s)["cache"]["up"] is False, "a stopped Redis was not noticed"
        finally:
            if how == "sigstop":
                pr.signal(signal.SIGCONT)
            else:
                pr.start()
            back_at = time.monotonic()
        # keys fresh within a second of Redis's return
        while True:
            bad = stale_keys(s, r, skus)
            if not bad:
                break
            assert time.monotonic() - back_at < 1.0, "stale after 1 s: %r" % bad[:3]
            time.sleep(0.02)
        fresh_s = time.monotonic() - back_at
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out.decode(errors="replace")[-2000:]
        with open(bench_out) as f:
            down = json.load(f)["modes"]["stockd"]
        assert down["errors"] == {}, down["errors"]
        p99_up, p99_down = up["latency_us"]["p99"], down["latency_us"]["p99"]
        bound = 2 * max(p99_up, P99_FLOOR_US)
        print("%s: p99 up %d us, down %d us (bound %d), keys fresh %.0f ms after return"
              % (how, p99_up, p99_down, bound, fresh_s * 1000))
        if p99_down <= bound:
            break
        assert attempt == 0, "p99 with Redis %s %d us > 2 x %d us" % (how, p99_down, p99_up)
    itestlib.audit(s.db)


@pytest.mark.not_sanitized("a latency bound: the sanitizers' slowdown makes it noise")
def test_redis_sigstop_under_load(make_stockd, private_redis, tmp_path):
    _redis_down_case(make_stockd, private_redis, tmp_path, "sigstop")


def test_redis_killed_under_load(make_stockd, private_redis, tmp_path):
    _redis_down_case(make_stockd, private_redis, tmp_path, "killed")
