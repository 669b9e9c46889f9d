"""Pipelined reserves/s of each gateway client beside the C client
(stockbench), against one stockd, in one sitting. Prints a Markdown table
and the command lines. Speed is measured here, never asserted by tests.

    tools/stack up && eval "$(tools/stack env)"
    meson setup build && ninja -C build
    /usr/bin/python3 clients/bench.py [SECONDS [ROUNDS]]   # default 5 s, 3 rounds

Every client: one connection, batches of 1,000 reserves (qty 1, confirmed
at once) written back to back, the next batch once all replies are in; 100
SKUs of its own with unlimited stock. stockbench keeps 1,000 in flight on one
connection (--pipeline 1000), refilled as replies come. The clients take
turns, ROUNDS times over, and the median of each is reported with its
range: on a shared machine one run alone says little. STOCKD_BIN and
STOCKBENCH_BIN default to build/.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("STOCKD_BIN", os.path.join(ROOT, "build", "stockd"))
from itestlib import Db, Stockd  # noqa: E402

SKUS, BATCH = 100, 1000


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    bench = os.environ.get("STOCKBENCH_BIN") or os.path.join(ROOT, "build", "bench", "stockbench")
    db = Db(os.environ["STOCKD_DB"], "clients_bench_" + uuid.uuid4().hex[:8])
    db.create()
    work = tempfile.mkdtemp(prefix="stockd-clients-bench-")
    s = Stockd(db.url, work, name="clients-bench")
    try:
        s.start()
        a = s.addr
        out_json = os.path.join(work, "c.json")
        runs = [
            ("C (stockbench)", [bench, "--mode", "stockd", "--target", a, "--db", db.url,
                                "--connections", "1", "--pipeline", str(BATCH), "--skus", str(SKUS),
                                "--duration", str(seconds), "--warmup", "1", "--no-progress",
                                "--json", out_json]),
            ("PHP", ["php", os.path.join(HERE, "php", "bench", "pipeline.php"), a, str(seconds),
                     str(SKUS), str(BATCH)]),
            ("Python (blocking)", ["/usr/bin/python3", os.path.join(HERE, "python", "bench",
                                                                    "pipeline.py"),
                                   "sync", a, str(seconds), str(SKUS), str(BATCH)]),
            ("Python (asyncio)", ["/usr/bin/python3", os.path.join(HERE, "python", "bench",
                                                                   "pipeline.py"),
                                  "async", a, str(seconds), str(SKUS), str(BATCH)]),
            ("Node", ["node", os.path.join(HERE, "node", "bench", "pipeline.js"), a, str(seconds),
                      str(SKUS), str(BATCH)]),
        ]
        figures = {name: [] for name, _ in runs}
        for rnd in range(rounds):
            for name, argv in runs:
                r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=seconds * 4 + 120,
                                   env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
                if r.returncode != 0:
                    sys.exit("%s failed:\n%s" % (name, r.stdout[-3000:]))
                if name.startswith("C "):
                    m = json.load(open(out_json))["modes"]["stockd"]
                    per_s, errors = m["reservations_per_s"], sum(m.get("errors", {}).values())
                else:
                    res = json.loads(r.stdout.strip().splitlines()[-1])
                    per_s, errors = res["per_s"], res["errors"]
                if errors:
                    sys.exit("%s: %d reserves failed" % (name, errors))
                figures[name].append(per_s)
                print("round %d: %-18s %10.0f reserves/s" % (rnd + 1, name, per_s),
                      file=sys.stderr)
        rows = [(name, statistics.median(v), min(v), max(v)) for name, v in figures.items()]
    finally:
        s.stop()
        db.drop()
    c_rate = rows[0][1]
    print("| client | pipelined reserves/s (median) | range | vs C |")
    print("| --- | ---: | ---: | ---: |")
    for name, med, lo, hi in rows:
        print("| %s | %s | %s - %s | %.2f |" % (name, format(int(round(med)), ","),
                                                format(int(round(lo)), ","),
                                                format(int(round(hi)), ","), med / c_rate))
    print()
    print("%s, %d cores, %d rounds of %s s per client, %d SKUs, batches of %d, one connection "
          "each." % (platform.platform(), os.cpu_count(), rounds, seconds, SKUS, BATCH))


if __name__ == "__main__":
    main()
