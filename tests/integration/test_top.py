"""`stockctl top` in a real terminal (issue 7): run it in a detached tmux
session on a private tmux socket while clients reserve, capture the pane and
check that the view shows requests/s by method with p50/p99, queue depths,
batches and MariaDB state, and that the rates are live (non-zero under load).
"""
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from itestlib import skip_or_fail, stockctl_bin


def _tmux(sock, *args, check=True):
    return subprocess.run(["tmux", "-L", sock] + list(args), capture_output=True, text=True,
                          timeout=10, check=check)


def test_top_under_tmux(stockd):
    if shutil.which("tmux") is None:
        skip_or_fail("tmux not installed")
    b = stockctl_bin()
    if not os.access(b, os.X_OK):
        skip_or_fail("stockctl not built: %s" % b)
    with stockd.client() as c:
        c.ok("sku.put", {"sku": "top-1", "own_on_hand": 10 ** 9})
    stop = threading.Event()

    def load():
        with stockd.client() as c:
            i = 0
            while not stop.is_set():
                ids = [c.send("reserve", {"order_id": "top-%d" % (i + j), "sku": "top-1",
                                          "qty": 1}) for j in range(16)]
                for m in ids:
                    c.wait(m)
                i += 16

    t = threading.Thread(target=load)
    t.start()
    sock = "stockd-itest-top-%d" % os.getpid()
    try:
        _tmux(sock, "new-session", "-d", "-s", "top", "-x", "120", "-y", "40",
              "%s --addr %s top --interval 300 --count 40" % (b, stockd.addr))
        screen = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.4)
            screen = _tmux(sock, "capture-pane", "-p", "-t", "top").stdout
            m = re.search(r"^reserve\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", screen, re.M)
            if m and float(m.group(1)) > 0:
                break
        else:
            pytest.fail("no live reserve rate on the screen:\n" + screen)
        print(screen)
        total, errors, p50, p99 = (int(m.group(i)) for i in range(2, 6))
        assert total > 0 and errors == 0 and 0 < p50 <= p99, screen
        for label in ("METHOD", "REQ/S", "P50_US", "P99_US", "QUEUE", "BATCHES", "COMMITS",
                      "MARIADB  up", "REDIS", "node " + stockd.name, "store UP"):
            assert label in screen, "%r missing:\n%s" % (label, screen)
    finally:
        stop.set()
        t.join(10)
        _tmux(sock, "kill-server", check=False)
