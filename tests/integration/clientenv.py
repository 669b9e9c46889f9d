"""The servers the gateway clients' suites (clients/php, clients/python,
clients/node) run against, and the faults they need, all real:

* `main`: a stockd with an admin token, on a fresh database, where one SKU
  (`SET_ASIDE_SKU`) was set aside at load: its row, written by hand while
  main was stopped, says 5 reserved with no orders (docs/operations.md,
  "Rows set aside"), so every request naming it is answered `unavailable`,
  `set_aside`, not retryable;
* `cut`: a TCP relay in front of `main` that cuts a connection once the
  reply to a `reserve` whose order_id starts with "cut-" comes back (the
  commit happened, the client never hears of it): the "connection cut
  mid-request" of the retry scenario. Every such order_id is cut once only,
  so the retry through the same relay passes;
* `stall`: a stockd whose MariaDB connection runs through a relay that the
  suites can freeze for a while (the `control` port: a line "stall MS"
  answered "ok"). A frozen database makes a commit time out (`unavailable`
  with outcome unknown), keeps the next request of that SKU queued past its
  deadline (`deadline`), and fills the SKU's queue (`busy`, the queue holds
  one);
* `cluster`: three instances behind HAProxy (tools/cluster);
* `check`: a stockd (same admin token) pointed at a private fake1688 (its
  own ports, stopped by pid) for checked reserves: one 1688 offer with a
  spec whose stock is real (a checked reserve passes) and a spec that
  reports 50 but really has 1 (1688's order check refuses 3 of it:
  check_failed with 500_004). The suites map their own SKUs to these specs,
  each under a supplier_id of its own (a refused check touches only that
  supplier's figures).

The suites learn the addresses from environment variables (`env()`), the
same for the three languages. Run one suite by hand with the servers up:

    tools/stack up && eval "$(tools/stack env)"
    /usr/bin/python3 tests/integration/clientenv.py -- phpunit -c clients/php
    /usr/bin/python3 tests/integration/clientenv.py -- sh -c 'cd clients/node && node --test'

Every server runs on 127.0.0.1 on a free port and is stopped by pid (the
relays and the control port are threads of this process).
"""
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itestlib  # noqa: E402
from itestlib import Db, Stockd, supplier_flags  # noqa: E402

ADMIN_TOKEN = "client-suite-admin-token"
CLUSTER = os.path.join(itestlib.ROOT, "tools", "cluster")
# A client that reads nothing for this long is given up (relay threads end).
RELAY_IDLE_S = 120.0


# ---------------------------------------------------------------- relays
class Relay:
    """Accepts on a free loopback port and pipes every connection to
    `target` (host, port). `stall(ms)` holds all bytes in both directions for
    that long (connections stay open); `cut_reserves` turns on the cut of
    replies to reserves of order_ids "cut-*" (each once)."""

    def __init__(self, target, cut_reserves=False):
        self.target = target
        self.cut_reserves = cut_reserves
        self.cut_done = set()
        self.cuts = 0
        self.lock = threading.Lock()
        self.stall_until = 0.0
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self.closed = False
        self.socks = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def stall(self, ms):
        with self.lock:
            self.stall_until = max(self.stall_until, time.monotonic() + ms / 1000.0)

    def _wait_stall(self):
        while not self.closed:
            left = self.stall_until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.01))

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                x.settimeout(RELAY_IDLE_S)
            with self.lock:
                self.socks.update((c, s))
            conn = {"cut_armed": False}
            threading.Thread(target=self._pipe, args=(c, s, conn, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, conn, False), daemon=True).start()

    def _watch_requests(self, unpacker, data, conn):
        """Arms the cut when a reserve of a "cut-*" order_id not cut before
        passes (client to server)."""
        unpacker.feed(data)
        for m in unpacker:
            if (isinstance(m, list) and len(m) == 4 and m[0] == 0 and m[2] == "reserve"
                    and isinstance(m[3], list) and m[3] and isinstance(m[3][0], dict)):
                oid = m[3][0].get("order_id")
                if isinstance(oid, str) and oid.startswith("cut-"):
                    with self.lock:
                        if oid not in self.cut_done:
                            self.cut_done.add(oid)
                            conn["cut_armed"] = True

    def _pipe(self, src, dst, conn, upstream):
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                    max_buffer_size=1 << 24) if upstream else None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._wait_stall()
                if unpacker is not None and self.cut_reserves:
                    try:
                        self._watch_requests(unpacker, data, conn)
                    except Exception:  # noqa: BLE001 - not msgpack: pass it on unwatched
                        unpacker = None
                if not upstream and conn["cut_armed"]:
                    # The reply (the commit's outcome) is dropped with the connection.
                    with self.lock:
                        self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                x.close()
                with self.lock:
                    self.socks.discard(x)

    def close(self):
        self.closed = True
        self.lsock.close()
        with self.lock:
            socks = list(self.socks)
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Control:
    """A line protocol on a free loopback port: "stall MS" (1..10000) freezes
    the stall relay for MS milliseconds and answers "ok"."""

    def __init__(self, relay):
        self.relay = relay
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(30)
        f = c.makefile("rwb")
        try:
            for line in f:
                if len(line) > 64:
                    break
                parts = line.decode("ascii", "replace").split()
                if len(parts) == 2 and parts[0] == "stall" and parts[1].isdigit() \
                        and 1 <= int(parts[1]) <= 10000:
                    self.relay.stall(int(parts[1]))
                    f.write(b"ok\n")
                else:
                    f.write(b"error: expected 'stall MS' (1..10000)\n")
                f.flush()
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.lsock.close()


