"""End-to-end allreduce through the reference switch over loopback UDP tunnel ports.

Ranks run as threads of this process (the real-process variant is test_worker_procs.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from p4reduce.worker import (
    AllreduceError,
    AllreduceTimeout,
    Communicator,
    JobSpec,
    NonFiniteError,
    quant,
)
from tests.support.refswitch import DUPLICATES, RESENT, Faults, RefSwitch, RefSwitchServer

JOB = 42


def job_for(srv: RefSwitchServer, rank: int, world: int, slots: int, k: int = 64) -> JobSpec:
    return JobSpec(JOB, rank, world, slots, k=k, local_mac=f"02:00:00:00:01:{rank:02x}",
                   local_ip=f"10.0.1.{rank + 1}", tunnel_port=srv.addresses[rank][1])


def run_ranks(comms: Sequence[Communicator], fn: Callable[[int, Communicator], Any]) -> list[Any]:
    """fn(rank, comm) in one thread per rank; returns results or raised exceptions."""
    out: list[Any] = [None] * len(comms)

    def body(r: int) -> None:
        try:
            out[r] = fn(r, comms[r])
        except BaseException as exc:
            out[r] = exc

    threads = [threading.Thread(target=body, args=(r,)) for r in range(len(comms))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


class Cluster:
    def __init__(self, world: int, slots: int, faults: Faults | None = None, k: int = 64,
                 **comm_kw: Any) -> None:
        self.switch = RefSwitch(k=k)
        self.switch.add_job(JOB, slots, world)
        self.server = RefSwitchServer(self.switch, world, faults)
        self.comms = [Communicator(job_for(self.server, r, world, slots, k),
                                   missing_ranks=self.server.missing_ranks, **comm_kw)
                      for r in range(world)]

    def __enter__(self) -> Cluster:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self.comms:
            c.close()
        self.server.close()

    def allreduce(self, arrays: Sequence[Any]) -> list[Any]:
        return run_ranks(self.comms, lambda r, c: c.allreduce(arrays[r]))


def inputs(world: int, shape: tuple[int, ...], seed: int = 0, dtype: Any = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(dtype)
            for _ in range(world)]


def check_float(results: list[Any], arrays: list[np.ndarray], k: int = 64) -> None:
    world = len(arrays)
    for res in results:
        assert not isinstance(res, BaseException), res
        assert res.dtype == arrays[0].dtype and res.shape == arrays[0].shape
        np.testing.assert_array_equal(res, results[0])  # every rank gets the same bits
    flat = np.stack([a.astype(np.float64).reshape(-1) for a in arrays])
    exact = flat.sum(axis=0)
    n = flat.shape[1]
    chunk_max = np.abs(quant.to_blocks(np.abs(flat).max(axis=0), k)).max(axis=1)
    bound = np.repeat(quant.error_bound(world, chunk_max), k)[:n]
    eps = float(np.finfo(arrays[0].dtype).eps) if arrays[0].dtype != ml_dtypes.bfloat16 else 2.0**-7
    got = results[0].astype(np.float64).reshape(-1)
    assert np.all(np.abs(got - exact) <= bound + eps * np.abs(exact) + 1e-300)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("world", [2, 3, 8])
def test_float32_sum_within_bound(world: int) -> None:
    arrays = inputs(world, (37, 29), seed=world)
    with Cluster(world, slots=8) as cl:
        check_float(cl.allreduce(arrays), arrays)
        stats = cl.comms[0].last_stats
        # 17 data packets and one exponent packet (the descriptor and 17 proposals)
        assert stats is not None and stats.packets_sent >= 17 + 1 and stats.tensor_bytes == 37 * 29 * 4


@pytest.mark.timeout(60)
def test_int32_is_bit_exact_and_wraps() -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.integers(-(2**31), 2**31, size=1000, dtype=np.int64).astype(np.int32)
              for _ in range(4)]
    arrays[0][0], arrays[1][0] = 2**31 - 1, 1
    with Cluster(4, slots=4) as cl:
        results = cl.allreduce(arrays)
    want = np.sum(arrays, axis=0, dtype=np.int32)
    for res in results:
        assert res.dtype == np.int32
        np.testing.assert_array_equal(res, want)
    assert int(arrays[0][0]) + int(arrays[1][0]) == 2**31  # the first element did wrap


@pytest.mark.timeout(60)
def test_sizes_shapes_and_dtypes_across_calls() -> None:
    """Many calls on one communicator: rounds continue, every size works."""
    with Cluster(2, slots=4, k=16) as cl:
        for i, n in enumerate([0, 1, 15, 16, 17, 64, 65, 200]):
            arrays = inputs(2, (n,), seed=i)
            check_float(cl.allreduce(arrays), arrays, k=16)
        for dtype in (np.float16, ml_dtypes.bfloat16, np.float64):
            arrays = inputs(2, (3, 11), seed=9, dtype=dtype)
            check_float(cl.allreduce(arrays), arrays, k=16)
        ints = [np.arange(-50, 50, dtype=np.int64).reshape(10, 10) * (r + 1) for r in range(2)]
        res = cl.allreduce(ints)
        assert res[0].dtype == np.int64 and res[0].shape == (10, 10)
        np.testing.assert_array_equal(res[1], ints[0] + ints[1])
        zero = cl.allreduce([np.zeros((0, 3), np.int32)] * 2)
        assert zero[0].shape == (0, 3)
        scalar = cl.allreduce([np.float32(1.5), np.float32(2.25)])
        assert scalar[0].shape == () and scalar[0] == np.float32(3.75)
        strided = [np.arange(60, dtype=np.float32).reshape(6, 10)[::2, ::3] * (r + 1)
                   for r in range(2)]  # not contiguous
        check_float(cl.allreduce(strided), strided, k=16)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("drop", [0.01, 0.05, 0.2])
def test_loss_duplication_reordering_give_identical_bits(drop: float) -> None:
    arrays = inputs(3, (1500,), seed=3)
    ints = [np.arange(700, dtype=np.int32) * (r - 1) for r in range(3)]
    with Cluster(3, slots=8) as clean:
        want_f = clean.allreduce(arrays)[0]
        want_i = clean.allreduce(ints)[0]
    faults = Faults(drop=drop, duplicate=0.05, reorder=0.1, seed=int(drop * 100))
    with Cluster(3, slots=8, faults=faults, min_rto_s=0.005, initial_rto_s=0.02,
                 max_rto_s=0.1) as lossy:
        resent = dups = 0
        for _ in range(2):  # two calls each: state survives a lossy call
            for data, want in ((arrays, want_f), (ints, want_i)):
                got = lossy.allreduce(data)
                resent += sum(c.last_stats.retransmitted for c in lossy.comms if c.last_stats)
                dups += sum(c.last_stats.duplicates_received for c in lossy.comms if c.last_stats)
                for r in range(3):
                    np.testing.assert_array_equal(got[r], want)
        assert resent > 0  # the faults did hit and were recovered from
        assert dups > 0  # duplicated results were recognised and counted, not used twice
        assert lossy.switch.counter(JOB, RESENT) + lossy.switch.counter(JOB, DUPLICATES) > 0


@pytest.mark.timeout(60)
def test_a_silent_rank_makes_the_others_fail_naming_it() -> None:
    with Cluster(3, slots=4, timeout_s=1.0) as cl:
        arrays = inputs(3, (300,))
        results = run_ranks(cl.comms[:2], lambda r, c: c.allreduce(arrays[r]))
    for res in results:
        assert isinstance(res, AllreduceTimeout)
        assert res.job_id == JOB and res.missing_ranks == [2] and res.stuck
        assert "job 42" in str(res) and "did not contribute: [2]" in str(res)


@pytest.mark.timeout(60)
def test_timeout_without_probe_says_ranks_are_unknown() -> None:
    srv_switch = RefSwitch()
    srv_switch.add_job(JOB, 2, 2)
    with RefSwitchServer(srv_switch, 2) as srv, \
            Communicator(job_for(srv, 0, 2, 2), timeout_s=0.5) as comm:
        with pytest.raises(AllreduceTimeout, match="which ranks did not contribute is unknown") as info:
            comm.allreduce(np.ones(10, np.float32))
        assert info.value.missing_ranks is None
        assert "tensor size" not in str(info.value)
        with pytest.raises(Exception, match="unusable after an earlier failure"):
            comm.allreduce(np.ones(10, np.float32))


@pytest.mark.timeout(60)
def test_abort_hook_ends_a_waiting_call_at_once_with_its_reason() -> None:
    """What the torch engine's peer watch does: a reason from `abort` fails the pending
    call within a poll period, long before the progress timeout."""
    import time

    srv_switch = RefSwitch()
    srv_switch.add_job(JOB, 4, 2)
    t0 = time.monotonic()
    said: list[str | None] = [None]

    def abort() -> str | None:
        if said[0] is None and time.monotonic() - t0 > 0.5:
            said[0] = "rank 1 last seen 12:00:00.000 (2.0 s ago)"
        return said[0]

    with RefSwitchServer(srv_switch, 2) as srv, \
            Communicator(job_for(srv, 0, 2, 4), timeout_s=30, abort=abort) as comm:
        with pytest.raises(AllreduceError, match="rank 1 last seen") as info:
            comm.allreduce(np.ones(1000, np.float32))
        assert not isinstance(info.value, AllreduceTimeout)
        assert time.monotonic() - t0 < 5.0  # at the abort (0.5 s), long before the 30 s timeout
        with pytest.raises(AllreduceError, match="rank 1 last seen"):  # and it stays said
            comm.allreduce(np.ones(10, np.float32))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e38])
def test_non_finite_input_fails_every_rank_then_recovers(bad: float) -> None:
    arrays = inputs(3, (64 * 12,), seed=5)
    arrays[1][64 * 9 + 3] = bad  # chunk 9 >= S: its exponent rides a data packet
    with Cluster(3, slots=4) as cl:
        results = cl.allreduce(arrays)
        for r, res in enumerate(results):
            assert isinstance(res, NonFiniteError), res
            assert "offsets 576" in str(res)
            assert ("this rank's input" in str(res)) == (r == 1)
        arrays[1][64 * 9 + 3] = 0.0
        check_float(cl.allreduce(arrays), arrays)


@pytest.mark.timeout(60)
def test_async_calls_complete_in_order() -> None:
    with Cluster(2, slots=4) as cl:
        futs = [[c.allreduce_async(np.full(100, i + r, np.int32)) for i in range(3)]
                for r, c in enumerate(cl.comms)]
        for i in range(3):
            np.testing.assert_array_equal(futs[0][i].result(timeout=30), np.full(100, 2 * i + 1))
            np.testing.assert_array_equal(futs[1][i].result(timeout=30), np.full(100, 2 * i + 1))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_mismatched_sizes_fail_every_rank_instead_of_mixing(dtype: Any) -> None:
    with Cluster(2, slots=4, timeout_s=2.0) as cl:
        results = cl.allreduce([np.ones(64 * 3, dtype), np.ones(64 * 5, dtype)])
    for res in results:
        assert isinstance(res, Exception)
        assert "not reducing tensors of the same size" in str(res)
