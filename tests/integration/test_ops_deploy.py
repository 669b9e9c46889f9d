"""What an operator installs and reads agrees with what stockd does: the
systemd unit (docs/stockd.service) and its sysusers.d snippet, the stop
timeout as the docs state it, the help text of the supplier trust flags and
where promtool comes from.

Method: no server needed. The drain bound is read from src/main.c
(DRAIN_MS) and compared with every figure the unit, docs/operations.md and
README.md give for it and for TimeoutStopSec. The unit is checked with
`systemd-analyze verify` (ExecStart pointed at the built stockd, since
/usr/local/bin/stockd is not installed here), else parsed. The sysusers
snippet is applied with `systemd-sysusers --root` to an empty directory and
must create the unit's User= and Group=, else its line is parsed.
"""
import os
import re
import shutil
import subprocess

import pytest

from itestlib import ROOT, stockd_bin

UNIT = os.path.join(ROOT, "docs", "stockd.service")
SYSUSERS = os.path.join(ROOT, "docs", "stockd.sysusers")


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _unit_sections(text):
    """{section: [(key, value)]} of a unit file (systemd's syntax: comments
    start with # or ;, keys may repeat)."""
    sections, cur = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if m:
            cur = sections.setdefault(m.group(1), [])
            continue
        assert cur is not None, "line %d outside a section: %r" % (n, line)
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", line)
        assert m, "line %d is not KEY=VALUE: %r" % (n, line)
        cur.append((m.group(1), m.group(2)))
    return sections


def _one(sections, section, key):
    vals = [v for k, v in sections.get(section, []) if k == key]
    assert len(vals) == 1, "%s= in [%s]: %r" % (key, section, vals)
    return vals[0]


def _drain_s():
    m = re.search(r"#define\s+DRAIN_MS\s+(\d+)", _read("src", "main.c"))
    assert m, "DRAIN_MS not found in src/main.c"
    ms = int(m.group(1))
    assert ms % 1000 == 0, ms
    return ms // 1000


def test_stop_timeout_one_figure():
    drain = _drain_s()
    unit_text = _read("docs", "stockd.service")
    stop = _one(_unit_sections(unit_text), "Service", "TimeoutStopSec")
    assert stop.isdigit(), "TimeoutStopSec=%s: give plain seconds" % stop
    stop = int(stop)
    assert stop > drain, "TimeoutStopSec=%d would SIGKILL a %d s drain" % (stop, drain)
    ops = _read("docs", "operations.md")
    readme = _read("README.md")
    # The drain bound, wherever it is stated.
    said = {
        "docs/stockd.service": re.findall(r"exits 0 within (\d+) s", unit_text),
        "docs/operations.md": re.findall(r"Hard bound (\d+) s", ops)
        + re.findall(r"beyond the (\d+) s drain bound", ops),
        "README.md": re.findall(r"exits within (\d+) s", readme),
    }
    for where, figures in said.items():
        assert figures, "%s states no drain bound" % where
        assert {int(f) for f in figures} == {drain}, \
            "%s says %r s, DRAIN_MS is %d s" % (where, figures, drain)
    # TimeoutStopSec, wherever it is named, and the room it leaves.
    for where, text in (("docs/stockd.service", unit_text), ("docs/operations.md", ops),
                        ("README.md", readme), ("docs/deploy.md", _read("docs", "deploy.md"))):
        for f in re.findall(r"TimeoutStopSec=(\d+)", text):
            assert int(f) == stop, "%s names TimeoutStopSec=%s, the unit has %d" % (
                where, f, stop)
        for f in re.findall(r"leaves (\d+) s", text):
            assert int(f) == stop - drain, "%s: leaves %s s, but %d - %d" % (
                where, f, stop, drain)
    assert "TimeoutStopSec=%d" % stop in ops, "docs/operations.md does not name the stop timeout"


def test_unit_verifies(tmp_path):
    text = _read("docs", "stockd.service")
    sections = _unit_sections(text)
    assert set(sections) == {"Unit", "Service", "Install"}, set(sections)
    exe = _one(sections, "Service", "ExecStart")
    assert exe == "/usr/local/bin/stockd", exe
    assert _one(sections, "Service", "KillSignal") == "SIGTERM"
    assert _one(sections, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze not installed: the unit was parsed only")
        return
    b = stockd_bin()
    if not os.access(b, os.X_OK):
        pytest.fail("stockd not built: %s" % b)
    unit = tmp_path / "stockd.service"
    unit.write_text(text.replace("/usr/local/bin/stockd", b))
    p = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=60)
    out = (p.stdout + p.stderr).strip()
    assert p.returncode == 0 and "stockd.service" not in out, out


def test_sysusers_creates_the_units_user(tmp_path):
    sections = _unit_sections(_read("docs", "stockd.service"))
    user = _one(sections, "Service", "User")
    group = _one(sections, "Service", "Group")
    assert "docs/stockd.sysusers" in _read("docs", "stockd.service"), \
        "the unit's install steps do not name the sysusers snippet"
    lines = [l.split() for l in _read("docs", "stockd.sysusers").splitlines()
             if l.strip() and not l.lstrip().startswith("#")]
    assert [l[:2] for l in lines] == [["u", user]], lines
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        assert user == group, "a `u` line makes a group of the user's name only"
        print("systemd-sysusers not installed: the snippet was parsed only")
        return
    (tmp_path / "etc").mkdir()
    p = subprocess.run([tool, "--root", str(tmp_path), SYSUSERS], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    passwd = [l.split(":") for l in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    groups = [l.split(":") for l in (tmp_path / "etc" / "group").read_text().splitlines()]
    pw = [e for e in passwd if e[0] == user]
    assert len(pw) == 1, passwd
    assert int(pw[0][2]) < 1000 and pw[0][6] == "/usr/sbin/nologin", pw  # a system user
    gr = [e for e in groups if e[0] == group]
    assert len(gr) == 1 and gr[0][2] == pw[0][3], (groups, pw)


def test_help_says_what_event_trust_does():
    b = stockd_bin()
    if not os.access(b, os.X_OK):
        pytest.fail("stockd not built: %s" % b)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKD_")}
    p = subprocess.run([b, "--help"], capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 0, p
    m = re.search(r"^  --supplier-event-trust F(.*?)(?=^  --)", p.stdout, re.M | re.S)
    assert m, p.stdout
    text = " ".join(m.group(1).split())
    # What it is (the share sold while a supplier is in event mode), how an
    # operator turns event mode on, and that supplier.put overrides it.
    for words in ("event mode", "sales event", "--event on", "--event-trust", "0..1",
                  "default 0.5"):
        assert words in text, "%r missing from: %s" % (words, text)
    assert "push" not in text, text  # it has nothing to do with 1688's message push


def test_operations_says_where_promtool_comes_from():
    ops = " ".join(_read("docs", "operations.md").split())
    assert "`promtool` comes with Debian's `prometheus` package" in ops
    assert "not packaged" not in ops
