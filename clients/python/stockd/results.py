"""Typed results: Order (with Line) and Stock (PROTOCOL §4). Times are unix
epoch milliseconds; optional fields are None when stockd did not send them;
`raw` keeps the map as received (fields added later are not lost)."""
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ProtocolError


def _get(m, k, kind, optional=False):
    v = m.get(k)
    if v is None and optional:
        return None
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ProtocolError("reply lacks the %s %r" % (kind.__name__, k), "protocol")
    return v


def _map(m, what):
    if not isinstance(m, dict):
        raise ProtocolError("%s is not a map: %.100r" % (what, m), "protocol")
    return m


@dataclass(frozen=True)
class Line:
    line: int
    sku: str
    qty: int
    from_own: int
    from_supplier: int
    status: str
    upstream_order_id: Optional[str] = None

    @classmethod
    def from_wire(cls, m):
        m = _map(m, "order line")
        return cls(_get(m, "line", int), _get(m, "sku", str), _get(m, "qty", int),
                   _get(m, "from_own", int), _get(m, "from_supplier", int),
                   _get(m, "status", str), _get(m, "upstream_order_id", str, True))


@dataclass(frozen=True)
class Order:
    order_id: str
    sku: str
    qty: int
    status: str
    from_own: int
    from_supplier: int
    available: int
    created_at: int
    updated_at: int
    hold_expires_at: Optional[int] = None
    upstream_order_id: Optional[str] = None
    reason: Optional[str] = None
    purchased_at: Optional[int] = None
    supplier_settled: Optional[bool] = None
    lines: tuple = ()
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, m):
        m = _map(m, "order record")
        lines = m.get("lines")
        return cls(
            _get(m, "order_id", str), _get(m, "sku", str), _get(m, "qty", int),
            _get(m, "status", str), _get(m, "from_own", int), _get(m, "from_supplier", int),
            _get(m, "available", int), _get(m, "created_at", int), _get(m, "updated_at", int),
            _get(m, "hold_expires_at", int, True), _get(m, "upstream_order_id", str, True),
            _get(m, "reason", str, True), _get(m, "purchased_at", int, True),
            _get(m, "supplier_settled", bool, True),
            tuple(Line.from_wire(l) for l in lines) if isinstance(lines, list) else (),
            m)

    @property
    def live(self):
        """True while the order holds stock (held, confirmed, purchased)."""
        return self.status in ("held", "confirmed", "purchased")


@dataclass(frozen=True)
class Stock:
    sku: str
    available: int
    own_on_hand: int
    own_reserved: int
    supplier_reported: int
    supplier_sellable: int
    supplier_reserved: int
    supplier_synced_at: int
    mapping: str
    supplier: Optional[dict] = None
    trust: Optional[float] = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, m):
        m = _map(m, "stock map")
        t = m.get("trust")
        return cls(
            _get(m, "sku", str), _get(m, "available", int), _get(m, "own_on_hand", int),
            _get(m, "own_reserved", int), _get(m, "supplier_reported", int),
            _get(m, "supplier_sellable", int), _get(m, "supplier_reserved", int),
            _get(m, "supplier_synced_at", int), _get(m, "mapping", str),
            m.get("supplier") if isinstance(m.get("supplier"), dict) else None,
            float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None,
            m)


def identity(x: Any) -> Any:
    return x
