"""End-to-end allreduce through the real P4 program: aggregator.p4 on the softswitch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.worker import AllreduceTimeout, Communicator, NonFiniteError
from tests.e2e.test_worker_e2e import check_float, inputs, run_ranks
from tests.support.softswitch_job import SoftswitchJob

JOB = 21


def comms_for(sw: SoftswitchJob, **kw: Any) -> list[Communicator]:
    return [Communicator(sw.spec(r), missing_ranks=sw.missing_ranks, **kw) for r in range(sw.world)]


def close(comms: list[Communicator]) -> None:
    for c in comms:
        c.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world", [2, 4, 8])
def test_float_and_int_sums_through_aggregator_p4(world: int) -> None:
    floats = inputs(world, (40, 33), seed=world)
    ints = [np.random.default_rng(r).integers(-(2**31), 2**31, 900, dtype=np.int64).astype(np.int32)
            for r in range(world)]
    with SoftswitchJob(JOB, world, num_slots=8) as sw:
        comms = comms_for(sw, timeout_s=20)
        try:
            check_float(run_ranks(comms, lambda r, c: c.allreduce(floats[r])), floats)
            got = run_ranks(comms, lambda r, c: c.allreduce(ints[r]))
        finally:
            close(comms)
        assert sw.counter(n.COUNTER_RESULTS) > 0
    want = np.sum(ints, axis=0, dtype=np.int32)
    for res in got:
        np.testing.assert_array_equal(res, want)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("drop", [0.01, 0.05, 0.2])
def test_faults_on_every_port_give_identical_bits(drop: float) -> None:
    world = 3
    floats = inputs(world, (700,), seed=11)
    with SoftswitchJob(JOB, world, num_slots=8) as sw:
        comms = comms_for(sw, timeout_s=20)
        try:
            want = run_ranks(comms, lambda r, c: c.allreduce(floats[r]))[0]
        finally:
            close(comms)
    assert isinstance(want, np.ndarray), want
    with SoftswitchJob(JOB, world, num_slots=8, drop=drop, duplicate=0.05, reorder=0.1,
                       seed=int(drop * 100)) as sw:
        comms = comms_for(sw, timeout_s=20, initial_rto_s=0.05, min_rto_s=0.01)
        try:
            for _ in range(2):
                got = run_ranks(comms, lambda r, c: c.allreduce(floats[r]))
                for res in got:
                    np.testing.assert_array_equal(res, want)
        finally:
            close(comms)


@pytest.mark.timeout(60)
def test_silent_rank_is_named_from_the_switch_bitmap() -> None:
    with SoftswitchJob(JOB, 3, num_slots=4) as sw:
        comms = comms_for(sw, timeout_s=1.0)
        try:
            got = run_ranks(comms[:2], lambda r, c: c.allreduce(np.ones(500, np.float32)))
        finally:
            close(comms)
    for res in got:
        assert isinstance(res, AllreduceTimeout), res
        assert res.missing_ranks == [2]
        assert f"job {JOB}" in str(res)


@pytest.mark.timeout(60)
def test_signed_exponents_and_poison_through_the_p4_max() -> None:
    """Exponents cross zero (tiny values, all-zero chunks proposing -128) and a NaN's
    poison code (127) must win the P4 program's signed max on every rank."""
    world = 3
    arrays = [np.zeros(64 * 6, np.float32), np.full(64 * 6, 3e-20, np.float32),
              np.linspace(-1e3, 1e3, 64 * 6).astype(np.float32)]
    arrays[0][64 * 5:] = 7.0
    with SoftswitchJob(JOB, world, num_slots=4) as sw:
        comms = comms_for(sw, timeout_s=20)
        try:
            check_float(run_ranks(comms, lambda r, c: c.allreduce(arrays[r])), arrays)
            tiny = [np.full(100, 1e-30, np.float32) * (r + 1) for r in range(world)]
            check_float(run_ranks(comms, lambda r, c: c.allreduce(tiny[r])), tiny)
            poisoned = [a.copy() for a in arrays]
            poisoned[2][64 * 5 + 1] = np.nan
            got = run_ranks(comms, lambda r, c: c.allreduce(poisoned[r]))
        finally:
            close(comms)
    for res in got:
        assert isinstance(res, NonFiniteError), res
        assert "offsets 320" in str(res)
