"""stockctl smoke test.

Goal: `stockctl [--addr HOST:PORT] ping | get SKU |
reserve ORDER SKU QTY [--hold MS] | confirm | release | ship | order |
sku-put SKU --own N | adjust SKU DELTA REASON | stats`, human-readable
output by default, `--json` for scripts, non-zero exit on error.

Method: run STOCKCTL_BIN (default: next to STOCKD_BIN) against the module's
stockd with a 10 s timeout per call; check exit codes, that human output
mentions the key facts, and that --json output parses and carries the
contract's keys. --json is given before the command.
"""
import json
import os
import subprocess

import pytest

from itestlib import check_stock_map, skip_or_fail, stockctl_bin


@pytest.fixture(scope="module")
def ctl(stockd):
    b = stockctl_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        skip_or_fail("stockctl binary not built yet: %s (set STOCKCTL_BIN)" % b)

    def run(*args, json_out=False, addr=None):
        argv = [b, "--addr", addr or stockd.addr] + (["--json"] if json_out else []) + \
            [str(a) for a in args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if json_out and p.returncode == 0:
            try:
                p.json = json.loads(p.stdout)
            except ValueError:
                raise AssertionError("--json output is not JSON: %r" % p.stdout)
        return p
    return run


def test_ping(ctl, stockd):
    p = ctl("ping")
    assert p.returncode == 0, p
    assert stockd.name in p.stdout, p.stdout
    p = ctl("ping", json_out=True)
    assert p.returncode == 0 and p.json["node"] == stockd.name, p


def test_put_get_reserve_order(ctl):
    p = ctl("sku-put", "ctl-1", "--own", 5)
    assert p.returncode == 0, p
    p = ctl("get", "ctl-1")
    assert p.returncode == 0 and "5" in p.stdout, p
    p = ctl("get", "ctl-1", json_out=True)
    assert p.returncode == 0, p
    check_stock_map(p.json)
    assert p.json["available"] == 5

    p = ctl("reserve", "ctl-o1", "ctl-1", 2)
    assert p.returncode == 0 and "confirmed" in p.stdout, p
    p = ctl("reserve", "ctl-o2", "ctl-1", 1, "--hold", 60000, json_out=True)
    assert p.returncode == 0 and p.json["status"] == "held", p
    assert p.json["from_own"] == 1 and "hold_expires_at" in p.json
    p = ctl("confirm", "ctl-o2", json_out=True)
    assert p.returncode == 0 and p.json["status"] == "confirmed", p
    p = ctl("order", "ctl-o1", json_out=True)
    assert p.returncode == 0 and p.json["order_id"] == "ctl-o1" and p.json["qty"] == 2, p
    p = ctl("release", "ctl-o1")
    assert p.returncode == 0 and "released" in p.stdout, p
    p = ctl("ship", "ctl-o2", json_out=True)
    assert p.returncode == 0 and p.json["status"] == "shipped", p
    p = ctl("adjust", "ctl-1", 3, "delivery", json_out=True)
    assert p.returncode == 0 and p.json["own_on_hand"] == 7, p
    p = ctl("stats", json_out=True)
    assert p.returncode == 0 and isinstance(p.json, dict), p


def test_errors_exit_nonzero(ctl):
    ctl("sku-put", "ctl-2", "--own", 1)
    p = ctl("reserve", "ctl-o3", "ctl-2", 5)
    assert p.returncode != 0, p
    assert "insufficient" in (p.stdout + p.stderr), p
    p = ctl("get", "no-such-sku")
    assert p.returncode != 0 and "unknown_sku" in (p.stdout + p.stderr), p
    p = ctl("order", "no-such-order")
    assert p.returncode != 0 and "not_found" in (p.stdout + p.stderr), p
    p = ctl("reserve", "ctl-o4", "ctl-2", "lots")
    assert p.returncode != 0, p
    p = ctl("frobnicate")
    assert p.returncode != 0, p
    p = ctl("ping", addr="127.0.0.1:1")
    assert p.returncode != 0, p


def test_reserve_lines(ctl):
    """reserve ORDER --line SKU:QTY ...: an order of several lines, its
    lines printed; a line that cannot be met is named; usage errors."""
    assert ctl("sku-put", "ctl-l1", "--own", 5).returncode == 0
    assert ctl("sku-put", "ctl-l2", "--own", 2).returncode == 0
    p = ctl("reserve", "ctl-lo1", "--line", "ctl-l1:2", "--line", "ctl-l2:1",
            "--line", "ctl-l1:1", "--hold", 60000)
    assert p.returncode == 0, p
    out = p.stdout
    assert "ctl-lo1" in out and "held" in out and "2 lines" in out, out
    assert "line 0" in out and "3 x ctl-l1" in out, out
    assert "line 1" in out and "1 x ctl-l2" in out, out
    p = ctl("order", "ctl-lo1", json_out=True)
    assert p.returncode == 0, p
    o = p.json
    assert o["n_lines"] == 2 and o["qty"] == 4 and o["sku"] == "ctl-l1", o
    assert [(l["line"], l["sku"], l["qty"], l["status"]) for l in o["lines"]] == \
        [(0, "ctl-l1", 3, "held"), (1, "ctl-l2", 1, "held")], o
    p = ctl("confirm", "ctl-lo1")
    assert p.returncode == 0 and "confirmed" in p.stdout and "line 1" in p.stdout, p

    # ctl-l2 has 1 left: the second line fails, nothing is held.
    p = ctl("reserve", "ctl-lo2", "--line", "ctl-l1:1", "--line", "ctl-l2:2")
    assert p.returncode == 1, p
    err = p.stdout + p.stderr
    assert "insufficient" in err and "line 1" in err and "ctl-l2" in err, err
    p = ctl("reserve", "ctl-lo2", "--line", "ctl-l1:1", "--line", "ctl-l2:2", json_out=True)
    assert p.returncode == 1, p
    e = json.loads(p.stdout)["error"]
    assert e["code"] == "insufficient" and e["line"] == 1 and e["sku"] == "ctl-l2", e
    assert e["available"] == 1, e
    p = ctl("get", "ctl-l1", json_out=True)
    assert p.returncode == 0 and p.json["available"] == 2, p   # 5 - 3, the failed cart held none

    # Usage: a bad line, --line elsewhere, SKU/QTY positionals with --line.
    for args in (["reserve", "ctl-lo3", "--line", "ctl-l1"],
                 ["reserve", "ctl-lo3", "--line", ":2"],
                 ["reserve", "ctl-lo3", "--line", "ctl-l1:x"],
                 ["reserve", "ctl-lo3", "ctl-l1", "1", "--line", "ctl-l1:1"],
                 ["get", "ctl-l1", "--line", "ctl-l1:1"]):
        p = ctl(*args)
        assert p.returncode == 2, (args, p)
    p = ctl("--help")
    assert "--line SKU:QTY" in p.stdout, p.stdout
