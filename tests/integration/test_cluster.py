"""Sharding: several stockd instances split the SKUs by consistent
hashing behind HAProxy, any instance answers any request, and no ring
mistake may oversell.

Method: `tools/cluster up 3` starts n1..n3 on one fresh shared database plus
HAProxy (tcp, round robin, msgpack ping health check); the tests drive it
through HAProxy and directly, then read MariaDB:
- the hoodie race (1,000 rounds) and the 200-client test of the core issue,
  run unchanged through HAProxy (races.py), then every ledger row of their
  SKUs was written by the SKU's owner (ledger.batch_id -> batch_log.node);
- `cluster.ring` from every node equals the ring computed here from the
  node names (XXH3-64 through libxxhash, 160 points per node);
- a ring-aware client (Python here; C via stockbench --ring-aware) sends each
  SKU to its owner, and only owners count the requests;
- an owner killed: its SKUs answer `unavailable` within the deadline from
  the other nodes, other SKUs go on, after restart everything resumes;
- a rolling change under load (add n4, then remove n1): no oversell, no
  acknowledged order lost, errors only unavailable/busy (or a dropped
  connection, retried with the same order_id) and only during the move;
- split brain: two instances each with a ring naming only itself, both
  claiming every SKU, hammered at once: what the clients were promised never
  exceeds the stock, and every success has its committed row.
Skipped (with the reason) until stockd knows --peers. Bounded: every load
loop has a time limit; the module takes about a minute.
"""
import bisect
import contextlib
import ctypes
import json
import os
import random
import shlex
import subprocess
import threading
import time
import uuid

import pytest

import itestlib
from itestlib import Db, audit, check_order_map, compare_stock_with_db, wait_until
from races import CC_SKUS, hoodie_race, hoodie_sku, two_hundred_clients
from stockrpc import Rpc, RpcClosed, RpcTimeout, peer_handshake

CLUSTER = os.path.join(itestlib.ROOT, "tools", "cluster")
VNODES = 160
HOODIE_ROUNDS = int(os.environ.get("ITEST_HOODIE_ROUNDS", "1000"))
RETRYABLE = ("unavailable", "busy")


# ---------------------------------------------------------------- the ring
_xxh = None


def xxh3(data):
    """XXH3-64 of bytes, from Debian's libxxhash (the server's own hash)."""
    global _xxh
    if _xxh is None:
        lib = ctypes.CDLL("libxxhash.so.0")
        lib.XXH3_64bits.restype = ctypes.c_uint64
        lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _xxh = lib
    return _xxh.XXH3_64bits(data, len(data))


class Ring:
    """ketama: VNODES points per node at XXH3("<name>#<i>"), nodes sorted by
    name; a key belongs to the first point at or after XXH3(key), wrapping."""

    def __init__(self, names, points=None):
        self.names = sorted(names)
        if points is None:
            points = sorted((xxh3(("%s#%d" % (n, i)).encode()), k)
                            for k, n in enumerate(self.names) for i in range(VNODES))
        self.points = [tuple(p) for p in points]
        self.hashes = [h for h, _ in self.points]

    @classmethod
    def from_reply(cls, res):
        return cls([n["name"] for n in res["nodes"]], res["points"])

    def owner(self, sku):
        i = bisect.bisect_left(self.hashes, xxh3(sku.encode()))
        return self.names[self.points[i % len(self.points)][1]]


# ---------------------------------------------------------------- the cluster
def peers_supported():
    try:
        out = subprocess.run([itestlib.stockd_bin(), "--help"], capture_output=True,
                             text=True, timeout=10).stdout
    except OSError:
        return False
    return "--peers" in out


