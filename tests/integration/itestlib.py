"""Helpers for the integration suite: the environment contract, a stockd
process handle, MariaDB access, the MariaDB SIGSTOP switch and the audit of
counters against orders.

Environment (set by tools/test):
  STOCKD_BIN    path to stockd (default <repo>/build-test/stockd)
  STOCKCTL_BIN  path to stockctl (default next to STOCKD_BIN)
  STOCKD_DB     mysql://user:pass@host:port/db (credentials used to create
                one fresh database per test module)
  STOCKD_REDIS  redis://host:port (passed on, unused by the core tests)
  ITEST_STRICT=1  turn missing prerequisites into failures instead of skips
"""
import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse

import pymysql
import pytest

from stockrpc import Rpc, wait_ready

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST = "127.0.0.1"
LIVE = ("held", "confirmed", "purchased")
STOCK_KEYS = {"sku", "available", "own_on_hand", "own_reserved", "supplier_reported",
              "supplier_sellable", "supplier_reserved", "supplier_synced_at", "mapping"}
ORDER_KEYS = {"order_id", "sku", "qty", "status", "from_own", "from_supplier", "available",
              "created_at", "updated_at"}
ORDER_OPTIONAL = {"hold_expires_at", "upstream_order_id", "reason",
                  "n_lines", "lines", "line"}  # lines: orders of several lines
STATUSES = {"held", "confirmed", "purchased", "shipped", "released", "expired", "failed"}


def stockd_bin():
    return os.environ.get("STOCKD_BIN") or os.path.join(ROOT, "build-test", "stockd")


def stockctl_bin():
    b = os.environ.get("STOCKCTL_BIN")
    if b:
        return b
    return os.path.join(os.path.dirname(stockd_bin()), "stockctl")


def strict():
    return os.environ.get("ITEST_STRICT") == "1"


def skip_or_fail(why):
    """Missing prerequisites skip (saying why) unless ITEST_STRICT=1."""
    if strict():
        pytest.fail("prerequisite missing (ITEST_STRICT=1): " + why)
    pytest.skip(why)


def parse_db_url(url):
    u = urllib.parse.urlparse(url)
    if u.scheme != "mysql":
        raise ValueError("STOCKD_DB must be mysql://...: %r" % url)
    return {
        "user": urllib.parse.unquote(u.username or "root"),
        "password": urllib.parse.unquote(u.password or ""),
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "database": u.path.lstrip("/") or "stockd",
    }


def db_url_for(base_url, database):
    p = parse_db_url(base_url)
    return "mysql://%s:%s@%s:%d/%s" % (urllib.parse.quote(p["user"], safe=""),
                                       urllib.parse.quote(p["password"], safe=""),
                                       p["host"], p["port"], database)


def check_prereqs():
    """Skips (or fails when strict) unless stockd and MariaDB are there."""
    b = stockd_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        skip_or_fail("stockd binary not built yet: %s (set STOCKD_BIN)" % b)
    url = os.environ.get("STOCKD_DB")
    if not url:
        skip_or_fail("STOCKD_DB not set: run `eval \"$(tools/stack env)\"` after `tools/stack up`")
    try:
        c = Db.connect_server(url)
        c.close()
    except Exception as e:  # noqa: BLE001 - any failure means "no MariaDB"
        skip_or_fail("MariaDB at STOCKD_DB not reachable: %r" % (e,))


