"""The exceptions of the stockd client: one class per error code of
PROTOCOL §5, under one base, grouped by what a gateway should do:

    StockdError
    ├── Refused          a final answer: tell the buyer, do not retry
    │   ├── Invalid, UnknownMethod, UnknownSku, Insufficient, Conflict,
    │   ├── NotFound, InvalidState, Expired, Unauthorized, TooLarge
    │   ├── CheckFailed  a checked reserve: 1688's order check refused it
    │   └── SetAside     `unavailable` with set_aside: rows support must repair
    ├── Retryable        nothing changed: retry with the same order_id
    │   ├── Busy, Deadline, Unavailable, Internal, ConnectionFailed
    │   └── OutcomeUnknown   it may have happened: retry with the same
    │       │                order_id, the answer says what happened
    │       └── ConnectionLost, Timeout
    └── ProtocolError    the peer broke the wire contract (wrong address, a bug)

`code` is the server's code (`insufficient`, ...) or, for failures on this
side of the wire, `transport`, `timeout` or `protocol`. Branch on the class
or on `code`, never on the message.
"""


class StockdError(Exception):
    """The common base of every error the client raises."""

    def __init__(self, message, code="transport", retryable=False, details=None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.details = dict(details or {})

    @property
    def message(self):
        return self.args[0] if self.args else ""

    def _detail(self, key, kind):
        v = self.details.get(key)
        return v if isinstance(v, kind) and not isinstance(v, bool) else None

    @property
    def available(self):
        """insufficient: what could be had right then."""
        return self._detail("available", int)

    @property
    def field(self):
        """invalid: the offending parameter (`qty`, `lines[3].qty`)."""
        return self._detail("field", str)

    @property
    def status(self):
        """invalid_state: the order's current status."""
        return self._detail("status", str)

    @property
    def line(self):
        """insufficient / unknown_sku of an order with lines: the first line not met."""
        return self._detail("line", int)

    @property
    def sku(self):
        return self._detail("sku", str)

    @property
    def owner(self):
        """unavailable in a cluster: the node that owns the SKU."""
        return self._detail("owner", str)

    @property
    def order_id(self):
        """check_failed: the order 1688's check refused (absent when there
        was no supplier API to ask: then no order was recorded)."""
        return self._detail("order_id", str)

    @property
    def reason(self):
        """unavailable of a checked reserve: "check_unavailable" (the 1688
        check could not be made in time; nothing held)."""
        return self._detail("reason", str)


class Refused(StockdError):
    """A final answer (retryable false): the same request gets the same answer."""


class Retryable(StockdError):
    """Nothing was decided, or (OutcomeUnknown) it is not known whether it
    was: send the same request again, same order_id, after a pause.
    reserve_with_retry does exactly that."""


class OutcomeUnknown(Retryable):
    """Maybe it happened: stockd lost track of its commit (`unavailable` with
    outcome unknown), or the connection broke or timed out after the request
    was sent. A retry with the same order_id returns the committed record or
    decides afresh; it never reserves twice."""


class ConnectionFailed(Retryable):
    """No endpoint accepted a connection in time; nothing was sent."""


class ConnectionLost(OutcomeUnknown):
    """The connection closed or failed with requests in flight."""


class Timeout(OutcomeUnknown):
    """No reply within the client's timeout."""


class ProtocolError(StockdError):
    """Malformed MessagePack, a reply over the client's limit, a message of
    the wrong shape. The connection is closed; not retried."""


class Invalid(Refused):
    """invalid: bad params (`field` names the key)."""


class UnknownMethod(Refused):
    """unknown_method: no such method."""


class UnknownSku(Refused):
    """unknown_sku: the SKU does not exist (with lines: `line`, `sku`)."""


class Insufficient(Refused):
    """insufficient: not enough stock; `available` is what could be had."""


class Conflict(Refused):
    """conflict: the order_id is already used with another sku, qty or lines."""


class NotFound(Refused):
    """not_found: no committed record of that order (or supplier)."""


class InvalidState(Refused):
    """invalid_state: the order's `status` does not allow this operation."""


class Expired(Refused):
    """expired: confirm after the hold lapsed; the stock went back."""


class Unauthorized(Refused):
    """unauthorized: admin token missing or wrong."""


class TooLarge(Refused):
    """too_large: the request exceeded the server's message limit; the
    server closed the connection (the client reconnects on the next call)."""


class CheckFailed(Refused):
    """check_failed: a checked reserve (reserve(..., check=True), or a SKU
    of a supplier set to check_before_confirm) whose supplier units 1688's
    order check (createOrder.preview) refused: `message` carries 1688's code
    and words, `order_id` the order, which stays failed with nothing held (a
    retry with the same order_id answers check_failed again). Also when the
    stockd has no supplier API to check with (no order recorded). Final:
    tell the buyer those units cannot be had."""


class SetAside(Refused):
    """unavailable with `set_aside: true` (retryable false): the SKU or order
    was set aside when stockd loaded it, its rows in MariaDB cannot be
    trusted, and every request naming it gets this until support repairs
    the rows and restarts stockd (docs/operations.md, "Rows set aside").
    Not an Unavailable: a retry gets the same answer, so reserve_with_retry
    raises it at once."""


class Busy(Retryable):
    """busy: a queue is full; nothing changed."""


class Deadline(Retryable):
    """deadline: still queued when deadline_ms passed; nothing changed."""


class Unavailable(Retryable):
    """unavailable without outcome: MariaDB or the SKU's owner unreachable;
    nothing changed (`owner` names the owner in a cluster)."""


class Internal(Retryable):
    """internal: a bug or out of memory in stockd."""


_BY_CODE = {
    "invalid": Invalid, "unknown_method": UnknownMethod, "unknown_sku": UnknownSku,
    "insufficient": Insufficient, "conflict": Conflict, "not_found": NotFound,
    "invalid_state": InvalidState, "expired": Expired, "busy": Busy, "deadline": Deadline,
    "unavailable": Unavailable, "unauthorized": Unauthorized, "too_large": TooLarge,
    "internal": Internal, "check_failed": CheckFailed,
}


def from_wire(err):
    """The exception for an error map as stockd sends it
    ({"code", "message", "retryable", ...details})."""
    if not isinstance(err, dict) or not isinstance(err.get("code"), str):
        return ProtocolError("stockd sent an error that is not a map with a code: %.200r"
                             % (err,), "protocol")
    code = err["code"]
    message = err.get("message") if isinstance(err.get("message"), str) else code
    retryable = err.get("retryable") is True
    details = {k: v for k, v in err.items() if k not in ("code", "message", "retryable")}
    if code == "unavailable" and details.get("set_aside") is True:
        cls = SetAside
    elif code == "unavailable" and details.get("outcome") == "unknown":
        cls = OutcomeUnknown
    else:
        cls = _BY_CODE.get(code) or (Retryable if retryable else Refused)
    return cls("%s: %s" % (code, message), code, retryable, details)
