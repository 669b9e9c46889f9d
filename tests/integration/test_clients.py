"""The gateway clients (clients/php, clients/python, clients/node) against
real servers: each language's own suite plays the shared scenarios of
clients/scenarios.json (the hoodie story, a retry after a cut connection,
1,000 pipelined reserves, every error code, checked reserves against a
private fake1688, a cluster behind HAProxy).

Method: clientenv.ClientEnv starts the servers once for the module (a
stockd with an admin token, a relay that cuts a connection after the
commit, a stockd whose MariaDB can be frozen, three instances behind
HAProxy, a stockd pointed at a private fake1688); each test runs one suite
as a subprocess (phpunit, pytest, node --test) with the addresses in its
environment, one after the other (the frozen database is shared), and
passes when that suite passes. The suite's own count is printed. A missing
runtime fails (tools/deps installs php-cli, php-msgpack, phpunit and
nodejs; fake1688 is built with stockd); the Node dependency comes from
the committed lockfile (npm ci) when node_modules does not match it.
Bounded: each suite has SUITE_TIMEOUT_S; together they take about 30 s.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import itestlib
from clientenv import ClientEnv

CLIENTS = os.path.join(itestlib.ROOT, "clients")
SUITE_TIMEOUT_S = 180
NPM_TIMEOUT_S = 180
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


@pytest.fixture(scope="module")
def servers(prereqs, tmp_path_factory):
    env = ClientEnv(str(tmp_path_factory.mktemp("clients")))
    env.start()
    try:
        yield env
    finally:
        env.stop()


def need(tool, package):
    path = shutil.which(tool)
    if path is None:
        itestlib.skip_or_fail("%s not found: apt-get install %s (tools/deps does)" % (tool, package))
    return path


def run_suite(servers, capsys, name, argv, cwd, count):
    """Runs one suite; asserts it passed; prints its own count past pytest's
    capture (so tools/test shows each language's result)."""
    env = dict(os.environ, **servers.env())
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=SUITE_TIMEOUT_S, text=True)
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode("utf-8", "replace")
        pytest.fail("%s suite exceeded %d s:\n%s\n%s" % (name, SUITE_TIMEOUT_S, out[-6000:],
                                                         servers.tails()))
    summary = count(r.stdout)
    with capsys.disabled():
        print("\n%s client suite: %s (exit %d)" % (name, summary, r.returncode))
    if r.returncode != 0:
        pytest.fail("%s client suite failed (exit %d): %s\n%s\n%s"
                    % (name, r.returncode, summary, r.stdout[-8000:], servers.tails()))
    return summary


def last_match(pattern, text, default="no count in its output"):
    found = re.findall(pattern, text, re.M)
    return found[-1] if found else default


@pytest.mark.not_sanitized("the PHP library; its server paths are the Python client's")
def test_php_client(servers, capsys):
    need("php", "php-cli")
    phpunit = need("phpunit", "phpunit")
    r = subprocess.run(["php", "-r", "exit(extension_loaded('msgpack') ? 0 : 1);"], timeout=30)
    if r.returncode != 0:
        itestlib.skip_or_fail("the PHP msgpack extension is not loaded: apt-get install php-msgpack")
    run_suite(servers, capsys, "php", [phpunit, "-c", "phpunit.xml.dist"],
              os.path.join(CLIENTS, "php"), lambda out: last_match(r"^(OK \(.*\)|Tests: .*)$", out))


def test_python_client(servers, capsys):
    run_suite(servers, capsys, "python",
              [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
              os.path.join(CLIENTS, "python"),
              lambda out: last_match(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$", out))


def npm_ci(node_dir):
    """node_modules from the committed lockfile, unless it already matches."""
    with open(os.path.join(node_dir, "package-lock.json")) as f:
        lock = json.load(f)
    ok = True
    for path, meta in lock.get("packages", {}).items():
        if not path:
            continue
        try:
            with open(os.path.join(node_dir, path, "package.json")) as f:
                ok = ok and json.load(f).get("version") == meta.get("version")
        except OSError:
            ok = False
    if ok:
        return
    npm = need("npm", "npm")
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=node_dir, timeout=NPM_TIMEOUT_S,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "npm ci failed in clients/node:\n" + r.stdout[-4000:]


@pytest.mark.not_sanitized("the Node library; its server paths are the Python client's")
def test_node_client(servers, capsys):
    node = need("node", "nodejs")
    node_dir = os.path.join(CLIENTS, "node")
    npm_ci(node_dir)
    run_suite(servers, capsys, "node", [node, "--test", "--test-reporter=tap", "test/"],
              node_dir, lambda out: "%s passed, %s failed" % (last_match(r"^# pass (\d+)", out, "?"),
                                                   last_match(r"^# fail (\d+)", out, "?")))
