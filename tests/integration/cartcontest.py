"""One arrival sequence of carts on scarce stock, played against any
target (one instance, or a cluster through HAProxy): the carts each
target confirms can then be compared (issue: carts wait instead of
refusing each other). stockbench --cart-contest plays the same shape in C.

make(seed, ...) draws the SKUs' stock and the carts (2-5 distinct SKUs of
1 unit each) from one seed; play(...) sends every cart at once over
`conns` connections (each pipelines its share, in sequence order), waits
for every answer and returns {order_id: (error or None, result)}.
"""
import random
import threading
import time

from stockrpc import Rpc, RpcClosed, RpcTimeout


class Contest:
    def __init__(self, seed, prefix, n_skus=20, n_carts=300, lines=(2, 5), stock=(6, 15)):
        rnd = random.Random(seed)
        self.prefix = prefix
        self.skus = ["%s-%02d" % (prefix, i) for i in range(n_skus)]
        self.stock = {k: rnd.randint(*stock) for k in self.skus}
        self.carts = []
        for i in range(n_carts):
            picked = rnd.sample(self.skus, rnd.randint(*lines))
            self.carts.append(("%s-c%03d" % (prefix, i),
                               [{"sku": k, "qty": 1} for k in picked]))

    def setup(self, client):
        for k in self.skus:
            client.ok("sku.put", {"sku": k, "own_on_hand": self.stock[k]})

    def play(self, host, port, conns=30, timeout=20.0, deadline_ms=None):
        """Every cart at once: connection j sends carts j, j+conns, ... back
        to back, then reads its answers. Returns ({order_id: (err, res)},
        seconds from the first send to the last answer)."""
        out = {}
        lock = threading.Lock()
        start = threading.Barrier(conns)
        t0 = [None]

        def one(j):
            mine = self.carts[j::conns]
            got = {}
            try:
                with Rpc(host, port, timeout) as c:
                    start.wait(10)
                    if t0[0] is None:
                        t0[0] = time.monotonic()
                    ids = {}
                    for oid, lines in mine:
                        params = {"order_id": oid, "lines": lines}
                        if deadline_ms:
                            params["deadline_ms"] = deadline_ms
                        ids[c.send("reserve", params)] = oid
                    for msgid, oid in ids.items():
                        got[oid] = c.wait(msgid, timeout)
            except (RpcClosed, RpcTimeout, OSError) as e:
                for oid, _ in mine:
                    got.setdefault(oid, ({"code": "transport:" + type(e).__name__}, None))
            with lock:
                out.update(got)

        threads = [threading.Thread(target=one, args=(j,)) for j in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 15)
        took = time.monotonic() - (t0[0] or time.monotonic())
        return out, took

    @staticmethod
    def summary(results):
        confirmed = sum(1 for e, r in results.values() if e is None and r["status"] == "confirmed")
        codes = {}
        for e, _ in results.values():
            if e is not None:
                codes[e.get("code")] = codes.get(e.get("code"), 0) + 1
        return confirmed, codes

    def sold_out(self, client):
        return sum(1 for k in self.skus if client.ok("stock.get", {"sku": k})["available"] == 0)
