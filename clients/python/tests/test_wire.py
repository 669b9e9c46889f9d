"""Reading untrusted replies, without a server: limits hold before decoding."""
import msgpack
import pytest

import stockd
from stockd import _wire


def test_ping_request_is_the_protocol_vector():
    # proto/PROTOCOL.md §2, vector `ping`.
    assert _wire.request(1, "ping", None, None).hex() == "940001a470696e679180"


def test_messages_split_anywhere_come_out_whole():
    m = msgpack.packb([1, 7, None, {"lines": [{"sku": "a", "qty": 1}], "order_id": "o-1"}])
    r = _wire.Reader(1 << 20)
    got = []
    data = m * 3
    for i in range(0, len(data), 5):
        got += list(r.feed(data[i:i + 5]))
    assert [g[:3] for g in got] == [("reply", 7, None)] * 3


def test_a_reply_over_the_limit_is_refused():
    with pytest.raises(stockd.ProtocolError):
        list(_wire.Reader(1000).feed(msgpack.packb([1, 1, None, "x" * 2000])))


def test_a_header_claiming_four_gigabytes_is_refused_by_the_limit():
    # Nothing is allocated for the claim: the bytes are refused when the
    # limit's worth has arrived without the message ending.
    r = _wire.Reader(64 << 10)
    with pytest.raises(stockd.ProtocolError):
        list(r.feed(b"\x94\x01\x01\xc0\xdb\xff\xff\xff\xff"))
        for _ in range(3):
            list(r.feed(b"x" * (32 << 10)))


def test_malformed_and_wrong_shapes_are_protocol_errors():
    with pytest.raises(stockd.ProtocolError):
        list(_wire.Reader(1 << 20).feed(b"\x94\x01\xc1"))
    with pytest.raises(stockd.ProtocolError):
        list(_wire.Reader(1 << 20).feed(msgpack.packb([0, 1, "ping", [{}]])))


def test_admin_token_goes_only_to_admin_methods():
    put = msgpack.unpackb(_wire.request(1, "sku.put", {"sku": "a"}, "T"))
    get = msgpack.unpackb(_wire.request(2, "stock.get", {"sku": "a"}, "T"))
    assert put[3] == [{"sku": "a", "token": "T"}]
    assert get[3] == [{"sku": "a"}]


def test_unknown_codes_fall_back_on_the_retryable_flag():
    assert type(stockd.from_wire({"code": "new_thing", "message": "m", "retryable": True})) \
        is stockd.Retryable
    assert type(stockd.from_wire({"code": "new_thing", "message": "m", "retryable": False})) \
        is stockd.Refused
    assert isinstance(stockd.from_wire("junk"), stockd.ProtocolError)


def test_check_is_sent_only_as_true_and_only_a_bool_is_taken():
    assert _wire.reserve_params("o", "a", 1, None, None, True)["check"] is True
    assert _wire.reserve_params("o", {"a": 1, "b": 2}, None, 60000, None, True)["check"] is True
    assert "check" not in _wire.reserve_params("o", "a", 1, None, None, False)
    assert "check" not in _wire.reserve_params("o", "a", 1, None, None)
    for bad in (None, 0, 1, "true", [True], 1.0):
        with pytest.raises(TypeError, match="check must be a bool"):
            _wire.reserve_params("o", "a", 1, None, None, bad)


def test_check_failed_is_a_refusal_of_its_own():
    e = stockd.from_wire({"code": "check_failed", "message": "check refused: x 500_004 y",
                          "retryable": False, "order_id": "o-1"})
    assert type(e) is stockd.CheckFailed and isinstance(e, stockd.Refused)
    assert (e.code, e.retryable, e.order_id) == ("check_failed", False, "o-1")
    u = stockd.from_wire({"code": "unavailable", "message": "m", "retryable": True,
                          "reason": "check_unavailable"})
    assert type(u) is stockd.Unavailable and u.reason == "check_unavailable"


def test_a_set_aside_unavailable_is_final():
    e = stockd.from_wire({"code": "unavailable", "message": "sku x set aside", "retryable": False,
                          "set_aside": True})
    assert type(e) is stockd.SetAside and isinstance(e, stockd.Refused)
    assert not isinstance(e, stockd.Retryable) and e.code == "unavailable"
