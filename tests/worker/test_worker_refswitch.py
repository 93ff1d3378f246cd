"""The reference switch model against docs/DESIGN.md section 3, case by case."""

from __future__ import annotations

import numpy as np

from p4reduce.worker import wire
from tests.support.refswitch import (
    AGGREGATED,
    BAD_SLOT,
    DUPLICATES,
    NOT_MEMBER,
    RESENT,
    RESULTS,
    STALE,
    UNKNOWN_JOB,
    RefSwitch,
)

K = 4


def pkt(worker: int, slot: int = 0, rnd: int = 0, values: list[int] | None = None, exp: int = 0,
        flags: int = 0, job: int = 7) -> bytes:
    vals = np.array(values if values is not None else [worker + 1] * K, dtype=np.int32)
    return wire.pack_payload(wire.AggHeader(flags, job, worker, slot, rnd, 64 * slot, exp), vals)


def parse(payload: bytes) -> tuple[wire.AggHeader, list[int]]:
    h, v = wire.unpack_payload(payload, K)
    return h, v.tolist()


def switch(workers: int = 3, slots: int = 4) -> RefSwitch:
    sw = RefSwitch(k=K)
    sw.add_job(7, slots, workers)
    return sw


def test_round_completes_with_multicast_to_every_worker() -> None:
    sw = switch()
    assert sw.handle(0, pkt(0, exp=-3)) == []
    assert sw.handle(2, pkt(2, exp=5)) == []
    out = sw.handle(1, pkt(1, exp=-128))
    assert [p for p, _ in out] == [0, 1, 2]
    h, v = parse(out[0][1])
    assert h.flags & wire.FLAG_RESULT and h.exp == 5 and h.slot == 0 and h.round == 0
    assert v == [6] * K
    assert sw.counter(7, RESULTS) == 1 and sw.counter(7, AGGREGATED) == 3


def test_sum_wraps_like_int32() -> None:
    sw = switch(workers=2)
    sw.handle(0, pkt(0, values=[2**31 - 1, -(2**31), 5, 0]))
    _, v = parse(sw.handle(1, pkt(1, values=[1, -1, -5, 0]))[0][1])
    assert v == [-(2**31), 2**31 - 1, 0, 0]


def test_retransmission_before_completion_is_dropped_and_not_added_twice() -> None:
    sw = switch(workers=2)
    sw.handle(0, pkt(0))
    assert sw.handle(0, pkt(0, flags=wire.FLAG_RETRANSMIT)) == []
    assert sw.counter(7, DUPLICATES) == 1
    _, v = parse(sw.handle(1, pkt(1))[0][1])
    assert v == [3] * K


def test_retransmission_after_completion_gets_a_unicast_copy() -> None:
    sw = switch(workers=2)
    sw.handle(0, pkt(0))
    sw.handle(1, pkt(1))
    out = sw.handle(1, pkt(1, flags=wire.FLAG_RETRANSMIT))
    assert [p for p, _ in out] == [1]
    h, v = parse(out[0][1])
    assert v == [3] * K and h.flags & wire.FLAG_RESULT
    assert sw.counter(7, RESENT) == 1


def test_shadow_copy_keeps_the_previous_round_readable() -> None:
    sw = switch(workers=2)
    for r in (0, 1):
        sw.handle(0, pkt(0, rnd=r, values=[r] * K))
        sw.handle(1, pkt(1, rnd=r, values=[10] * K))
    # a late retransmission of round 0 still gets round 0's result
    _, v = parse(sw.handle(0, pkt(0, rnd=0, flags=wire.FLAG_RETRANSMIT))[0][1])
    assert v == [10] * K


def test_stale_round_is_dropped_and_new_round_reopens() -> None:
    sw = switch(workers=2)
    sw.handle(0, pkt(0, rnd=2))
    assert sw.handle(1, pkt(1, rnd=0)) == []  # same parity, older: stale
    assert sw.counter(7, STALE) == 1
    sw.handle(1, pkt(1, rnd=2))
    sw.handle(0, pkt(0, rnd=4, values=[9] * K))  # newer: reopens the cell
    _, v = parse(sw.handle(1, pkt(1, rnd=4, values=[1] * K))[0][1])
    assert v == [10] * K


def test_round_numbers_wrap_mod_256() -> None:
    sw = switch(workers=1)
    assert sw.handle(0, pkt(0, rnd=254))
    assert sw.handle(0, pkt(0, rnd=0))  # 0 is newer than 254
    assert sw.handle(0, pkt(0, rnd=254, flags=wire.FLAG_RETRANSMIT)) == []  # now stale
    assert sw.counter(7, STALE) == 1


def test_new_epoch_ignores_leftover_state() -> None:
    sw = switch(workers=2)
    sw.handle(0, pkt(0, rnd=0))  # half a round left behind by the old allocation
    sw.add_job(7, 4, 2, epoch=2)
    sw.handle(1, pkt(1, rnd=0))
    assert sw.counter(7, RESULTS) == 0  # the old contribution of worker 0 is not counted
    out = sw.handle(0, pkt(0, rnd=0))
    assert parse(out[0][1])[1] == [3] * K


def test_admission_checks() -> None:
    sw = switch(workers=2, slots=4)
    assert sw.handle(0, pkt(0, job=8)) == []
    assert sw.counter(8, UNKNOWN_JOB) == 1
    assert sw.handle(0, pkt(0, slot=4)) == []
    assert sw.counter(7, BAD_SLOT) == 1
    assert sw.handle(1, pkt(0)) == []  # worker 0's id from worker 1's port
    assert sw.counter(7, NOT_MEMBER) == 1
    assert sw.handle(0, b"\0" * 10) == []


def test_jobs_do_not_share_registers() -> None:
    sw = RefSwitch(k=K)
    sw.add_job(1, 2, 1, base=0, ports=[0])
    sw.add_job(2, 2, 1, base=2, ports=[1])
    out1 = sw.handle(0, pkt(0, job=1, values=[1] * K))
    out2 = sw.handle(1, pkt(0, job=2, values=[2] * K))
    assert parse(out1[0][1])[1] == [1] * K and parse(out2[0][1])[1] == [2] * K


def test_missing_ranks_reads_the_bitmap() -> None:
    sw = switch(workers=3)
    assert sw.missing_ranks(7, 1, 0) == [0, 1, 2]
    sw.handle(1, pkt(1, slot=1))
    assert sw.missing_ranks(7, 1, 0) == [0, 2]


def test_epoch_zero_meets_zeroed_registers_like_the_switch() -> None:
    """Power-up registers hold tag 0: a job of epoch 0 in round 0 *adds* to them (the
    exponent max then includes the zero), exactly as the P4 program's registers do."""
    sw = RefSwitch(k=K)
    sw.add_job(7, 4, 1, epoch=0)
    h, v = parse(sw.handle(0, pkt(0, exp=-5, values=[1, 2, 3, 4]))[0][1])
    assert h.exp == 0 and v == [1, 2, 3, 4]
    sw.add_job(8, 4, 1, base=4, epoch=3)
    h, _ = parse(sw.handle(0, pkt(0, exp=-5, job=8))[0][1])
    assert h.exp == -5
