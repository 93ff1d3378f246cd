"""Differential test: the reference model and aggregator.p4 (on the softswitch) give the
same packets out for the same packets in, including stale, duplicate and resent ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4reduce.worker import wire
from p4reduce.worker.frames import Endpoint, build_frame, udp_payload
from tests.support.refswitch import RefSwitch
from tests.support.softswitch_job import SWITCH_IP, SWITCH_MAC, SoftswitchJob

JOB, WORLD, SLOTS = 5, 3, 2

packets = st.lists(
    st.tuples(
        st.integers(0, WORLD - 1),  # worker
        st.integers(0, SLOTS),  # slot (SLOTS itself is out of range)
        st.sampled_from([0, 1, 2, 3, 127, 128, 129, 255]),  # round
        st.integers(-128, 127),  # exp
        st.sampled_from([0, wire.FLAG_RETRANSMIT, wire.FLAG_EXP_ONLY]),
        st.integers(0, 2**32 - 1),  # seed of the values
        st.booleans(),  # from the worker's own port (else: a non-member source)
    ),
    min_size=1, max_size=40,
)


Packet = tuple[int, int, int, int, int, int, bool]


def compare(seq: list[Packet]) -> int:
    """Feed both switches; assert equal outputs per packet; return how many came out."""
    n_out = 0
    ref = RefSwitch()
    ref.add_job(JOB, SLOTS, WORLD, epoch=1, ports=[w + 1 for w in range(WORLD)])
    sw = SoftswitchJob(JOB, WORLD, SLOTS)  # never started: packets go straight in
    try:
        me = Endpoint(SWITCH_MAC, SWITCH_IP, wire.AGG_UDP_PORT)
        for worker, slot, rnd, exp, flags, seed, own in seq:
            values = np.random.default_rng(seed).integers(-(2**31), 2**31, wire.DEFAULT_K,
                                                          dtype=np.int64).astype(np.int32)
            payload = wire.pack_payload(wire.AggHeader(flags, JOB, worker, slot, rnd, 7, exp), values)
            sender = worker if own else (worker + 1) % WORLD
            src = Endpoint(sw.worker_mac(sender), sw.worker_ip(sender), 40000 + sender)
            port = sender + 1
            want = ref.handle(port, payload)
            got = sw.pipeline.process(port, build_frame(src, me, payload))
            got_payloads = []
            for out_port, frame in got:
                parsed = udp_payload(frame)
                assert parsed is not None
                got_payloads.append((out_port, parsed[1]))
            assert sorted(got_payloads) == sorted(want)
            n_out += len(want)
    finally:
        sw.device.stop()
    return n_out


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets)
def test_reference_model_and_p4_program_agree(seq: list[Packet]) -> None:
    compare(seq)


@pytest.mark.timeout(60)
def test_a_full_round_with_resend_and_stale_agrees() -> None:
    seq: list[Packet] = [
        (0, 0, 1, -3, 0, 1, True), (1, 0, 1, 4, 0, 2, True), (1, 0, 1, 4, wire.FLAG_RETRANSMIT, 2, True),
        (2, 0, 1, -128, wire.FLAG_RETRANSMIT, 3, True),  # completes: 3 results
        (0, 0, 1, -3, wire.FLAG_RETRANSMIT, 1, True),  # resend: 1 result
        (0, 0, 255, 0, 0, 4, True),  # round 255 is behind round 1 in the same cell: stale
        (2, 1, 0, 9, 0, 5, False),  # not a member
    ]
    assert compare(seq) == 3 + 1