# ---------------------------------------------------------------- rows set aside
SET_ASIDE_SKU = "clients-set-aside"


def set_aside_sku(stockd, db):
    """Stops stockd, writes a SKU row whose counters do not add up (5 own
    units reserved, no order holds them), starts it again: stockd sets the
    SKU aside when it loads it."""
    stockd.stop()
    now = int(time.time() * 1000)
    db.query("INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,"
             "supplier_reserved,supplier_synced_at,mapping,epoch,version,updated_at)"
             " VALUES (%s,10,5,0,0,0,0,'none',1,0,%s)", (SET_ASIDE_SKU.encode(), now))
    stockd.start()


# ---------------------------------------------------------------- checked reserves
CHECK_OFFER = 660000000001
CHECK_SPEC = "clck0000000000000000000000000001"         # real stock: the check passes
CHECK_SPEC_SHORT = "clck0000000000000000000000000002"   # reports 50, has 1: refused


def start_check(work_dir, db_url):
    """A fake1688 and a stockd with --supplier-url pointing at it; returns
    (the stockd, stop function)."""
    # test_supplier_sync's Fake: the fake as test_check.py runs it.
    from test_supplier_sync import Fake
    secret = "sec-" + uuid.uuid4().hex[:24]
    token = "tok-" + uuid.uuid4().hex[:24]
    fake = Fake(secret, token)
    s = None

    def stop():
        try:
            if s is not None:
                s.stop()
        finally:
            fake.stop()

    try:
        fake.ok("POST", "/catalogue", {"products": [
            {"offer_id": CHECK_OFFER, "subject": "client suites' checked mug", "skus": [
                {"sku_id": 5600000000001, "spec_id": CHECK_SPEC, "price": 3, "real": 100000},
                {"sku_id": 5600000000002, "spec_id": CHECK_SPEC_SHORT, "price": 3, "real": 1,
                 "reported": 50}]}]})
        # Each sku.put's own first read brings the figures; no periodic sync
        # or validation while the suites run.
        s = Stockd(db_url, work_dir, name="clients-check",
                   args=["--admin-token", ADMIN_TOKEN] + supplier_flags(
                       fake.port, secret, token, sync_ms=600000, validate_ms=600000,
                       rate_per_s=2000, timeout_ms=3000))
        s.start()
    except BaseException:
        stop()
        raise
    return s, stop


# ---------------------------------------------------------------- the cluster
CLUSTER_SECRET = "client-suites-cluster-secret-0123456789abcdef"


def cluster_env():
    """What tools/cluster gets besides the paths: flags for every instance
    and, when this stockd authenticates its peers, the shared secret (the
    tool writes it into the instances' secret file)."""
    env = {"CLUSTER_STOCKD_ARGS": "--default-deadline-ms 2000"}
    try:
        helptext = subprocess.run([itestlib.stockd_bin(), "--help"], capture_output=True,
                                  text=True, timeout=10).stdout
    except OSError:
        helptext = ""
    if "--cluster-secret" in helptext:
        env["CLUSTER_SECRET"] = CLUSTER_SECRET
    return env


