"""Operability: /metrics, /healthz, /readyz, SIGHUP reload,
SIGTERM drain under load, --check-config.

Method: start stockd with --http on a free port; check the exposition with
promcheck (a strict format checker, so the suite needs no Prometheus; where
promtool is installed, from Debian's `prometheus` package, it checks too); drive load
over several connections and compare /metrics with `stats` once the load is
over (during load the two are read at different instants, so only format and
monotonic growth are checked then). The drain test sends SIGTERM while
clients pipeline reserves and checks that every request sent before the
signal got an answer or a closed connection, that every acknowledged order
is in MariaDB, the audit holds, and stockd exits 0 within its 4 s drain bound
(5 s allowed here for the signal, the exit and a loaded machine).
"""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

import promcheck
from itestlib import HOST, audit, free_port, stockd_bin, wait_until
from stockrpc import Rpc, RpcClosed, RpcTimeout


def http_get(port, path, timeout=5):
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def scrape(port):
    code, ctype, body = http_get(port, "/metrics")
    assert code == 200, (code, body)
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return promcheck.parse(body)


@pytest.fixture(scope="module")
def ops(make_stockd, db):
    hp = free_port()
    s = make_stockd(db=db, name="ops", args=["--http", "%s:%d" % (HOST, hp)])
    s.http_port = hp
    return s


def test_health_and_ready(ops):
    assert http_get(ops.http_port, "/healthz")[::2] == (200, "ok\n")
    assert http_get(ops.http_port, "/readyz")[::2] == (200, "ready\n")
    assert http_get(ops.http_port, "/nope")[0] == 404


def _raw_get(port, path, method="GET"):
    """The status line and headers exactly as sent (urllib would fold them)."""
    with socket.create_connection((HOST, port), timeout=5) as so:
        so.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    % (method, path)).encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = so.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return head[0], head[1:]


def test_metrics_content_type_exact(ops):
    """Prometheus picks the parser by Content-Type: the text format's own,
    byte for byte, on GET and HEAD; the other pages stay plain text."""
    for method in ("GET", "HEAD"):
        status, headers = _raw_get(ops.http_port, "/metrics", method)
        assert status == "HTTP/1.1 200 OK", (method, status)
        ctypes = [h for h in headers if h.lower().startswith("content-type:")]
        assert ctypes == ["Content-Type: text/plain; version=0.0.4; charset=utf-8"], \
            (method, headers)
    for path in ("/healthz", "/readyz"):
        status, headers = _raw_get(ops.http_port, path)
        assert "Content-Type: text/plain; charset=utf-8" in headers, (path, headers)


def test_promtool_accepts_metrics(ops):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus); promcheck checks")
    with ops.client() as c:
        c.ok("sku.put", {"sku": "prom-1", "own_on_hand": 5})
        c.ok("reserve", {"order_id": "prom-o1", "sku": "prom-1", "qty": 1})
    code, _, body = http_get(ops.http_port, "/metrics")
    assert code == 200
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_checker_refuses_bad_exposition():
    bad = [
        "x 1",                                                   # no final newline
        "# TYPE x counter\nx 1\n",                               # counter not _total
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",  # not contiguous
        "a{x=\"1\",x=\"2\"} 1\n",                                # label twice
        "a{x=\"\\q\"} 1\n",                                      # bad escape
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",   # no +Inf
        "a 1\na 2\n",                                            # duplicate series
        "a one\n",
    ]
    for text in bad:
        with pytest.raises(promcheck.PromFormatError):
            promcheck.parse(text)
    promcheck.parse("# HELP a x\n# TYPE a gauge\na{b=\"q\\\"\\\\\\n\"} -1.5e3\n")


