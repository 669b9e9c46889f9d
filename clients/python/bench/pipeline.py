"""Pipelined reserves/s of the Python clients: batches of BATCH reserves
(pipeline().execute()) on one connection for SECONDS, over SKUS SKUs, with
the blocking Client (sync) or the AsyncClient (async). Prints one JSON line.

    /usr/bin/python3 pipeline.py sync|async HOST:PORT [SECONDS] [SKUS] [BATCH] [TOKEN]
"""
import asyncio
import json
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import stockd  # noqa: E402


async def aw(v):
    return await v if asyncio.iscoroutine(v) or isinstance(v, asyncio.Future) else v


async def main(flavor, addr, seconds=5.0, skus=100, batch=1000, token=None):
    cls = stockd.Client if flavor == "sync" else stockd.AsyncClient
    c = cls(addr, token=token)
    run = "bpy%s%s" % (flavor[0], secrets.token_hex(3))
    p = c.pipeline()
    for i in range(skus):
        p.sku_put("%s-%d" % (run, i), 1000000000)
    for r in await aw(p.execute()):
        if isinstance(r, Exception):
            raise r
    n = errors = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for i in range(n, n + batch):
            p.reserve("%s-o%d" % (run, i), "%s-%d" % (run, i % skus), 1)
        errors += sum(isinstance(r, Exception) for r in await aw(p.execute()))
        n += batch
    dt = time.monotonic() - t0
    await aw(c.close())
    print(json.dumps({"client": "python-" + flavor, "reserves": n, "errors": errors,
                      "seconds": round(dt, 3), "per_s": round(n / dt)}))


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], float(a[2]) if len(a) > 2 else 5.0,
                     int(a[3]) if len(a) > 3 else 100, int(a[4]) if len(a) > 4 else 1000,
                     a[5] if len(a) > 5 else None))