# ---------------------------------------------------------------- MariaDB
class Db:
    """A pymysql connection to one test database (autocommit, dict rows)."""

    def __init__(self, base_url, database):
        self.base_url = base_url
        self.database = database
        self.url = db_url_for(base_url, database)
        self.conn = None

    @staticmethod
    def connect_server(url, database=None, timeout=5):
        p = parse_db_url(url)
        return pymysql.connect(host=p["host"], port=p["port"], user=p["user"],
                               password=p["password"], database=database,
                               autocommit=True, connect_timeout=timeout,
                               read_timeout=30, write_timeout=30,
                               cursorclass=pymysql.cursors.DictCursor)

    def create(self):
        c = Db.connect_server(self.base_url)
        with c.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS `%s`" % self.database)
            cur.execute("CREATE DATABASE `%s`" % self.database)
        c.close()

    def drop(self):
        self.close()
        try:
            c = Db.connect_server(self.base_url)
            with c.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS `%s`" % self.database)
            c.close()
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass
            self.conn = None

    def query(self, sql, args=None):
        """Rows as dicts; VARBINARY columns are decoded to str."""
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = Db.connect_server(self.base_url, self.database)
                with self.conn.cursor() as cur:
                    cur.execute(sql, args)
                    rows = cur.fetchall()
                return [{k: (v.decode() if isinstance(v, (bytes, bytearray)) else v)
                         for k, v in r.items()} for r in rows]
            except pymysql.err.OperationalError:
                self.close()
                if attempt == 1:
                    raise
        return []

    def sku(self, sku):
        r = self.query("SELECT * FROM sku WHERE sku = %s", (sku.encode(),))
        return r[0] if r else None

    def order(self, order_id):
        r = self.query("SELECT * FROM orders WHERE order_id = %s", (order_id.encode(),))
        return r[0] if r else None

    def orders(self, where="1", args=None):
        return {r["order_id"]: r for r in self.query("SELECT * FROM orders WHERE " + where, args)}


def audit(db, skus=None):
    """Checks the durable invariants on MariaDB's rows:
    - no counter is negative, and nothing is oversold (reserved <= what exists);
    - own_reserved / supplier_reserved equal the sums of from_own / from_supplier
      over live orders (held, confirmed, purchased);
    - every order's split adds up to its qty.
    Returns {sku: sku_row}. Raises AssertionError listing every violation."""
    rows = {r["sku"]: r for r in db.query("SELECT * FROM sku")}
    if skus is not None:
        rows = {k: v for k, v in rows.items() if k in set(skus)}
    sums = {r["sku"]: r for r in db.query(
        "SELECT sku, COALESCE(SUM(from_own),0) AS o, COALESCE(SUM(from_supplier),0) AS s "
        "FROM orders WHERE status IN ('held','confirmed','purchased') GROUP BY sku")}
    bad = []
    for k, r in rows.items():
        s = sums.get(k, {"o": 0, "s": 0})
        for f in ("own_on_hand", "own_reserved", "supplier_reserved", "supplier_sellable"):
            if r[f] is not None and r[f] < 0:
                bad.append("%s: %s=%d < 0" % (k, f, r[f]))
        if r["own_reserved"] != s["o"]:
            bad.append("%s: own_reserved=%d but live orders hold from_own=%d"
                       % (k, r["own_reserved"], s["o"]))
        if r["supplier_reserved"] != s["s"]:
            bad.append("%s: supplier_reserved=%d but live orders hold from_supplier=%d"
                       % (k, r["supplier_reserved"], s["s"]))
        if r["own_reserved"] > r["own_on_hand"]:
            bad.append("%s: oversold own stock: reserved %d > on hand %d"
                       % (k, r["own_reserved"], r["own_on_hand"]))
        if r["supplier_reserved"] > r["supplier_sellable"]:
            bad.append("%s: oversold supplier stock: reserved %d > sellable %d"
                       % (k, r["supplier_reserved"], r["supplier_sellable"]))
    split = db.query("SELECT order_id, qty, from_own, from_supplier FROM orders "
                     "WHERE from_own + from_supplier <> qty")
    if skus is None:
        bad += ["order %s: from_own %d + from_supplier %d != qty %d"
                % (o["order_id"], o["from_own"], o["from_supplier"], o["qty"]) for o in split]
    assert not bad, "audit failed:\n  " + "\n  ".join(bad[:50])
    return rows


def available_of(st):
    """DESIGN.md §2 availability formula over a stock map or sku row."""
    return ((st["own_on_hand"] - st["own_reserved"])
            + max(0, st["supplier_sellable"] - st["supplier_reserved"]))


def check_stock_map(st):
    """A stock.get / sku.put / stock.adjust result: keys and formula."""
    assert isinstance(st, dict), st
    missing = STOCK_KEYS - set(st)
    assert not missing, "stock map lacks %s: %r" % (sorted(missing), st)
    extra = set(st) - STOCK_KEYS
    assert not extra, "stock map has unexpected keys %s: %r" % (sorted(extra), st)
    assert st["available"] == available_of(st), "available != formula: %r" % st


