"""/readyz notices a frozen MariaDB while stockd is idle.

A database that stops answering without closing its sockets (SIGSTOP here;
a hung host or a dropped network path in production) used to go unnoticed
until an order's commit timed out: an idle instance stayed "ready" and the
balancer kept sending it traffic. stockd now pings each writer connection
that has been idle for 2 s (nonblocking, on the loop) and takes down one
whose ping is not answered within the connect timeout.

Method: an idle stockd with --http; MariaDB gets SIGSTOP (SIGCONT in a
finally). No RPC that touches the store is sent meanwhile, only /readyz,
/healthz and `ping`. Checked: /readyz turns 503 "mariadb down" within a few
seconds and stockd_mariadb_up drops to 0; the loop never waits on the
database (every `ping` and /healthz answered within 50 ms throughout);
after SIGCONT /readyz is 200 again and a reserve commits.
"""
import time
import urllib.error
import urllib.request

from itestlib import HOST, free_port, mariadb_stopped, wait_until

NOT_READY_WITHIN_S = 10.0   # probe after 2-3 s idle + 2 s connect timeout, with slack


def http_get(port, path, timeout=5):
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def mariadb_up_metric(port):
    code, body = http_get(port, "/metrics")
    assert code == 200, code
    for line in body.splitlines():
        if line.startswith("stockd_mariadb_up "):
            return float(line.split()[1])
    raise AssertionError("no stockd_mariadb_up in /metrics")


def timed(fn):
    t = time.monotonic()
    v = fn()
    return (time.monotonic() - t) * 1000.0, v


def test_readyz_sees_frozen_mariadb_while_idle(make_stockd, db):
    hp = free_port()
    s = make_stockd(db=db, name="readyz", args=["--http", "%s:%d" % (HOST, hp)])
    with s.client() as c:
        c.ok("sku.put", {"sku": "rz-1", "own_on_hand": 10})
    wait_until(lambda: http_get(hp, "/readyz") == (200, "ready\n"), 10, what="ready")
    time.sleep(3.0)   # idle long enough that every connection is due a probe
    assert http_get(hp, "/readyz") == (200, "ready\n")
    lat = []
    pinger = s.client(timeout=5)
    try:
        with mariadb_stopped():
            t0 = time.monotonic()
            went = None
            while time.monotonic() - t0 < NOT_READY_WITHIN_S:
                ms, (code, body) = timed(lambda: http_get(hp, "/readyz"))
                lat.append(ms)
                lat.append(timed(lambda: pinger.ok("ping", {}, timeout=2))[0])
                lat.append(timed(lambda: http_get(hp, "/healthz"))[0])
                if code == 503:
                    went = time.monotonic() - t0
                    assert "mariadb down" in body, body
                    break
                assert (code, body) == (200, "ready\n"), (code, body)
                time.sleep(0.1)
            assert went is not None, "still ready %.0f s after MariaDB froze" % NOT_READY_WITHIN_S
            assert mariadb_up_metric(hp) == 0
            # Stays not ready while frozen (reconnects time out), loop still free.
            for _ in range(10):
                lat.append(timed(lambda: pinger.ok("ping", {}, timeout=2))[0])
                assert http_get(hp, "/readyz")[0] == 503
                time.sleep(0.1)
            assert s.alive()
    finally:
        pinger.close()
    assert max(lat) < 50.0, "the loop waited: slowest answers %r ms" % sorted(lat)[-5:]
    print("MariaDB frozen: not ready after %.2fs; slowest answer %.1f ms" % (went, max(lat)))

    wait_until(lambda: http_get(hp, "/readyz") == (200, "ready\n"), 20, step=0.2,
               what="ready again after SIGCONT")
    assert mariadb_up_metric(hp) == 1
    with s.client() as c:
        r = c.ok("reserve", {"order_id": "rz-o1", "sku": "rz-1", "qty": 1}, timeout=10)
        assert r["status"] == "confirmed", r
    assert db.order("rz-o1")["status"] == "confirmed"
    log = open(s.log_path).read()
    assert "probe: no answer within" in log, "the down connection was not logged as a probe"
