"""A strict checker of the Prometheus text exposition format 0.0.4 (what
`promtool check metrics` enforces, plus the histogram rules), written from
the format's documentation: promtool is not packaged for Debian 12.

parse(text) returns {family: {"type", "help", "samples": [(name, labels, value)]}}
and raises PromFormatError naming the line for anything a scraper would
refuse or misread.
"""
import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


class PromFormatError(AssertionError):
    pass


def _value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not FLOAT.match(s):
        raise PromFormatError("%s: bad value %r" % (where, s))
    return float(s)


def _labels(s, where):
    """Parses the inside of {...}: name="value" pairs, escapes \\\\ \\" \\n."""
    out = {}
    i = 0
    while i < len(s):
        m = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"").match(s, i)
        if not m:
            raise PromFormatError("%s: bad label at %r" % (where, s[i:]))
        name = m.group(1)
        if name.startswith("__"):
            raise PromFormatError("%s: reserved label name %s" % (where, name))
        i = m.end()
        val = []
        while True:
            if i >= len(s):
                raise PromFormatError("%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    raise PromFormatError("%s: bad escape in label value" % where)
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise PromFormatError("%s: newline in label value" % where)
            else:
                val.append(c)
                i += 1
        if name in out:
            raise PromFormatError("%s: label %s given twice" % (where, name))
        out[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise PromFormatError("%s: expected ',' between labels" % where)
            i += 1
    return out


def _family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in families and families[base]["type"] in ("histogram", "summary"):
                return base
    return name


def parse(text):
    if not text.endswith("\n"):
        raise PromFormatError("exposition must end with a newline")
    families = {}
    order = []          # family names in the order their samples appear
    seen_series = set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % n
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not NAME.match(parts[2]):
                    raise PromFormatError("%s: bad metric name in %s" % (where, parts[1]))
                name = parts[2]
                f = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if f["samples"]:
                    raise PromFormatError("%s: %s for %s after its samples" % (where, parts[1], name))
                key = parts[1].lower()
                if f[key] is not None:
                    raise PromFormatError("%s: second %s for %s" % (where, parts[1], name))
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise PromFormatError("%s: bad TYPE line" % where)
                    f["type"] = parts[3]
                else:
                    f["help"] = parts[3] if len(parts) == 4 else ""
            continue
        m = re.match(r"([^\s{]+)(\{(.*)\})?\s+(\S+)(\s+(-?\d+))?\Z", line)
        if not m:
            raise PromFormatError("%s: not a sample line: %r" % (where, line))
        name, labels, value = m.group(1), m.group(3), m.group(4)
        if not NAME.match(name):
            raise PromFormatError("%s: bad metric name %r" % (where, name))
        lab = _labels(labels or "", where)
        val = _value(value, where)
        fam = _family_of(name, families)
        if fam not in families:
            families[fam] = {"type": "untyped", "help": None, "samples": []}
        f = families[fam]
        if fam != current:
            if fam in order:
                raise PromFormatError("%s: samples of %s are not contiguous" % (where, fam))
            order.append(fam)
            current = fam
        series = (name, tuple(sorted(lab.items())))
        if series in seen_series:
            raise PromFormatError("%s: duplicate series %r" % (where, series))
        seen_series.add(series)
        t = f["type"] or "untyped"
        if t in ("counter", "gauge", "untyped") and name != fam:
            raise PromFormatError("%s: %s sample %s in family %s" % (where, t, name, fam))
        if t == "counter":
            if not fam.endswith("_total"):
                raise PromFormatError("%s: counter %s should end in _total" % (where, fam))
            if not val >= 0:
                raise PromFormatError("%s: counter %s is negative or NaN" % (where, name))
        if t == "histogram":
            if name == fam + "_bucket" and "le" not in lab:
                raise PromFormatError("%s: bucket without le" % where)
            if name != fam + "_bucket" and "le" in lab:
                raise PromFormatError("%s: le outside a bucket" % where)
        f["samples"].append((name, lab, val))
    for fam, f in families.items():
        if f["type"] == "histogram":
            _check_histogram(fam, f["samples"])
    return families


def _check_histogram(fam, samples):
    groups = {}
    for name, lab, val in samples:
        rest = tuple(sorted((k, v) for k, v in lab.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            g["buckets"].append((_value(lab["le"], fam + " le"), val))
        elif name == fam + "_sum":
            g["sum"] = val
        elif name == fam + "_count":
            g["count"] = val
    for rest, g in groups.items():
        what = "%s%r" % (fam, dict(rest))
        if g["count"] is None or g["sum"] is None:
            raise PromFormatError("%s: histogram lacks _sum or _count" % what)
        les = [le for le, _ in g["buckets"]]
        if not les or les[-1] != math.inf:
            raise PromFormatError("%s: last bucket must be le=+Inf" % what)
        if les != sorted(les) or len(set(les)) != len(les):
            raise PromFormatError("%s: buckets not in increasing le order" % what)
        counts = [c for _, c in g["buckets"]]
        if counts != sorted(counts):
            raise PromFormatError("%s: bucket counts not cumulative" % what)
        if counts[-1] != g["count"]:
            raise PromFormatError("%s: +Inf bucket %s != _count %s" % (what, counts[-1], g["count"]))


def value(families, fam, name=None, **labels):
    """The value of one series (0 when absent)."""
    f = families.get(fam)
    if f is None:
        return 0
    for n, lab, v in f["samples"]:
        if n == (name or fam) and lab == labels:
            return v
    return 0