def check_order_map(o):
    """An order record: required keys, optional keys only when set."""
    assert isinstance(o, dict), o
    missing = ORDER_KEYS - set(o)
    assert not missing, "order record lacks %s: %r" % (sorted(missing), o)
    extra = set(o) - ORDER_KEYS - ORDER_OPTIONAL
    assert not extra, "order record has unexpected keys %s: %r" % (sorted(extra), o)
    assert o["status"] in STATUSES, o
    assert o["from_own"] + o["from_supplier"] == o["qty"], o
    for k in ORDER_OPTIONAL & set(o):
        assert o[k] not in (None, "", 0), "optional key %s present but unset: %r" % (k, o)
    if o["status"] == "held":
        assert "hold_expires_at" in o, o


def compare_stock_with_db(client, db, skus):
    """stockd's stock.get view equals MariaDB's counters."""
    diffs = []
    for k in skus:
        st = client.ok("stock.get", {"sku": k})
        row = db.sku(k)
        assert row is not None, "sku %s missing in MariaDB" % k
        for f in ("own_on_hand", "own_reserved", "supplier_reserved", "supplier_sellable"):
            if st[f] != row[f]:
                diffs.append("%s.%s: stockd %r, MariaDB %r" % (k, f, st[f], row[f]))
    assert not diffs, "stockd and MariaDB disagree:\n  " + "\n  ".join(diffs[:50])


# ---------------------------------------------------------------- stockd
def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


_ALL = []       # every Stockd started by this process (killed at exit)
_RECENT = []    # started in the current module (log tails on failure)


def recent_instances():
    return list(_RECENT)


def forget_recent():
    del _RECENT[:]


@atexit.register
def _kill_leftovers():
    for s in _ALL:
        s.kill9()


