"""Round trips of the wire format: the layout every other part relies on."""

import numpy as np
import pytest

from p4reduce.worker import wire


def test_header_is_twelve_bytes() -> None:
    assert wire.AGG_HEADER_LEN == 12
    assert wire.agg_payload_len(64) == 12 + 256


def test_round_trip_keeps_signed_values_and_exponent() -> None:
    header = wire.AggHeader(wire.FLAG_RETRANSMIT, 513, 31, 16383, 255, 2**32 - 1, -7)
    values = np.array([-(2**31), -1, 0, 1, 2**31 - 1] + [5] * 59, dtype=np.int32)
    got_header, got_values = wire.unpack_payload(wire.pack_payload(header, values))
    assert got_header == header
    assert got_values.dtype == np.int32
    np.testing.assert_array_equal(got_values, values)


def test_byte_order_is_network_order() -> None:
    payload = wire.pack_payload(
        wire.AggHeader(1, 0x0102, 3, 0x0405, 6, 0x0708090A, -1), np.arange(64, dtype=np.int32)
    )
    assert payload[:12] == bytes([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xFF])
    assert payload[12:20] == bytes([0, 0, 0, 0, 0, 0, 0, 1])


def test_short_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 268"):
        wire.unpack_payload(b"\0" * 100)
