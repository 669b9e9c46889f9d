"""Client for stockd, the inventory reservation server (MessagePack-RPC over
TCP; wire contract: proto/PROTOCOL.md).

    import stockd
    c = stockd.Client(["127.0.0.1:7400"])
    try:
        order = c.reserve_with_retry("shop1:1001", "hoodie-L", 1)
    except stockd.Insufficient as e:
        ...  # sold out: e.available left
    except stockd.OutcomeUnknown:
        ...  # may exist: retry later with the same order_id

stockd.AsyncClient is the same API for asyncio.
"""
from .aio import AsyncClient, AsyncPipeline
from .client import Client, Pipeline
from .errors import (Busy, CheckFailed, Conflict, ConnectionFailed, ConnectionLost, Deadline,
                     Expired, Internal, Insufficient, Invalid, InvalidState, NotFound,
                     OutcomeUnknown, ProtocolError, Refused, Retryable, SetAside, StockdError,
                     Timeout, TooLarge, Unauthorized, Unavailable, UnknownMethod, UnknownSku,
                     from_wire)
from .results import Line, Order, Stock

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "AsyncPipeline", "Client", "Pipeline", "Line", "Order", "Stock", "from_wire",
    "StockdError", "Refused", "Retryable", "OutcomeUnknown", "ConnectionFailed",
    "ConnectionLost", "Timeout", "ProtocolError", "Invalid", "UnknownMethod", "UnknownSku",
    "Insufficient", "Conflict", "NotFound", "InvalidState", "Expired", "Unauthorized",
    "TooLarge", "CheckFailed", "SetAside", "Busy", "Deadline", "Unavailable", "Internal",
]