class Stockd:
    """One stockd process on a free loopback port, logs to log_dir."""

    def __init__(self, db_url, log_dir, name="itest", args=(), port=None):
        self.db_url = db_url
        self.log_dir = log_dir
        self.name = name
        self.args = list(args)
        self.port = port or free_port()
        self.proc = None
        self.starts = 0
        self.log_path = None
        self.nofile = None     # RLIMIT_NOFILE (soft and hard) for the process, or None
        _ALL.append(self)
        _RECENT.append(self)

    @property
    def addr(self):
        return "%s:%d" % (HOST, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def argv(self):
        return [stockd_bin(), "--listen", self.addr, "--db", self.db_url,
                "--node", self.name] + self.args

    def start(self, timeout=20.0):
        assert not self.alive()
        self.starts += 1
        self.log_path = os.path.join(self.log_dir, "stockd-%s-%d.log" % (self.name, self.starts))
        # stockd reads STOCKD_* variables: pass everything as flags instead.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKD_")}
        log = open(self.log_path, "wb")
        nofile = self.nofile

        def limits():
            if nofile is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=limits if nofile is not None else None)
        log.close()
        try:
            self.ping_result = wait_ready(HOST, self.port, timeout, self.proc)
        except Exception:
            self.kill9()
            raise
        return self

    def stop(self, timeout=10.0):
        """SIGTERM by pid, SIGKILL if it does not exit in time."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill9(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, kill=False):
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def client(self, timeout=10.0):
        return Rpc(HOST, self.port, timeout)

    def rss_kb(self, field="VmRSS"):
        """Resident memory now (VmRSS) or at its peak so far (VmHWM), kB."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_ns(self):
        """CPU time the process has used, in ns (/proc/PID/schedstat)."""
        with open("/proc/%d/schedstat" % self.pid) as f:
            return int(f.read().split()[0])

    def open_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def tail(self, n=40):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no log)"
        with open(self.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "%s (exit=%s)\n%s" % (self.log_path,
                                     None if self.proc is None else self.proc.poll(),
                                     "\n".join(lines[-n:]))


# ---------------------------------------------------------------- MariaDB process
def _listener_pid(port):
    """The pid of the process listening on 127.0.0.1:port (through /proc)."""
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            pass
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                m = re.match(r"socket:\[(\d+)\]", os.readlink("/proc/%s/fd/%s" % (pid, fd)))
                if m and m.group(1) in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def mariadb_pid():
    """mariadbd's pid: the process listening on STOCKD_DB's port (so that we
    never stop somebody else's MariaDB), else `tools/stack pid mariadb` with
    STACK_DIR taken from STOCKD_STACK_DIR."""
    port = parse_db_url(os.environ["STOCKD_DB"])["port"]
    pid = _listener_pid(port)
    if pid is None:
        env = dict(os.environ)
        if os.environ.get("STOCKD_STACK_DIR"):
            env["STACK_DIR"] = os.environ["STOCKD_STACK_DIR"]
        try:
            out = subprocess.run([os.path.join(ROOT, "tools", "stack"), "pid", "mariadb"],
                                 capture_output=True, text=True, timeout=10, env=env)
            if out.returncode == 0 and out.stdout.strip().isdigit():
                pid = int(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    if pid is None:
        raise RuntimeError("cannot find the pid of the MariaDB on port %d" % port)
    with open("/proc/%d/comm" % pid) as f:
        comm = f.read().strip()
    assert comm in ("mariadbd", "mysqld"), "pid %d on port %d is %r, not MariaDB" % (
        pid, port, comm)
    return pid


@contextlib.contextmanager
def mariadb_stopped():
    """SIGSTOP mariadbd for the body; SIGCONT always, also on failure."""
    pid = mariadb_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_until(pred, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(step)


# ---------------------------------------------------------------- supplier round
# Helpers for the supplier tests (test_supplier_*.py). Additive: nothing above
# uses them. Terminal order states after a purchase job: purchased or failed.
SUPPLIER_STOCK_EXTRA = {"trust", "supplier"}   # stock.get keys of the supplier round


def supplier_flags(api_port, secret, token, app_key="1000000", **opts):
    """stockd flags pointing at a fake1688 on api_port; opts are further
    --supplier-* flags by name with '_' for '-' (sync_ms=300 ->
    --supplier-sync-ms 300)."""
    args = ["--supplier-url", "http://127.0.0.1:%d" % api_port,
            "--supplier-app-key", app_key, "--supplier-app-secret", secret,
            "--supplier-token", token]
    for k, v in opts.items():
        args += ["--supplier-" + k.replace("_", "-"), str(v)]
    return args


def check_supplier_stock(st):
    """A stock map of the supplier round: the core keys, optionally trust and
    supplier, and the availability formula."""
    assert isinstance(st, dict), st
    missing = STOCK_KEYS - set(st)
    assert not missing, "stock map lacks %s: %r" % (sorted(missing), st)
    extra = set(st) - STOCK_KEYS - SUPPLIER_STOCK_EXTRA
    assert not extra, "stock map has unexpected keys %s: %r" % (sorted(extra), st)
    assert st["available"] == available_of(st), "available != formula: %r" % st
    return st


def _has_column(db, table, column):
    return bool(db.query("SELECT 1 FROM information_schema.columns WHERE table_schema = "
                         "DATABASE() AND table_name = %s AND column_name = %s",
                         (table, column)))


def audit_supplier(db, skus):
    """The counter check of the supplier round (DESIGN.md §2) on MariaDB's rows:
    own_reserved = sum of from_own over held/confirmed/purchased orders;
    supplier_reserved = sum of from_supplier over held/confirmed orders plus
    purchased/shipped orders not yet settled (orders.supplier_settled; without
    that column, purchased orders count as live as in audit()); nothing
    negative. Unlike audit() it allows supplier_reserved > supplier_sellable:
    a failed check or a later snapshot may lower the figure below what was
    already promised or bought. Returns {sku: row}."""
    settled = _has_column(db, "orders", "supplier_settled")
    unsettled = ("(o.status IN ('held','confirmed') OR (o.status IN ('purchased','shipped') "
                 "AND NOT o.supplier_settled))" if settled
                 else "o.status IN ('held','confirmed','purchased')")
    bad, out = [], {}
    for k in skus:
        row = db.sku(k)
        assert row is not None, "sku %s missing in MariaDB" % k
        out[k] = row
        own = db.query("SELECT COALESCE(SUM(from_own),0) AS n FROM orders WHERE sku = %s AND "
                       "status IN ('held','confirmed','purchased')", (k.encode(),))[0]["n"]
        sup = db.query("SELECT COALESCE(SUM(o.from_supplier),0) AS n FROM orders o WHERE "
                       "o.sku = %s AND " + unsettled, (k.encode(),))[0]["n"]
        for f in ("own_on_hand", "own_reserved", "supplier_reported", "supplier_sellable",
                  "supplier_reserved"):
            if row[f] is not None and row[f] < 0:
                bad.append("%s: %s=%d < 0" % (k, f, row[f]))
        if row["own_reserved"] != own:
            bad.append("%s: own_reserved=%d, live orders hold from_own=%d"
                       % (k, row["own_reserved"], own))
        if row["supplier_reserved"] != sup:
            bad.append("%s: supplier_reserved=%d, unsettled orders hold from_supplier=%d"
                       % (k, row["supplier_reserved"], sup))
    assert not bad, "supplier audit failed:\n  " + "\n  ".join(bad[:50])
    return out


def orders_by_status(client, order_ids):
    """{order_id: order record} through order.get."""
    return {o: client.ok("order.get", {"order_id": o}) for o in order_ids}


def wait_orders_final(client, order_ids, timeout, final=("purchased", "failed")):
    """Polls order.get until every order is in one of `final`; returns
    {order_id: record}. On timeout the assertion lists the stragglers."""
    deadline = time.monotonic() + timeout
    recs = {}
    while True:
        recs = orders_by_status(client, order_ids)
        left = {o: r["status"] for o, r in recs.items() if r["status"] not in final}
        if not left:
            return recs
        if time.monotonic() > deadline:
            raise AssertionError("after %.1fs %d orders still not in %s: %r"
                                 % (timeout, len(left), final, dict(list(left.items())[:10])))
        time.sleep(0.1)


def alerts_list(client, limit=1000):
    """alerts.list: a list of alert maps (the reply may be the list or
    {"alerts": [...]})."""
    err, res = client.call("alerts.list", {"limit": limit})
    assert err is None, "alerts.list failed: %r" % (err,)
    if isinstance(res, dict):
        res = res.get("alerts")
    assert isinstance(res, list), res
    return res


def db_alerts(db, sku):
    """Rows of MariaDB's alerts table for one SKU (kind, sku, order_id, reason, at)."""
    return db.query("SELECT * FROM alerts WHERE sku = %s ORDER BY at", (sku.encode(),))


def redis_alerts(redis_url, sku, count=100000):
    """Entries of the Redis stream stockd:alerts for one SKU, as dicts of str."""
    import redis  # noqa: PLC0415 - only the supplier tests need it
    u = urllib.parse.urlparse(redis_url)
    r = redis.Redis(host=u.hostname, port=u.port or 6379, socket_timeout=5)
    try:
        out = []
        for _id, fields in r.xrange("stockd:alerts", "-", "+", count=count):
            d = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
            if d.get("sku") == sku:
                out.append(d)
        return out
    finally:
        r.close()


def order_updates(rpc, timeout):
    """Reads the connection for up to `timeout` seconds and returns the order
    records of every [2, "order.update", [record]] notification seen (other
    messages stay where Rpc keeps them)."""
    from stockrpc import RpcTimeout  # noqa: PLC0415
    got, keep = [], []
    deadline = time.monotonic() + timeout
    while True:
        while rpc.others:
            m = rpc.others.pop(0)
            if (isinstance(m, list) and len(m) == 3 and m[0] == 2 and m[1] == "order.update"
                    and isinstance(m[2], list) and m[2] and isinstance(m[2][0], dict)):
                got.append(m[2][0])
            else:
                keep.append(m)
        if got or time.monotonic() >= deadline:
            break
        try:
            rpc._fill(deadline)
        except RpcTimeout:
            break
    rpc.others[:0] = keep
    return got


def wait_order_update(rpc, order_id, status, timeout):
    """Waits for an order.update notification of order_id with status;
    returns its record."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        for rec in order_updates(rpc, max(0.01, deadline - time.monotonic())):
            seen.append((rec.get("order_id"), rec.get("status")))
            if rec.get("order_id") == order_id and rec.get("status") == status:
                return rec
    raise AssertionError("no order.update %s -> %s within %.1fs; saw %r"
                         % (order_id, status, timeout, seen[:20]))
