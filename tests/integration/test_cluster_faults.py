"""What a cluster tells clients when a SKU's owner dies or freezes while a
request is with it (proto/PROTOCOL.md §13, "Faults"): a change that may have
committed is `unavailable` with `outcome: "unknown"` and `owner`, never a
plain `unavailable` (which means nothing happened); a retry with the same
order_id returns what MariaDB holds. Two instances from tools/cluster (n1
takes the clients' requests, n2 owns the SKUs), on their own database;
every process is stopped by pid and every wait is bounded.
"""
import os
import signal
import threading
import time

import pytest

from stockrpc import RpcClosed, RpcTimeout
from test_cluster import Cluster


@pytest.fixture(scope="module")
def cl(prereqs, tmp_path_factory):
    with Cluster.running(tmp_path_factory, "faults", n=2) as c:
        ring = c.ring()
        c.skus = [k for k in ("fl-%d" % i for i in range(200)) if ring.owner(k) == "n2"][:8]
        assert len(c.skus) == 8
        with c.node_client("n1") as n1:
            for k in c.skus:
                n1.ok("sku.put", {"sku": k, "own_on_hand": 1000000})
        yield c


def ensure_up(c, name):
    try:
        with c.node_client(name, timeout=1) as x:
            x.ok("ping", {})
    except (OSError, RpcClosed, RpcTimeout, AssertionError):
        c.run("start", name)


def is_unknown(err):
    return err is not None and err["code"] == "unavailable" and err.get("outcome") == "unknown"


def settle(c, oid, sku, qty, timeout=20):
    """Retries the reserve until it answers something final; that answer
    must be what MariaDB holds."""
    t_end = time.monotonic() + timeout
    with c.node_client("n1") as n1:
        while True:
            err, res = n1.call("reserve", {"order_id": oid, "sku": sku, "qty": qty})
            if err is None:
                row = c.db.order(oid)
                assert row is not None and row["status"] == res["status"], (oid, res, row)
                return res
            assert err["retryable"], (oid, err)
            assert time.monotonic() < t_end, (oid, err)
            time.sleep(0.2)


def test_owner_frozen_past_the_deadline(cl):
    """n2 frozen (SIGSTOP) with the reserve sent to it: after its deadline n1
    answers unavailable + outcome unknown + owner; once n2 runs again it
    commits what it had received, and the retry returns that record."""
    ensure_up(cl, "n2")
    sku = cl.skus[0]
    with cl.node_client("n1") as n1:
        n1.ok("stock.get", {"sku": sku})  # the peer connection is up and proven
        pid = cl.pid_of("n2")
        os.kill(pid, signal.SIGSTOP)
        try:
            err = n1.err("reserve", {"order_id": "fz-1", "sku": sku, "qty": 2,
                                     "deadline_ms": 500}, timeout=10)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert is_unknown(err) and err["owner"] == "n2", err
    res = settle(cl, "fz-1", sku, 2)
    assert res["status"] == "confirmed" and res["qty"] == 2, res


def test_owner_killed_after_the_request_was_sent(cl):
    """n2 frozen with the reserve in its socket, then kill -9: the
    connection is reset after the send, so n1 cannot know: outcome unknown.
    n2 restarted, the retry decides (n2 never read it) and MariaDB agrees."""
    ensure_up(cl, "n2")
    sku = cl.skus[1]
    with cl.node_client("n1") as n1:
        n1.ok("stock.get", {"sku": sku})
        pid = cl.pid_of("n2")
        os.kill(pid, signal.SIGSTOP)
        mid = n1.send("reserve", {"order_id": "kl-1", "sku": sku, "qty": 3, "deadline_ms": 5000})
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        err, res = n1.wait(mid, timeout=10)
    assert is_unknown(err) and err["owner"] == "n2", (err, res)
    cl.run("start", "n2")
    res = settle(cl, "kl-1", sku, 3)
    assert res["status"] == "confirmed", res


def test_owner_down_before_the_request_is_plain(cl):
    """n2 already dead: the request is never sent, so a plain unavailable
    (no outcome) with owner, and no row; after n2 is back the retry is
    decided anew."""
    ensure_up(cl, "n2")
    sku = cl.skus[2]
    cl.run("kill", "n2")
    try:
        with cl.node_client("n1") as n1:
            for _ in range(2):  # the first notices the reset, the second finds it down
                err = n1.err("reserve", {"order_id": "dn-1", "sku": sku, "qty": 1})
                assert err["code"] == "unavailable" and err["owner"] == "n2", err
            assert "outcome" not in err, err
        assert cl.db.order("dn-1") is None
    finally:
        cl.run("start", "n2")
    assert settle(cl, "dn-1", sku, 1)["status"] == "confirmed"


def test_owner_killed_under_load_never_a_false_nothing(cl):
    """8 clients reserve through n1 on n2's SKUs; n2 is killed (-9) in the
    middle and restarted. Every plain `unavailable` answered meanwhile must
    have no row in MariaDB (nothing happened); every outcome-unknown order
    settles on retry to what MariaDB holds."""
    ensure_up(cl, "n2")
    lock = threading.Lock()
    plain, unknown, ok = [], [], {}
    stop = time.monotonic() + 4.0

    def worker(w):
        c = None
        j = 0
        while time.monotonic() < stop:
            j += 1
            oid = "ld-%d-%d" % (w, j)
            sku = cl.skus[(w + j) % len(cl.skus)]
            try:
                if c is None:
                    c = cl.node_client("n1", timeout=10)
                err, res = c.call("reserve", {"order_id": oid, "sku": sku, "qty": 1,
                                              "deadline_ms": 1000})
            except (OSError, RpcClosed, RpcTimeout):
                if c is not None:
                    c.close()
                c = None
                with lock:
                    unknown.append((oid, sku))   # no answer at all: unknown too
                continue
            with lock:
                if err is None:
                    ok[oid] = res
                elif is_unknown(err):
                    unknown.append((oid, sku))
                elif err["code"] == "unavailable":
                    plain.append(oid)
                else:
                    raise AssertionError((oid, err))
        if c is not None:
            c.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    cl.run("kill", "n2")
    time.sleep(1.0)
    cl.run("start", "n2")
    for t in threads:
        t.join(30)
    rows = cl.db.orders("order_id LIKE 'ld-%%'")
    false_nothing = [o for o in plain if o in rows]
    assert not false_nothing, ("plain unavailable for committed orders: %d of %d, e.g. %r" %
                               (len(false_nothing), len(plain), false_nothing[:5]))
    missing = [o for o in ok if o not in rows]
    assert not missing, missing[:5]
    for oid, sku in unknown:
        settle(cl, oid, sku, 1)
    print("owner killed under load: %d ok, %d plain unavailable (none committed), "
          "%d outcome unknown (all settled by retry)" % (len(ok), len(plain), len(unknown)))
