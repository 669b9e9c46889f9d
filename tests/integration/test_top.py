"""`stockctl top` in a real terminal: run it in a detached tmux
session on a private tmux socket while clients reserve, capture the pane and
check that the view shows requests/s by method with p50/p99, queue depths,
batches and MariaDB state, and that the rates are live (non-zero under load).

Leaving it: top runs on a pseudo-terminal that is its controlling terminal
(so ^C typed there is SIGINT, as in a shell). `q` must end it at once, long
before the next refresh, with status 0; ^C must end it as SIGINT does; both
must leave the terminal's modes exactly as they were and the cursor shown.
"""
import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import termios
import threading
import time

import pytest

from itestlib import skip_or_fail, stockctl_bin, wait_until


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


class _PtyTop:
    """stockctl top on a fresh pty whose master we hold; a thread drains the
    master so top never blocks on a full terminal."""

    def __init__(self, stockd, interval_ms):
        b = stockctl_bin()
        if not os.access(b, os.X_OK):
            skip_or_fail("stockctl not built: %s" % b)
        self.master, self.slave = os.openpty()
        self.before = termios.tcgetattr(self.slave)
        self.out = bytearray()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [b, "--addr", stockd.addr, "top", "--interval", str(interval_ms)],
            stdin=self.slave, stdout=self.slave, stderr=self.slave, close_fds=True,
            start_new_session=True,
            # The pty becomes the controlling terminal of top's new session.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        while True:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if not r:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.out += data

    def text(self):
        with self.lock:
            return bytes(self.out)

    def modes(self):
        return termios.tcgetattr(self.slave)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.reader.join(2)
        os.close(self.master)
        os.close(self.slave)


def _top_running(t, stockd):
    """Waits for a drawn frame with the terminal taken (no echo, no line mode)."""
    def ready():
        lflag = t.modes()[3]
        return b"node " + stockd.name.encode() in t.text() and \
            not lflag & (termios.ECHO | termios.ICANON)
    wait_until(ready, 10, what="top drawn with the terminal in key-at-a-time mode")
    assert t.proc.poll() is None


def _assert_put_back(t):
    assert t.modes() == t.before, "terminal modes not restored: %r != %r" % (
        t.modes(), t.before)
    out = t.text()
    assert b"\033[?25l" in out, "top did not hide the cursor"
    assert out.rstrip(b"\r\n").endswith(b"\033[?25h"), out[-200:]


def test_top_q_quits_at_once(stockd):
    t = _PtyTop(stockd, interval_ms=30000)   # q must not wait for the next refresh
    try:
        _top_running(t, stockd)
        assert b"(q quits)" in t.text()
        t0 = time.monotonic()
        os.write(t.master, b"q")
        rc = t.proc.wait(5)
        took = time.monotonic() - t0
        assert rc == 0, rc
        assert took < 1.0, "q took %.2fs" % took
        t.reader.join(2)
        _assert_put_back(t)
    finally:
        t.close()


def test_top_ctrl_c_restores_terminal(stockd):
    t = _PtyTop(stockd, interval_ms=30000)
    try:
        _top_running(t, stockd)
        os.write(t.master, b"\x03")            # ^C typed on its terminal
        rc = t.proc.wait(5)
        assert rc == -signal.SIGINT, rc        # ends as SIGINT, like before
        t.reader.join(2)
        _assert_put_back(t)
    finally:
        t.close()