def _load(ops, seconds, tag, conns=4):
    """Reserve/release/stock.get from several threads for `seconds`."""
    with ops.client() as c:
        c.ok("sku.put", {"sku": "m-" + tag, "own_on_hand": 10 ** 9})
    stop = time.monotonic() + seconds
    errors = []

    def worker(k):
        try:
            with ops.client() as c:
                i = 0
                while time.monotonic() < stop:
                    ids = []
                    for j in range(8):
                        oid = "%s-%d-%d" % (tag, k, i + j)
                        ids.append(c.send("reserve", {"order_id": oid, "sku": "m-" + tag,
                                                      "qty": 1, "hold_ms": 60000}))
                    ids.append(c.send("stock.get", {"sku": "m-" + tag}))
                    ids.append(c.send("order.get", {"order_id": "missing-" + tag}))
                    for m in ids:
                        c.wait(m)
                    c.ok("release", {"order_id": "%s-%d-%d" % (tag, k, i)})
                    i += 8
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in ts:
        t.start()
    return ts, errors


def test_metrics_match_stats_under_load(ops):
    ts, errors = _load(ops, 3.0, "mx")
    last = None
    while any(t.is_alive() for t in ts):
        fams = scrape(ops.http_port)            # strict format, also under load
        n = sum(v for _, _, v in fams["stockd_requests_total"]["samples"])
        assert last is None or n >= last, "request counter went backwards"
        last = n
        time.sleep(0.3)
    for t in ts:
        t.join()
    assert not errors, errors
    with ops.client() as c:
        st = c.ok("stats", {})
        fams = scrape(ops.http_port)
    # requests by method and result (stats' own call is counted after its reply)
    for method, results in st["requests"].items():
        for result, n in results.items():
            got = promcheck.value(fams, "stockd_requests_total", method=method, result=result)
            if method == "stats":
                assert got in (n, n + 1), (method, result, n, got)
            else:
                assert got == n, (method, result, n, got)
    prom_methods = {l["method"] for _, l, _ in fams["stockd_requests_total"]["samples"]}
    assert prom_methods - {"stats"} == set(st["requests"]) - {"stats"}
    # latency histograms: one per answered method, counts equal stats
    for method, lat in st["latency_us"].items():
        if method == "stats":
            continue
        cnt = promcheck.value(fams, "stockd_request_duration_seconds",
                              "stockd_request_duration_seconds_count", method=method)
        assert cnt == lat["count"] == sum(st["requests"][method].values()), (method, lat)
        assert lat["p50"] <= lat["p99"] <= lat["max"]
        # the p99 bound of stats and the buckets agree: at least 99% of
        # answers are at or below the first bucket edge >= p99
        buckets = [(float(l["le"]), v) for n, l, v in
                   fams["stockd_request_duration_seconds"]["samples"]
                   if n.endswith("_bucket") and l["method"] == method]
        le, below = next((le, v) for le, v in buckets if le * 1e6 >= lat["p99"])
        assert below >= 0.99 * cnt, (method, le, below, cnt)
    # engine and store figures
    b, cm = st["batches"], st["commits"]
    assert promcheck.value(fams, "stockd_batches_total") == b["batches"]
    assert promcheck.value(fams, "stockd_batch_ops_total") == b["batch_ops"]
    assert promcheck.value(fams, "stockd_batch_size_ops", "stockd_batch_size_ops_sum") == \
        b["batch_ops"]
    for k, o in (("committed", "committed"), ("aborted", "aborted"), ("unknown", "unknown")):
        assert promcheck.value(fams, "stockd_batches_done_total", outcome=o) == b[k]
    for o in ("ok", "aborted", "unknown"):
        assert promcheck.value(fams, "stockd_store_commits_total", outcome=o) == cm[o]
    assert promcheck.value(fams, "stockd_commit_duration_seconds",
                           "stockd_commit_duration_seconds_count") == \
        cm["ok"] + cm["aborted"] + cm["unknown"]
    assert promcheck.value(fams, "stockd_mariadb_connections", state="up") == cm["conns_up"]
    assert promcheck.value(fams, "stockd_queue_ops") == st["queue"]["queued"]
    assert promcheck.value(fams, "stockd_skus") == st["state"]["skus"]
    assert promcheck.value(fams, "stockd_orders") == st["state"]["orders"]
    assert promcheck.value(fams, "stockd_mariadb_up") == 1
    assert promcheck.value(fams, "stockd_connections_accepted_total") == \
        st["connections"]["total"]
    assert promcheck.value(fams, "stockd_connections") == st["connections"]["current"]
    assert b["batches"] > 0 and b["batch_ops"] > b["batches"], b  # load was batched
    # read path: Bloom filter and Redis cache, where stats has them
    rp = st.get("read_path")
    if rp:
        cache, bloom = rp["cache"], rp["bloom"]
        assert promcheck.value(fams, "stockd_redis_up") == int(cache["up"])
        assert promcheck.value(fams, "stockd_cache_sets_total", result="ok") == cache["sets_ok"]
        assert promcheck.value(fams, "stockd_bloom_items") == bloom["items"]
        assert promcheck.value(fams, "stockd_bloom_checks_total", answer="no") == \
            bloom["negatives"]
        assert promcheck.value(fams, "stockd_cold_sku_loads_total", result="started") == \
            rp["cold"]["loads"]


