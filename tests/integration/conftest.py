"""Fixtures for the integration suite (see itestlib.py for the environment).

Per test module: a fresh MariaDB database (`db`), and one stockd started
against it on a free loopback port (`stockd`), stopped by pid at the end of
the module, also when a test failed. `make_stockd(args=..., db=...)` starts
more instances (own flags; same or fresh database). On a failing test the
tail of every stockd log of the module is attached to the report.
"""
import os
import re
import uuid

import pytest

import itestlib
from itestlib import Db, Stockd


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "not_sanitized(why): skipped in tools/test's ASan/UBSan run "
        "(STOCKD_SANITIZED=1), which repeats the suite to find memory errors: for "
        "tests that measure time, or that exercise no stockd code the rest does not")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("STOCKD_SANITIZED") != "1":
        return
    for item in items:
        m = item.get_closest_marker("not_sanitized")
        if m is not None:
            item.add_marker(pytest.mark.skip(reason="sanitized run: " + m.args[0]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in itestlib.recent_instances():
            rep.sections.append(("stockd log: " + s.name, s.tail()))


def _db_name(request, tag=""):
    mod = re.sub(r"[^a-z0-9]", "_", request.module.__name__.lower())[-24:]
    return "it_%s%s_%s" % (mod, tag, uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def prereqs():
    itestlib.check_prereqs()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory, request):
    return str(tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))


@pytest.fixture(scope="module")
def make_db(prereqs, request):
    made = []

    def make(tag=""):
        d = Db(os.environ["STOCKD_DB"], _db_name(request, tag))
        d.create()
        made.append(d)
        return d

    yield make
    if os.environ.get("ITEST_KEEP_DB") != "1":
        for d in made:
            d.drop()


@pytest.fixture(scope="module")
def db(make_db):
    return make_db()


@pytest.fixture(scope="module")
def make_stockd(prereqs, log_dir, make_db):
    itestlib.forget_recent()
    started = []

    def make(args=(), db=None, name=None, start=True):
        d = db or make_db("x%d" % len(started))
        s = Stockd(d.url, log_dir, name=name or "itest-%d" % len(started), args=args)
        s.db = d
        started.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def stockd(make_stockd, db):
    return make_stockd(db=db, name="itest")


@pytest.fixture
def client(stockd):
    """A fresh connection to the module's stockd (restarted if a test killed it)."""
    if not stockd.alive():
        stockd.start()
    c = stockd.client()
    yield c
    c.close()
