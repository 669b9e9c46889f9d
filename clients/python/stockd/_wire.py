"""What the blocking and the asyncio client share: endpoints, params, the
request frame, and the reading of untrusted replies with limits."""
import re

import msgpack

from .errors import ProtocolError

DEFAULT_CONNECT_TIMEOUT_MS = 1000
# Above a reserve's longest answer: its queueing deadline (2 s) plus stockd's
# commit timeout (5 s).
DEFAULT_TIMEOUT_MS = 10000
DEFAULT_MAX_REPLY_BYTES = 4 << 20
# Below stockd's --max-inflight-per-conn default (1,024).
DEFAULT_PIPELINE_WINDOW = 512
# Order updates kept while nobody reads them; newer ones are dropped and counted.
MAX_NOTIFICATIONS = 10000
MSGID_MAX = 0xFFFFFFFF
READ_CHUNK_BYTES = 65536
ADMIN_METHODS = ("sku.put", "stock.adjust", "supplier.put")
# The server's own queueing deadline when a request names none.
SERVER_DEFAULT_DEADLINE_MS = 2000

_ENDPOINT = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$")


def parse_endpoints(endpoints):
    """"host:port" or "[v6]:port", one or a list -> [(host, port, label)]."""
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    out = []
    for e in endpoints:
        m = _ENDPOINT.match(e) if isinstance(e, str) else None
        if not m or not 1 <= int(m.group(3)) <= 65535:
            raise ValueError("endpoint must be HOST:PORT or [V6]:PORT: %r" % (e,))
        out.append((m.group(1) or m.group(2), int(m.group(3)), e))
    if not out:
        raise ValueError("no endpoint given")
    return out


def check_positive(**kw):
    for k, v in kw.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError("%s must be a positive int" % k)


def reserve_params(order_id, sku, qty, hold_ms, deadline_ms, check=False):
    """sku: one SKU (then qty), or the lines of a cart: {"hoodie": 1, "cap": 2},
    or a list of (sku, qty) pairs or {"sku", "qty"} maps. check: a bool
    (anything else is a TypeError, before anything is sent); True sends
    "check": true (PROTOCOL §4, "Checked reserves"), False sends nothing."""
    if not isinstance(check, bool):
        raise TypeError("reserve: check must be a bool (True or False), not %s"
                        % type(check).__name__)
    p = {"order_id": order_id}
    if isinstance(sku, str):
        if qty is None:
            raise TypeError("reserve of one SKU needs a qty")
        p["sku"], p["qty"] = sku, qty
    else:
        if qty is not None:
            raise TypeError("reserve with lines takes no qty: give it per line")
        items = sku.items() if isinstance(sku, dict) else sku
        lines = []
        for l in items:
            s, q = (l.get("sku"), l.get("qty")) if isinstance(l, dict) else tuple(l)
            if not isinstance(s, str) or not isinstance(q, int):
                raise TypeError("a line is (sku: str, qty: int)")
            lines.append({"sku": s, "qty": q})
        p["lines"] = lines
    if hold_ms is not None:
        p["hold_ms"] = hold_ms
    if deadline_ms is not None:
        p["deadline_ms"] = deadline_ms
    if check:
        p["check"] = True
    return p


def order_params(order_id, sku):
    return {"order_id": order_id} if sku is None else {"order_id": order_id, "sku": sku}


def sku_put_params(sku, own_on_hand, supplier_reported, supplier):
    p = {"sku": sku}
    if own_on_hand is not None:
        p["own_on_hand"] = own_on_hand
    if supplier_reported is not None:
        p["supplier_reported"] = supplier_reported
    if supplier is not None:
        p["supplier"] = supplier
    return p


def request(msgid, method, params, token):
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TypeError("params must be a dict (the one map of the request)")
    if token is not None and method in ADMIN_METHODS and "token" not in params:
        params = dict(params, token=token)
    return msgpack.packb([0, msgid, method, [params]], use_bin_type=True)


class Reader:
    """Cuts the byte stream into messages. A message over max_reply_bytes is
    refused while it arrives: the unpacker never holds more than that many
    bytes (so no length header can make it allocate more), and a message
    that fills it without ending is too large."""

    def __init__(self, max_reply_bytes):
        self.max = max_reply_bytes
        self.fed = 0
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                         max_buffer_size=max_reply_bytes)

    def feed(self, data):
        """Yields ("reply", msgid, error, result) and ("update", record)."""
        view = memoryview(data)
        while len(view):
            room = self.max - (self.fed - self.unpacker.tell())
            if room <= 0:
                raise ProtocolError("a message from stockd exceeds the client's limit of %d "
                                    "bytes" % self.max, "protocol")
            part, view = view[:room], view[room:]
            try:
                self.unpacker.feed(part)
                self.fed += len(part)
                msgs = list(self.unpacker)
            except (ValueError, msgpack.exceptions.UnpackException) as e:
                raise ProtocolError("malformed MessagePack from stockd (%s: %s)"
                                    % (type(e).__name__, e), "protocol")
            for m in msgs:
                if (isinstance(m, list) and len(m) == 4 and m[0] == 1
                        and isinstance(m[1], int) and not isinstance(m[1], bool)):
                    yield ("reply", m[1], m[2], m[3])
                elif isinstance(m, list) and len(m) == 3 and m[0] == 2:
                    if (m[1] == "order.update" and isinstance(m[2], list) and m[2]
                            and isinstance(m[2][0], dict)):
                        yield ("update", m[2][0])
                    # Other notifications are not part of the contract yet: ignored.
                else:
                    raise ProtocolError("stockd sent a message that is neither a response "
                                        "nor a notification", "protocol")