def haproxy_present():
    return any(os.access(os.path.join(d, "haproxy"), os.X_OK)
               for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"])


def need_cluster():
    """Skips when stockd has no sharding; fails (under ITEST_STRICT) without HAProxy."""
    if not peers_supported():
        pytest.skip("stockd has no --peers (sharding not built)")
    if not haproxy_present():
        itestlib.skip_or_fail("haproxy not installed (tools/deps installs it)")


def print_logs_on_failure(request, fixture):
    """For an autouse fixture's teardown: the instances' logs of the test's
    cluster (the fixture's value, or its last item when it is a tuple);
    pytest shows them only for a failing test."""
    cl = request.node.funcargs.get(fixture)
    if isinstance(cl, tuple):
        cl = cl[-1]
    if cl is not None:
        print(cl.tails())


class Cluster:
    """tools/cluster under a private CLUSTER_DIR and database."""

    @classmethod
    @contextlib.contextmanager
    def running(cls, tmp_path_factory, name, n=3, stockd_args=None):
        """n instances on a fresh database it_<name>_<random>, stopped and
        the database dropped (unless ITEST_KEEP_DB=1) however the block ends."""
        need_cluster()
        cl = cls(str(tmp_path_factory.mktemp(name)), "it_%s_%s" % (name, uuid.uuid4().hex[:8]))
        if stockd_args is not None:
            cl.env["CLUSTER_STOCKD_ARGS"] = stockd_args
        try:
            cl.up(n)
            cl.db = Db(os.environ["STOCKD_DB"], cl.db_name)
            yield cl
        finally:
            try:
                cl.run("down", timeout=120)
            finally:
                if os.environ.get("ITEST_KEEP_DB") != "1":
                    Db(os.environ["STOCKD_DB"], cl.db_name).drop()

    def __init__(self, work_dir, db_name):
        self.dir = work_dir
        self.db_name = db_name
        self.env = dict(os.environ, CLUSTER_DIR=work_dir, CLUSTER_DB_NAME=db_name,
                        STOCKD_BIN=itestlib.stockd_bin(),
                        CLUSTER_STOCKD_ARGS="--default-deadline-ms 2000")
        self.nodes = {}
        self.addr = None

    def run(self, *args, timeout=90):
        r = subprocess.run([CLUSTER] + [str(a) for a in args], env=self.env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, "tools/cluster %s failed:\n%s" % (" ".join(map(str, args)),
                                                                   r.stdout)
        return r.stdout

    def load_env(self):
        env = {}
        for line in self.run("env").splitlines():
            k, _, v = line.replace("export ", "", 1).partition("=")
            env[k] = shlex.split(v)[0] if v else ""
        self.addr = env["STOCKD_CLUSTER_ADDR"]
        self.nodes = {}
        for item in env["STOCKD_CLUSTER_NODES"].split(","):
            name, _, hp = item.partition("=")
            self.nodes[name] = hp
        self.db_url = env["STOCKD_CLUSTER_DB"]

    def up(self, n):
        self.run("up", n)
        self.load_env()

    def client(self, timeout=10.0):
        """A connection through HAProxy (the races' `target` interface)."""
        host, port = self.addr.split(":")
        return Rpc(host, int(port), timeout)

    def node_client(self, name, timeout=10.0):
        host, port = self.nodes[name].split(":")
        return Rpc(host, int(port), timeout)

    def secret(self):
        """The cluster secret tools/cluster made for this cluster."""
        with open(os.path.join(self.dir, "cluster.secret")) as f:
            return f.read().strip()

    def peer_client(self, name, as_node=None, timeout=10.0):
        """A connection to `name` that proved the cluster secret as node
        `as_node` (default: another member), so peer-only fields count."""
        c = self.node_client(name, timeout)
        other = as_node or next(n for n in sorted(self.nodes) if n != name)
        peer_handshake(c, other, [self.secret()], expect_node=name)
        return c

    def ring(self, via=None):
        with self.node_client(via or sorted(self.nodes)[0]) as c:
            return Ring.from_reply(c.ok("cluster.ring", {}))

    def stats(self, name):
        with self.node_client(name) as c:
            return c.ok("stats", {})

    def pid_of(self, name):
        for line in self.run("pids").splitlines():
            n, _, pid = line.partition(" ")
            if n == name:
                return int(pid)
        raise AssertionError("no pid for %s" % name)

    def tails(self, n=25):
        out = []
        for f in sorted(os.listdir(self.dir)):
            if f.endswith(".log"):
                with open(os.path.join(self.dir, f), "rb") as fh:
                    lines = fh.read().decode("utf-8", "replace").splitlines()
                out.append("--- %s\n%s" % (f, "\n".join(lines[-n:])))
        return "\n".join(out)


@pytest.fixture(scope="module")
def sharding(prereqs):
    if not peers_supported():
        pytest.skip("stockd --help does not mention --peers: sharding is not built")


@pytest.fixture(scope="module")
def cluster(sharding, tmp_path_factory):
    with Cluster.running(tmp_path_factory, "cluster") as cl:
        yield cl


@pytest.fixture(autouse=True)
def _cluster_logs_on_failure(request):
    yield
    print_logs_on_failure(request, "cluster")


def owners_wrong(db, ring, like, column="l.sku"):
    """Ledger rows whose `column` is LIKE `like` and whose batch was written
    by a node other than the SKU's owner (or has no batch_log row)."""
    rows = db.query("SELECT l.sku AS sku, b.node AS node, COUNT(*) AS n FROM ledger l "
                    "LEFT JOIN batch_log b ON b.batch_id = l.batch_id "
                    "WHERE " + column + " LIKE %s GROUP BY l.sku, b.node", (like,))
    assert rows, "no ledger rows for %s" % like
    return [(r["sku"], r["node"], ring.owner(r["sku"]), r["n"]) for r in rows
            if r["node"] != ring.owner(r["sku"])]


def skus_by_owner(ring, prefix, n):
    out = {}
    for i in range(n):
        k = "%s%03d" % (prefix, i)
        out.setdefault(ring.owner(k), []).append(k)
    return out


# ---------------------------------------------------------------- the tests
def test_ring_matches_contract(cluster):
    """Every node publishes the same ring, and it is the ketama ring of the
    node names as computed here."""
    mine = Ring(cluster.nodes)
    versions = set()
    for name in cluster.nodes:
        with cluster.node_client(name) as c:
            res = c.ok("cluster.ring", {})
        assert res["node"] == name, res["node"]
        assert res["vnodes"] == VNODES, res["vnodes"]
        names = [n["name"] for n in res["nodes"]]
        assert names == sorted(cluster.nodes), names
        for n in res["nodes"]:
            assert "%s:%d" % (n["host"], n["port"]) == cluster.nodes[n["name"]], n
        assert [tuple(p) for p in res["points"]] == mine.points, "points differ from XXH3 ketama"
        versions.add(res["version"])
    assert len(versions) == 1, versions
    # About a third each (160 points per node keeps the spread within ~15%).
    share = {}
    for i in range(3000):
        share[mine.owner("spread-%d" % i)] = share.get(mine.owner("spread-%d" % i), 0) + 1
    assert all(600 < v < 1400 for v in share.values()), share


def test_hoodie_race_through_haproxy(cluster):
    fwd_before = _forwarded(cluster)
    print(hoodie_race(cluster, cluster.db, HOODIE_ROUNDS))
    # Round robin put two thirds of the requests on a non-owner.
    assert _forwarded(cluster) - fwd_before > HOODIE_ROUNDS, "HAProxy never needed forwarding?"
    ring = cluster.ring()
    wrong = owners_wrong(cluster.db, ring, "hoodie-%")
    assert not wrong, "rows written by a non-owner (sku, writer, owner, n): %r" % wrong[:10]
    owners = {ring.owner(hoodie_sku(i)) for i in range(HOODIE_ROUNDS)}
    assert owners == set(cluster.nodes), owners


def test_200_clients_through_haproxy(cluster):
    print(two_hundred_clients(cluster, cluster.db))
    wrong = owners_wrong(cluster.db, cluster.ring(), "c-%")
    assert not wrong, "rows written by a non-owner (sku, writer, owner, n): %r" % wrong[:10]
    # Each node's memory holds only its own SKUs' orders: order.get with the
    # SKU hint answers from the owner, wherever it is asked.
    rows = cluster.db.query("SELECT order_id, sku, status FROM orders "
                            "WHERE order_id LIKE 'cc-%%' ORDER BY order_id LIMIT 30")
    for r in rows:
        for name in cluster.nodes:
            with cluster.node_client(name) as c:
                o = c.ok("order.get", {"order_id": r["order_id"], "sku": r["sku"]})
            assert o["status"] == r["status"] and o["sku"] == r["sku"], (name, o, r)
    assert set(CC_SKUS) <= {r["sku"] for r in cluster.db.query("SELECT sku FROM sku")}


def _requests_total(stats, method):
    return sum(v for v in stats.get("requests", {}).get(method, {}).values()
               if isinstance(v, int))


def _forwarded(cluster):
    """Requests all nodes forwarded to an owner so far (stats.cluster)."""
    return sum(cluster.stats(n).get("cluster", {}).get("forwarded", 0) for n in cluster.nodes)


def test_ring_aware_client_goes_to_owner(cluster):
    """A client that computes owners from cluster.ring sends every request
    to the owner: no node counts a request for a SKU it does not own."""
    ring = cluster.ring()
    by_owner = skus_by_owner(ring, "ra-", 30)
    assert set(by_owner) == set(cluster.nodes), by_owner
    with cluster.client() as c:
        for skus in by_owner.values():
            for k in skus:
                c.ok("sku.put", {"sku": k, "own_on_hand": 100})
    before = {n: _requests_total(cluster.stats(n), "stock.get") for n in cluster.nodes}
    fwd_before = _forwarded(cluster)
    sent = {}
    for name, skus in by_owner.items():
        with cluster.node_client(name) as c:
            for k in skus:
                st = c.ok("stock.get", {"sku": k})
                assert st["available"] == 100, st
                sent[name] = sent.get(name, 0) + 1
    after = {n: _requests_total(cluster.stats(n), "stock.get") for n in cluster.nodes}
    got = {n: after[n] - before[n] for n in cluster.nodes}
    assert got == sent, "stock.get counted per node %r, sent to owners %r" % (got, sent)
    assert _forwarded(cluster) == fwd_before, "an owner forwarded a request"
    # The same SKUs asked of a non-owner are forwarded (and still answered).
    name, skus = sorted(by_owner.items())[0]
    other = next(n for n in sorted(cluster.nodes) if n != name)
    with cluster.node_client(other) as c:
        assert c.ok("stock.get", {"sku": skus[0]})["available"] == 100
    assert _forwarded(cluster) > fwd_before


def test_stockbench_ring_aware(cluster, tmp_path):
    """The C client's ring mode (stockbench --ring-aware): requests go to the
    owners (per-node counts add up to what was sent), the audit passes."""
    bench = os.environ.get("STOCKBENCH_BIN") or os.path.join(
        os.path.dirname(itestlib.stockd_bin()), "bench", "stockbench")
    if not os.access(bench, os.X_OK):
        itestlib.skip_or_fail("stockbench not built: %s" % bench)
    help_text = subprocess.run([bench, "--help"], capture_output=True, text=True,
                               timeout=10).stdout
    if "--ring-aware" not in help_text:
        itestlib.skip_or_fail("stockbench has no --ring-aware")
    before = {n: _requests_total(cluster.stats(n), "reserve") for n in cluster.nodes}
    fwd_before = _forwarded(cluster)
    out_json = str(tmp_path / "ring.json")
    r = subprocess.run([bench, "--no-progress", "--mode", "stockd", "--ring-aware",
                        "--target", cluster.addr, "--db", cluster.db_url, "--skus", "60",
                        "--stock", "1000000", "--connections", "2", "--pipeline", "4",
                        "--duration", "1.5", "--warmup", "0", "--json", out_json],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    assert "audit: ok" in r.stdout, r.stdout
    # The library's blocking router (stockd_cluster_*) read SKUs back too.
    assert "ring check: 16/16 SKUs" in r.stdout, r.stdout
    m = json.load(open(out_json))["modes"]["stockd"]
    assert m["successes"] > 0 and not m["errors"], m
    after = {n: _requests_total(cluster.stats(n), "reserve") for n in cluster.nodes}
    counted = sum(after[n] - before[n] for n in cluster.nodes)
    # Forwarded requests would be counted twice (non-owner and owner).
    assert counted == m["requests"], (counted, m["requests"])
    assert all(after[n] > before[n] for n in cluster.nodes), (before, after)
    # The run's own setup (sku.put) went to the owners too: nothing forwarded.
    assert _forwarded(cluster) == fwd_before


def _reserve_timed(c, oid, sku, deadline_ms=1000):
    t = time.monotonic()
    err, res = c.call("reserve", {"order_id": oid, "sku": sku, "qty": 1,
                                  "deadline_ms": deadline_ms}, timeout=10)
    return err, res, time.monotonic() - t


def test_owner_killed_then_restarted(cluster):
    ring = cluster.ring()
    by_owner = skus_by_owner(ring, "kd-", 60)
    victim = "n2"
    others = sorted(n for n in cluster.nodes if n != victim)
    dead_sku = by_owner[victim][0]
    live_skus = [k for n in others for k in by_owner[n][:3]]
    with cluster.client() as c:
        for k in [dead_sku] + live_skus:
            c.ok("sku.put", {"sku": k, "own_on_hand": 1000})
        c.ok("reserve", {"order_id": "kd-pre", "sku": dead_sku, "qty": 1})

    cluster.run("kill", victim)
    for name in others:
        with cluster.node_client(name) as c:
            err, res, took = _reserve_timed(c, "kd-x-%s" % name, dead_sku)
            assert err is not None and err["code"] == "unavailable", (name, err, res)
            assert err["retryable"] is True, err
            assert took < 1.5, "unavailable after %.2fs, deadline 1s" % took
            err, _ = c.call("order.get", {"order_id": "kd-pre", "sku": dead_sku})
            assert err is not None and err["code"] == "unavailable", err
            for k in live_skus:
                err, res, took = _reserve_timed(c, "kd-l-%s-%s" % (name, k), k)
                assert err is None, (name, k, err)
                assert res["status"] == "confirmed"
    with cluster.client() as c:  # HAProxy routes around the dead node
        for i, k in enumerate(live_skus):
            c.ok("reserve", {"order_id": "kd-h-%d" % i, "sku": k, "qty": 1})

    cluster.run("start", victim)

    def resumed(name):
        with cluster.node_client(name) as c:
            err, res = c.call("reserve", {"order_id": "kd-after", "sku": dead_sku, "qty": 1})
        return err is None or (err["code"] not in RETRYABLE and err)
    for name in others:   # each node's peer connection comes back (its own backoff)
        r = wait_until(lambda: resumed(name), 15, step=0.2,
                       what="the restarted owner's SKU to resume via %s" % name)
        assert r is True, r
    for name in others:
        with cluster.node_client(name) as c:
            assert c.ok("order.get", {"order_id": "kd-pre"})["status"] == "confirmed"
            assert c.ok("order.get", {"order_id": "kd-after"})["status"] == "confirmed"
    assert cluster.db.order("kd-after")["status"] == "confirmed"
    audit(cluster.db, [dead_sku] + live_skus)


class Load:
    """Reserving clients through HAProxy that behave like order gateways:
    on unavailable/busy or a dropped connection they retry the same order_id
    (idempotent) until a definite answer or their time runs out."""

    def __init__(self, cluster, skus, threads=12, limit_s=60.0):
        self.cluster, self.skus, self.n, self.limit_s = cluster, skus, threads, limit_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}       # order_id -> (sku, qty, status)
        self.refused = {}     # order_id -> code (definite no)
        self.unknown = set()  # gave up while the outcome was unknown
        self.events = []      # (monotonic time, order_id, what) of every non-definite answer
        self.answered = []    # monotonic times of definite answers
        self.bad = []
        self.threads = []

    def _one(self, c, oid, sku, qty, t_end):
        """Returns (connection, done)."""
        while time.monotonic() < t_end:
            try:
                if c is None:
                    c = self.cluster.client(timeout=5)
                err, res = c.call("reserve", {"order_id": oid, "sku": sku, "qty": qty,
                                              "deadline_ms": 2000})
            except (OSError, RpcClosed, RpcTimeout) as e:
                with self.lock:
                    self.events.append((time.monotonic(), oid, "conn:%s" % type(e).__name__))
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.02)
                continue
            if err is None:
                with self.lock:
                    self.acked[oid] = (sku, qty, res["status"])
                    self.answered.append(time.monotonic())
                check_order_map(res)
                return c, True
            with self.lock:
                if err["code"] != "unavailable":
                    self.answered.append(time.monotonic())
                if err["code"] in RETRYABLE:
                    self.events.append((time.monotonic(), oid, err["code"]))
                elif err["code"] == "insufficient":
                    self.refused[oid] = err["code"]
                    return c, True
                else:
                    self.bad.append((oid, err))
                    return c, True
            time.sleep(0.02)
        with self.lock:
            self.unknown.add(oid)
        return c, False

    def _worker(self, w):
        r = random.Random(w)
        t_end = time.monotonic() + self.limit_s
        c = None
        j = 0
        try:
            while not self.stop.is_set() and time.monotonic() < t_end:
                oid = "rl-%02d-%05d" % (w, j)
                j += 1
                c, _ = self._one(c, oid, r.choice(self.skus), r.randint(1, 2), t_end)
        except Exception as e:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.bad.append(("worker %d" % w, repr(e)))
        if c is not None:
            c.close()

    def start(self):
        self.threads = [threading.Thread(target=self._worker, args=(w,)) for w in range(self.n)]
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(self.limit_s + 30)
        assert not any(t.is_alive() for t in self.threads), "load threads hang"


def test_rolling_change_under_load(cluster):
    skus = ["rl-%02d" % i for i in range(40)]
    # A quarter run out during the test (refusals, oversell pressure); the
    # rest keep selling, so there are commits after the move to check.
    stock = {k: (60 if i < 10 else 5000) for i, k in enumerate(skus)}
    with cluster.client() as c:
        for k in skus:
            c.ok("sku.put", {"sku": k, "own_on_hand": stock[k]})
    load = Load(cluster, skus)
    load.start()
    try:
        time.sleep(1.5)
        t_move0 = time.monotonic()
        cluster.run("add", "n4")
        t_added = time.monotonic()
        time.sleep(1.0)
        cluster.run("remove", "n1")
        t_move1 = time.monotonic()
        print("add took %.1fs, remove %.1fs" % (t_added - t_move0, t_move1 - t_added - 1.0))
        cluster.load_env()
        time.sleep(3.0)
    finally:
        load.finish()
    assert not load.bad, "errors other than unavailable/busy/insufficient: %r" % load.bad[:10]
    assert not load.unknown, "gave up on %d orders: %r" % (len(load.unknown),
                                                          sorted(load.unknown)[:10])
    settle_s = 2.0
    late = [e for e in load.events if not (t_move0 <= e[0] <= t_move1 + settle_s)]
    assert not late, "retryable errors outside the move (%.1f..%.1f+%.1f): %r" % (
        t_move0, t_move1, settle_s, late[:10])
    assert len(load.acked) > 200, "too little load: %d acked" % len(load.acked)
    after = [t for t in load.answered if t > t_move1 + settle_s]
    assert after, "no definite answer in the %.1fs after the move settled" % (3.0 - settle_s)
    # No oversell, nothing acknowledged lost.
    audit(cluster.db)
    rows = cluster.db.orders("order_id LIKE 'rl-%%'")
    lost = [o for o in load.acked if o not in rows]
    assert not lost, "acknowledged but no row: %r" % lost[:10]
    wrong = [(o, a, rows[o]) for o, a in load.acked.items()
             if (rows[o]["sku"], rows[o]["qty"], rows[o]["status"]) != a]
    assert not wrong, wrong[:5]
    ghosts = [o for o in load.refused if o in rows]
    assert not ghosts, "refused reserves left rows: %r" % ghosts[:10]
    promised = {}
    for sku, qty, _s in load.acked.values():
        promised[sku] = promised.get(sku, 0) + qty
    over = {k: (v, stock[k]) for k, v in promised.items() if v > stock[k]}
    assert not over, "promised more than the stock: %r" % over
    # The new ring is everywhere, and after the move only the new owners wrote.
    assert sorted(cluster.nodes) == ["n2", "n3", "n4"], cluster.nodes
    versions = set()
    for name in cluster.nodes:
        with cluster.node_client(name) as c:
            versions.add(c.ok("cluster.ring", {})["version"])
    assert len(versions) == 1, versions
    ring = cluster.ring()
    with cluster.client() as c:
        for k in skus[10:]:
            c.ok("reserve", {"order_id": "rl-after-" + k, "sku": k, "qty": 1})
    wrong = owners_wrong(cluster.db, ring, "rl-after-%", column="l.order_id")
    assert not wrong, "after the move, written by a non-owner: %r" % wrong[:10]
    with cluster.client() as c:
        compare_stock_with_db(c, cluster.db, skus)
    print("rolling change: %d acked, %d refused, %d retryable events during the move" % (
        len(load.acked), len(load.refused), len(load.events)))


def test_stale_copy_never_says_not_found(sharding, make_stockd, make_db):
    """Split brain, one step at a time: a reserves on a SKU (takes it over),
    b reserves on it too (takes it over from a and commits), then every
    call through a on b's order: a's copy of the SKU lacks the order, and
    a must not say not_found from it: the record (after asking MariaDB and
    taking the SKU over again) or a retryable error."""
    db = make_db("stale")

    def start(name):
        s = make_stockd(db=db, name=name, start=False, args=["--default-deadline-ms", "2000"])
        s.args += ["--peers", "%s=%s" % (name, s.addr)]
        return s.start()

    a, b = start("sta"), start("stb")
    seen = {}

    def calls(round_, oid, sku):
        reads = (("order.get", {"order_id": oid, "sku": sku}), ("order.get", {"order_id": oid}))
        writes = (("confirm", {"order_id": oid, "sku": sku}),
                  ("release", {"order_id": oid, "sku": sku}), ("release", {"order_id": oid}))
        if round_ < 5:
            return reads + writes
        # Then a write first: nothing has told a yet that its copy is
        # stale when the write reads the order back (with the SKU named,
        # and without: through the order's lines in MariaDB).
        return writes[1:] + reads if round_ < 8 else writes[2:] + reads

    with a.client() as ca, b.client() as cb:
        for round_ in range(10):
            sku = "st-%d" % round_
            ca.ok("sku.put", {"sku": sku, "own_on_hand": 10})
            ca.ok("reserve", {"order_id": "sta-%d" % round_, "sku": sku, "qty": 1})
            cb.ok("reserve", {"order_id": "stb-%d" % round_, "sku": sku, "qty": 1})
            for method, params in calls(round_, "stb-%d" % round_, sku):
                for attempt in range(5):  # a retryable answer: a retry after a pause
                    if attempt:
                        time.sleep(0.1 * attempt)
                    err, res = ca.call(method, params)
                    code = "ok" if err is None else err["code"]
                    seen[code] = seen.get(code, 0) + 1
                    assert code != "not_found", (round_, method, params, err)
                    if err is None or err["code"] == "invalid_state":
                        break
                    assert err["retryable"] is True, err
                else:
                    raise AssertionError("no answer after 5 tries: %r %r" % (method, err))
    print("stale copy: answers %r" % seen)


def test_split_brain_never_oversells(sharding, make_stockd, make_db):
    """Two instances each believe they alone are the cluster (each --peers
    names only itself), so both claim every SKU. The epoch fence must keep
    every promise within the stock."""
    db = make_db("sb")
    stock = 30
    skus = ["sb-%02d" % i for i in range(10)]

    def start(name):
        s = make_stockd(db=db, name=name, start=False,
                        args=["--default-deadline-ms", "2000"])
        s.args += ["--peers", "%s=%s" % (name, s.addr)]
        return s.start()

    a = start("sba")
    with a.client() as c:
        for k in skus:
            c.ok("sku.put", {"sku": k, "own_on_hand": stock})
    b = start("sbb")   # loads the SKUs a made, and claims them too

    lock = threading.Lock()
    acked, refused, other = {}, {}, []
    t0 = time.monotonic()
    limit_s = 20.0

    def hammer(w):
        r = random.Random(1000 + w)
        inst = a if w % 2 == 0 else b
        c = None
        try:
            for j in range(120):
                if time.monotonic() - t0 > limit_s:
                    break
                if c is None:
                    c = inst.client(timeout=10)
                oid = "sb-%02d-%03d" % (w, j)
                sku, qty = r.choice(skus), r.randint(1, 2)
                try:
                    err, res = c.call("reserve", {"order_id": oid, "sku": sku, "qty": qty,
                                                  "deadline_ms": 2000})
                except (OSError, RpcClosed, RpcTimeout) as e:
                    with lock:
                        other.append((oid, "conn", repr(e)))
                    c.close()
                    c = None
                    continue
                with lock:
                    if err is None:
                        acked[oid] = (sku, qty, res["status"])
                    else:
                        refused[oid] = err["code"]
        finally:
            if c is not None:
                c.close()

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit_s + 30)
    codes = {}
    for v in refused.values():
        codes[v] = codes.get(v, 0) + 1
    assert set(codes) <= {"insufficient", "unavailable", "busy", "deadline"}, codes
    assert not other, other[:5]
    assert acked, "nothing succeeded: %r" % codes

    promised = {}
    for sku, qty, _s in acked.values():
        promised[sku] = promised.get(sku, 0) + qty
    over = {k: v for k, v in promised.items() if v > stock}
    assert not over, "oversold: promised %r of %d each" % (over, stock)
    audit(db, skus)
    rows = db.orders("order_id LIKE 'sb-%%'")
    missing = [o for o in acked if o not in rows]
    assert not missing, "success without a committed row: %r" % missing[:10]
    wrong = [(o, a_, rows[o]) for o, a_ in acked.items()
             if (rows[o]["sku"], rows[o]["qty"], rows[o]["status"]) != a_]
    assert not wrong, wrong[:5]
    definite = [o for o, code in refused.items() if code != "unavailable" and o in rows]
    assert not definite, "refused reserves left rows: %r" % definite[:10]

    # Only the truth says not_found: every call on a committed order, through
    # either instance, answers its record or a retryable error.
    said_not_found, answers = [], {}
    committed = sorted(rows)
    with a.client(timeout=10) as ca, b.client(timeout=10) as cb:
        for i, oid in enumerate(committed):
            c = ca if i % 2 == 0 else cb
            for method, params in (("order.get", {"order_id": oid}),
                                   ("order.get", {"order_id": oid, "sku": rows[oid]["sku"]}),
                                   ("release", {"order_id": oid}),
                                   ("release", {"order_id": oid, "sku": rows[oid]["sku"]})):
                err, res = c.call(method, params)
                code = "ok" if err is None else err["code"]
                answers[code] = answers.get(code, 0) + 1
                if err is None:
                    assert res["order_id"] == oid, res
                elif code == "not_found":
                    said_not_found.append((oid, method, params, err))
                else:
                    assert err["retryable"] is True, (oid, method, err)
    assert not said_not_found, "not_found for committed orders: %r" % said_not_found[:5]
    print("split brain: %d acked, refusals %r, promised %r; calls on committed orders %r" %
          (len(acked), codes, promised, answers))
