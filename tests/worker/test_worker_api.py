"""Refusals with clear messages, before anything reaches the wire."""

from __future__ import annotations

import numpy as np
import pytest

from p4reduce.worker import Communicator, JobSpec
from p4reduce.worker.transport import TunnelTransport


class NoWire:
    """A transport that records sends and never answers: refusals must not send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, payloads: list[bytes]) -> None:
        self.sent.extend(payloads)

    def recv(self, timeout: float) -> list[bytes]:
        return []

    def close(self) -> None:
        pass


def comm() -> tuple[Communicator, NoWire]:
    wire = NoWire()
    return Communicator(JobSpec(1, 0, 2, 4, tunnel_port=9), wire, timeout_s=0.2), wire


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 2}, "rank 2 out of range 0..1"),
        ({"world_size": 257}, "world_size 257 out of range"),
        ({"num_slots": 0}, "num_slots 0"),
        ({"job_id": 70000}, "not a 16-bit number"),
        ({"tunnel_port": 0}, "needs tunnel_port"),
        ({"transport": "tcp"}, "neither 'udp' nor 'tunnel'"),
        ({"local_mac": "zz:00:00:00:00:01"}, "not a MAC address"),
        ({"switch_ip": "10.0.0.300"}, "not an IPv4 address"),
        ({"k": 0}, "k 0 out of range"),
    ],
)
def test_jobspec_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"job_id": 1, "rank": 0, "world_size": 2, "num_slots": 4,
                               "tunnel_port": 9}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        JobSpec(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.int8, np.uint32, np.complex64, np.bool_, object])
def test_unsupported_dtypes_are_refused(dtype: object) -> None:
    c, wire = comm()
    with pytest.raises(TypeError, match="not supported; supported: float16, bfloat16"):
        c.allreduce(np.zeros(4, dtype=dtype))  # type: ignore[call-overload]
    assert wire.sent == []


def test_unsupported_op_is_refused() -> None:
    c, wire = comm()
    with pytest.raises(ValueError, match="op 'max' is not supported"):
        c.allreduce(np.zeros(4, np.float32), op="max")
    assert wire.sent == []


def test_int64_outside_int32_is_refused_naming_the_element() -> None:
    c, wire = comm()
    with pytest.raises(ValueError, match="element 2 is 2147483648"):
        c.allreduce(np.array([0, 1, 2**31, 3], dtype=np.int64))
    assert wire.sent == []


def test_first_window_is_sent_then_timeout() -> None:
    c, wire = comm()
    from p4reduce.worker import AllreduceTimeout

    with pytest.raises(AllreduceTimeout, match="job 1: no result"):
        c.allreduce(np.ones(64 * 10, np.float32))
    # one exponent packet holds the descriptor and the proposals of all 10 chunks; the
    # data waits for its result
    assert len({p[:12] for p in wire.sent if not p[0] & 2}) == 1
    assert any(p[0] & 2 for p in wire.sent)  # and retransmissions, flagged


def test_tunnel_frames_carry_the_job_addresses() -> None:
    job = JobSpec(1, 0, 2, 4, tunnel_port=9, local_port=4321, local_ip="10.0.0.7")
    t = TunnelTransport(job)
    try:
        assert t.local.port == 4321 and t.local.ip == "10.0.0.7"
    finally:
        t.close()