def start_cluster(work_dir, db_name, n=3):
    """`tools/cluster up n` under work_dir on database db_name; returns
    (haproxy address, {node: address}, stop function)."""
    env = dict(os.environ, CLUSTER_DIR=work_dir, CLUSTER_DB_NAME=db_name,
               STOCKD_BIN=itestlib.stockd_bin(), **cluster_env())

    def run(*args, timeout=90):
        r = subprocess.run([CLUSTER] + [str(a) for a in args], env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError("tools/cluster %s failed:\n%s" % (" ".join(map(str, args)),
                                                                r.stdout))
        return r.stdout

    def stop():
        try:
            run("down", timeout=120)
        finally:
            Db(os.environ["STOCKD_DB"], db_name).drop()

    try:
        run("up", n)
        found = {}
        for line in run("env").splitlines():
            k, _, v = line.replace("export ", "", 1).partition("=")
            found[k] = shlex.split(v)[0] if v else ""
    except BaseException:
        stop()
        raise
    nodes = dict(item.split("=", 1) for item in found["STOCKD_CLUSTER_NODES"].split(","))
    return found["STOCKD_CLUSTER_ADDR"], nodes, stop


# ---------------------------------------------------------------- all of it
class ClientEnv:
    """Starts everything (`start`), describes it (`env`), stops it (`stop`)."""

    def __init__(self, work_dir, cluster=True):
        self.work_dir = work_dir
        self.with_cluster = cluster
        self.stops = []
        self.vars = {}

    def _db(self, tag):
        d = Db(os.environ["STOCKD_DB"], "it_clients_%s_%s" % (tag, uuid.uuid4().hex[:8]))
        d.create()
        self.stops.append(d.drop)
        return d

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        itestlib.check_prereqs()
        mdb = self._db("main")
        main = Stockd(mdb.url, self.work_dir, name="clients-main",
                      args=["--admin-token", ADMIN_TOKEN])
        self.stops.append(main.stop)
        main.start()
        set_aside_sku(main, mdb)
        cut = Relay(("127.0.0.1", main.port), cut_reserves=True)
        self.stops.append(cut.close)

        sdb = self._db("stall")
        p = itestlib.parse_db_url(sdb.url)
        dbrelay = Relay((p["host"], p["port"]))
        self.stops.append(dbrelay.close)
        relayed = sdb.url.replace("@%s:%d/" % (p["host"], p["port"]),
                                  "@127.0.0.1:%d/" % dbrelay.port)
        stall = Stockd(relayed, self.work_dir, name="clients-stall",
                       args=["--db-connections", "1", "--commit-timeout-ms", "300",
                             "--db-connect-timeout-ms", "300", "--db-backoff-max-ms", "100",
                             "--queue-per-sku-max", "2", "--admin-token", ADMIN_TOKEN])
        self.stops.append(stall.stop)
        stall.start()
        control = Control(dbrelay)
        self.stops.append(control.close)
        self.cut, self.dbrelay, self.main, self.stall = cut, dbrelay, main, stall

        self.check, stop = start_check(self.work_dir, self._db("check").url)
        self.stops.append(stop)

        self.vars = {
            "STOCKD_ADDR": main.addr,
            "STOCKD_ADMIN_TOKEN": ADMIN_TOKEN,
            "STOCKD_CUT_ADDR": cut.addr,
            "STOCKD_STALL_ADDR": stall.addr,
            "STOCKD_STALL_CONTROL": control.addr,
            # Nothing listens there: a connect is refused at once.
            "STOCKD_DEAD_ADDR": "127.0.0.1:%d" % itestlib.free_port(),
            "STOCKD_SET_ASIDE_SKU": SET_ASIDE_SKU,
            "STOCKD_CHECK_ADDR": self.check.addr,
            "STOCKD_CHECK_OFFER": str(CHECK_OFFER),
            "STOCKD_CHECK_SPEC": CHECK_SPEC,
            "STOCKD_CHECK_SPEC_SHORT": CHECK_SPEC_SHORT,
        }
        if self.with_cluster:
            addr, nodes, stop = start_cluster(os.path.join(self.work_dir, "cluster"),
                                              "it_clients_cluster_" + uuid.uuid4().hex[:8])
            self.stops.append(stop)
            self.vars["STOCKD_CLUSTER_ADDR"] = addr
            self.vars["STOCKD_CLUSTER_NODES"] = ",".join(
                "%s=%s" % kv for kv in sorted(nodes.items()))

    def env(self):
        return dict(self.vars)

    def tails(self):
        return "\n".join(s.tail() for s in (getattr(self, "main", None),
                                            getattr(self, "stall", None),
                                            getattr(self, "check", None)) if s)

    def stop(self):
        while self.stops:
            f = self.stops.pop()
            try:
                f()
            except Exception as e:  # noqa: BLE001 - stop the rest anyway
                print("clientenv: stop: %r" % (e,), file=sys.stderr)


def main(argv):
    if "--" not in argv:
        print("usage: clientenv.py [--no-cluster] -- COMMAND ARGS...", file=sys.stderr)
        return 2
    i = argv.index("--")
    opts, cmd = argv[:i], argv[i + 1:]
    import tempfile
    work = tempfile.mkdtemp(prefix="stockd-clients-")
    env = ClientEnv(work, cluster="--no-cluster" not in opts).start()
    try:
        for k, v in env.env().items():
            print("clientenv: %s=%s" % (k, v), file=sys.stderr)
        return subprocess.call(cmd, env=dict(os.environ, **env.env()))
    finally:
        env.stop()
        print("clientenv: logs in %s" % work, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
