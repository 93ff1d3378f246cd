"""The p4reduce wire format, version 1 (DESIGN.md section 2).

This module is the only description of the `agg` header in Python: the worker, the tests
and the benchmarks import it, and `p4src/headers.p4` mirrors it field by field (a test
compares the two). Layout on the wire, after Ethernet / IPv4 / UDP (destination port
AGG_UDP_PORT):

    flags:8 job_id:16 worker_id:8 slot:16 round:8 offset:32 exp:8 (signed) | K x int32

All fields are big-endian. Values are two's-complement int32 in network byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

AGG_UDP_PORT = 48879
DEFAULT_K = 64
MAX_WORKERS = 32

FLAG_RESULT = 0x01
FLAG_RETRANSMIT = 0x02
FLAG_EXP_ONLY = 0x04

# (name, bits) in wire order; the P4 header must declare the same fields.
AGG_FIELDS: tuple[tuple[str, int], ...] = (
    ("flags", 8),
    ("job_id", 16),
    ("worker_id", 8),
    ("slot", 16),
    ("round", 8),
    ("offset", 32),
    ("exp", 8),
)

# Public so hot paths can unpack to a plain tuple without building an AggHeader.
HEADER_STRUCT = struct.Struct("!BHBHBIb")
AGG_HEADER_LEN = HEADER_STRUCT.size  # 12 bytes
assert sum(bits for _, bits in AGG_FIELDS) == AGG_HEADER_LEN * 8

VALUES_DTYPE = np.dtype(">i4")


def agg_dtype(k: int = DEFAULT_K) -> np.dtype[np.void]:
    """The whole payload as one packed numpy record (the fields of AGG_FIELDS, then
    `values`), so that a batch of packets is built or read as arrays instead of one
    struct call per packet."""
    dt = np.dtype([
        ("flags", "u1"), ("job_id", ">u2"), ("worker_id", "u1"), ("slot", ">u2"),
        ("round", "u1"), ("offset", ">u4"), ("exp", "i1"), ("values", VALUES_DTYPE, (k,)),
    ])
    assert dt.itemsize == agg_payload_len(k) and dt.names is not None
    assert tuple(dt.names[:-1]) == tuple(name for name, _ in AGG_FIELDS)
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


def agg_payload_len(k: int = DEFAULT_K) -> int:
    """Bytes of the UDP payload of one aggregation packet carrying k values."""
    return AGG_HEADER_LEN + 4 * k


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
