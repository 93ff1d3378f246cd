"""numpy views of the p4reduce wire format (the layout itself is `p4reduce.contract`).

The worker, the tests and the benchmarks build and read packets through these helpers;
`p4src/headers.p4` declares the same fields (a test compares the two). Layout on the
wire, after Ethernet / IPv4 / UDP (destination port AGG_UDP_PORT):

    flags:8 job_id:16 worker_id:8 slot:16 round:8 offset:32 exp:8 (signed) | K x int32

All fields are big-endian. Values are two's-complement int32 in network byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from p4reduce.contract import (
    AGG_FIELDS,
    AGG_HEADER_LEN,
    AGG_UDP_PORT,
    DEFAULT_K,
    FLAG_EXP_ONLY,
    FLAG_RESULT,
    FLAG_RETRANSMIT,
    HEADER_FORMAT,
    LANE_SIGN,
    MAX_WORKERS,
    SIGNED_FIELDS,
    agg_payload_len,
)

__all__ = [
    "AGG_FIELDS", "AGG_HEADER_LEN", "AGG_UDP_PORT", "DEFAULT_K", "FLAG_EXP_ONLY",
    "FLAG_RESULT", "FLAG_RETRANSMIT", "HEADER_STRUCT", "MAX_WORKERS", "VALUES_DTYPE",
    "AggHeader", "agg_dtype", "agg_payload_len", "order_decode", "order_encode", "pack_payload",
    "unpack_payload",
]

# Public so hot paths can unpack to a plain tuple without building an AggHeader.
HEADER_STRUCT = struct.Struct(HEADER_FORMAT)

VALUES_DTYPE = np.dtype(">i4")

# bit-reversed bytes, for the order encoding of exponent lanes
_REV8 = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)


def _reverse32(u: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    b = np.ascontiguousarray(u, dtype="<u4").view(np.uint8).reshape(*u.shape, 4)
    out: npt.NDArray[np.uint32] = np.ascontiguousarray(_REV8[b][..., ::-1]).view("<u4").reshape(
        u.shape).astype(np.uint32)
    return out


def order_encode(values: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Exponent-packet lanes (as int32 bit patterns) of signed values: bit-reverse(v ^
    2^31), `p4reduce.contract.order_encode` for whole arrays."""
    u = np.asarray(values, dtype=np.int32).view(np.uint32) ^ np.uint32(LANE_SIGN)
    return _reverse32(u).view(np.int32)


def order_decode(lanes: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """The signed values of order-encoded lanes (the inverse of `order_encode`)."""
    u = _reverse32(np.asarray(lanes).astype(np.int64).astype(np.uint32))
    return (u ^ np.uint32(LANE_SIGN)).view(np.int32)


def agg_dtype(k: int = DEFAULT_K) -> np.dtype[np.void]:
    """The whole payload as one packed numpy record (the fields of AGG_FIELDS, then
    `values`), so that a batch of packets is built or read as arrays instead of one
    struct call per packet. Derived from the contract's layout."""
    def code(name: str, bits: int) -> str:
        kind = "i" if name in SIGNED_FIELDS else "u"
        return f"{kind}1" if bits == 8 else f">{kind}{bits // 8}"

    dt = np.dtype([*((name, code(name, bits)) for name, bits in AGG_FIELDS),
                   ("values", VALUES_DTYPE, (k,))])
    assert dt.itemsize == agg_payload_len(k)
    return dt
@dataclass(frozen=True, slots=True)
class AggHeader:
    flags: int
    job_id: int
    worker_id: int
    slot: int
    round: int
    offset: int
    exp: int

    def pack(self) -> bytes:
        return HEADER_STRUCT.pack(
            self.flags, self.job_id, self.worker_id, self.slot, self.round, self.offset, self.exp
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview, offset: int = 0) -> AggHeader:
        return cls(*HEADER_STRUCT.unpack_from(data, offset))


def pack_payload(header: AggHeader, values: npt.NDArray[np.int32]) -> bytes:
    """UDP payload: header then the values in network byte order."""
    return header.pack() + values.astype(VALUES_DTYPE, copy=False).tobytes()


def unpack_payload(
    data: bytes | memoryview, k: int = DEFAULT_K
) -> tuple[AggHeader, npt.NDArray[np.int32]]:
    """Inverse of `pack_payload`; raises ValueError on a short payload."""
    need = agg_payload_len(k)
    if len(data) < need:
        raise ValueError(f"aggregation payload of {len(data)} bytes, expected {need}")
    header = AggHeader.unpack(data)
    values = np.frombuffer(data, dtype=VALUES_DTYPE, count=k, offset=AGG_HEADER_LEN)
    return header, values.astype(np.int32)