def test_sighup_reload(make_stockd, db, tmp_path):
    cfg = tmp_path / "stockd.ini"
    cfg.write_text("[stockd]\nqueue-per-sku-max = 1000\nlog-level = info\n")
    hp = free_port()
    s = make_stockd(db=db, name="hup", args=["--config", str(cfg), "--http", "%s:%d" % (HOST, hp)])
    with s.client() as c:
        assert c.ok("stats", {})["queue"]["per_sku_max"] == 1000
        cfg.write_text("[stockd]\nqueue-per-sku-max = 3\nlog-level = debug\n")
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: c.ok("stats", {})["queue"]["per_sku_max"] == 3, 5, what="reload")
        fams = scrape(hp)
        assert promcheck.value(fams, "stockd_config_reloads_total") == 1
        assert promcheck.value(fams, "stockd_queue_limit_ops", scope="sku") == 3
        # a broken file is refused and the running configuration kept
        cfg.write_text("[stockd]\nqueue-per-sku-max = many\n")
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in open(s.log_path).read(), 5, what="refusal logged")
        assert s.alive()
        assert c.ok("stats", {})["queue"]["per_sku_max"] == 3
        assert promcheck.value(scrape(hp), "stockd_config_reloads_total") == 1
    log = open(s.log_path).read()
    assert "configuration reloaded" in log and "level=debug" in log  # debug lines now on
    s.stop()


def test_check_config(tmp_path):
    good = tmp_path / "good.ini"
    good.write_text("listen = 127.0.0.1:7999\nhttp = 127.0.0.1:7998\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKD_")}
    p = subprocess.run([stockd_bin(), "--config", str(good), "--check-config"],
                       capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 0 and "ok" in p.stdout, p
    bad = tmp_path / "bad.ini"
    bad.write_text("http = 127.0.0.1\n")
    p = subprocess.run([stockd_bin(), "--config", str(bad), "--check-config"],
                       capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 2 and "bad.ini:1" in p.stderr, p
    p = subprocess.run([stockd_bin(), "--check-config", "--queue-per-sku-max", "10",
                        "--queue-total-max", "5"], capture_output=True, text=True, timeout=10,
                       env=env)
    assert p.returncode == 2 and "queue-per-sku-max" in p.stderr, p


class _DrainClient(threading.Thread):
    """Pipelines reserves until the connection closes; remembers each
    request's send time and how it ended."""

    def __init__(self, s, k, stop_at):
        super().__init__()
        self.s, self.k, self.stop_at = s, k, stop_at
        self.sent = {}         # msgid -> (order_id, t_sent)
        self.answers = {}      # msgid -> (err, res)
        self.closed_at = None
        self.error = None

    def run(self):
        try:
            c = Rpc(HOST, self.s.port, timeout=10)
        except OSError as e:
            self.error = e
            return
        i = 0
        try:
            while time.monotonic() < self.stop_at:
                batch = []
                for _ in range(16):
                    oid = "dr-%d-%d" % (self.k, i)
                    i += 1
                    try:
                        m = c.send("reserve", {"order_id": oid, "sku": "drain-%d" % (i % 3),
                                               "qty": 1})
                    except OSError:
                        raise RpcClosed("send failed")
                    self.sent[m] = (oid, time.monotonic())
                    batch.append(m)
                for m in batch:
                    self.answers[m] = c.wait(m, timeout=8)
        except RpcClosed:
            self.closed_at = time.monotonic()
        except RpcTimeout as e:
            self.error = AssertionError("client %d: no answer and no close: %r" % (self.k, e))
        finally:
            c.close()


def test_sigterm_drain_under_load(make_stockd, db):
    s = make_stockd(db=db, name="drain")
    with s.client() as c:
        for k in range(3):
            c.ok("sku.put", {"sku": "drain-%d" % k, "own_on_hand": 10 ** 9})
    clients = [_DrainClient(s, k, time.monotonic() + 20) for k in range(6)]
    for t in clients:
        t.start()
    time.sleep(1.5)
    t_sig = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    rc = s.proc.wait(10)
    took = time.monotonic() - t_sig
    for t in clients:
        t.join(15)
        assert not t.is_alive(), "a client hung after the drain"
    assert rc == 0, "exit status %s" % rc
    assert took < 5.0, "drain took %.2fs" % took
    acked, unanswered_before = [], []
    for t in clients:
        assert t.error is None, t.error
        assert t.closed_at is not None, "client %d never saw its connection close" % t.k
        for m, (oid, ts) in t.sent.items():
            a = t.answers.get(m)
            if a is None:
                if ts < t_sig:
                    unanswered_before.append(oid)   # allowed: its connection closed
                continue
            err, res = a
            if err is None:
                acked.append(oid)
            else:
                assert err["code"] == "unavailable" and err["retryable"], err
    assert len(acked) > 100, "too little load before the signal: %d" % len(acked)
    # no acknowledged order lost: all in MariaDB, confirmed
    rows = db.orders()
    lost = [o for o in acked if o not in rows or rows[o]["status"] != "confirmed"]
    assert not lost, "acknowledged orders missing in MariaDB: %r" % lost[:10]
    audit(db)
    log = open(s.log_path).read()
    assert "signal: draining" in log and "stockd stopped" in log
    print("drain: %d acknowledged, %d sent before the signal unanswered (closed), exit in %.2fs"
          % (len(acked), len(unanswered_before), took))


def test_order_id_with_nul_refused(ops):
    """Found by fuzz_request: an order_id holding NUL passed validation as the
    C string before the NUL ("" or an alias of another order)."""
    with ops.client() as c:
        c.ok("sku.put", {"sku": "nul-1", "own_on_hand": 5})
        c.ok("reserve", {"order_id": "ab", "sku": "nul-1", "qty": 1})
        for oid in ("\x00F1", "ab\x00x"):
            for method, params in (("reserve", {"order_id": oid, "sku": "nul-1", "qty": 1}),
                                   ("order.get", {"order_id": oid}),
                                   ("release", {"order_id": oid})):
                e = c.err(method, params)
                assert e["code"] == "invalid" and e["field"] == "order_id", (method, oid, e)
        assert c.ok("stock.get", {"sku": "nul-1"})["available"] == 4


# ---------------------------------------------------------------- supplier round

def test_stats_supplier_alerts_notify(ops):
    with ops.client() as c:
        st = c.ok("stats", {})
    sup = st["supplier"]
    assert sup["enabled"] is False, sup
    for k in ("syncs", "calls", "ok", "failed", "pokes", "broken", "pushes", "push_refused",
              "push_stale", "push_duplicate", "push_seen_evicted", "purchases_pending", "purchased", "purchase_failed", "mappings_broken",
              "settled_units"):
        assert isinstance(sup[k], int), (k, sup)
    assert isinstance(sup["trust"], dict), sup
    assert set(sup["purchase"]) == {"claimed", "lookups", "previews", "creates", "purchased",
                                    "failed", "retries", "dropped", "active",
                                    "checks_reused"}, sup
    assert {"calls", "attempts", "in_flight", "queued"} <= set(sup["client"]), sup
    assert set(st["alerts"]) == {"total", "kept", "stream_sent", "stream_ok", "stream_failed",
                                 "stream_skipped"}, st["alerts"]
    assert set(st["notify"]) == {"subscribers", "sent", "dropped"}, st["notify"]
    assert set(st["state"]) == {"skus", "orders", "holds_expired", "store_up", "outcome_unknown",
                                "skus_set_aside", "orders_set_aside", "set_aside_alerts_dropped",
                                "order_retention_ms", "orders_evicted", "orders_reloaded",
                                "order_reads", "order_reads_failed", "order_reads_in_flight",
                                "order_key_refusals"}


def test_notify_counts_and_unsubscribe_on_close(ops):
    with ops.client() as c:
        before = c.ok("stats", {})["notify"]
        with ops.client() as l1, ops.client() as l2:
            l1.subscribe()
            l2.subscribe()
            assert c.ok("stats", {})["notify"]["subscribers"] == before["subscribers"] + 2
            c.ok("sku.put", {"sku": "ops-sub", "own_on_hand": 5})
            c.ok("reserve", {"order_id": "ops-sub-o1", "sku": "ops-sub", "qty": 1, "hold_ms": 1000})
            for lst in (l1, l2):
                o = lst.next_order_update(timeout=8)
                assert o is not None and o["order_id"] == "ops-sub-o1" and o["status"] == "expired"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = c.ok("stats", {})["notify"]
            if after["subscribers"] == before["subscribers"]:
                break
            time.sleep(0.05)
        assert after["subscribers"] == before["subscribers"], after
        assert after["sent"] >= before["sent"] + 2, (before, after)


def _ctl(ops, *args, timeout=15):
    from itestlib import stockctl_bin
    b = stockctl_bin()
    if not os.path.isfile(b):
        pytest.skip("stockctl not built: %s" % b)
    return subprocess.run([b, "--addr", "%s:%d" % (HOST, ops.port)] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def test_stockctl_supplier_commands(ops):
    p = _ctl(ops, "supplier-put", "ctl-sup", "--trust", "0.4", "--event", "on",
             "--event-trust", "0.2")
    assert p.returncode == 0, p.stderr
    p = _ctl(ops, "--json", "supplier-get", "ctl-sup")
    assert p.returncode == 0, p.stderr
    import json
    t = json.loads(p.stdout)
    assert t["trust"] == 0.4 and t["event_mode"] is True and t["effective"] == 0.2, t
    p = _ctl(ops, "supplier-get", "ctl-none")
    assert p.returncode == 1 and "not_found" in p.stderr, (p.stdout, p.stderr)
    p = _ctl(ops, "supplier-put", "ctl-sup", "--trust", "1.5")
    assert p.returncode == 2, p.stderr
    p = _ctl(ops, "alerts", "--limit", "5")
    assert p.returncode == 0 and p.stdout.startswith("at "), (p.stdout, p.stderr)
    p = _ctl(ops, "--json", "alerts")
    assert p.returncode == 0 and isinstance(json.loads(p.stdout), list), p.stdout
    p = _ctl(ops, "alerts", "--limit", "0")
    assert p.returncode == 2, p.stderr


def test_stockctl_watch(ops):
    from itestlib import stockctl_bin
    b = stockctl_bin()
    if not os.path.isfile(b):
        pytest.skip("stockctl not built: %s" % b)
    w = subprocess.Popen([b, "--addr", "%s:%d" % (HOST, ops.port), "--json", "watch",
                          "--count", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        with ops.client() as c:
            deadline = time.monotonic() + 5
            while c.ok("stats", {})["notify"]["subscribers"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            c.ok("sku.put", {"sku": "ops-watch", "own_on_hand": 5})
            c.ok("reserve", {"order_id": "ops-watch-o1", "sku": "ops-watch", "qty": 1,
                             "hold_ms": 1000})
        out, err = w.communicate(timeout=10)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert w.returncode == 0, err
    import json
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["order_id"] == "ops-watch-o1" and rec["status"] == "expired", rec
