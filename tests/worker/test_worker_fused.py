"""Several arrays of any supported dtypes in one call (`Communicator.allreduce_many`, what
the torch backend's allreduce_coalesced, DDP buckets and comm hook use): one stream, one
exponent round, the same bits on both engines."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest

from p4reduce.contract import DESCRIPTOR_LANES
from p4reduce.worker import Communicator, JobSpec, quant
from tests.e2e.test_worker_e2e import Cluster, inputs, run_ranks
from tests.support.refswitch import Faults

K = 16


def arrays_of(rank: int) -> list[np.ndarray]:
    rng = np.random.default_rng(rank)
    return [
        inputs(1, (7, 5), seed=rank)[0],
        rng.integers(-1000, 1000, 37).astype(np.int32),
        inputs(1, (40,), seed=10 + rank, dtype=np.float16)[0],
        rng.integers(-(2**31), 2**31, 3).astype(np.int64),
        inputs(1, (3,), seed=20 + rank, dtype=ml_dtypes.bfloat16)[0],
        inputs(1, (33,), seed=30 + rank, dtype=np.float64)[0],
        np.zeros((0, 4), np.float32),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["python", "c"])
def test_mixed_arrays_in_one_stream(engine: str) -> None:
    world = 3
    per_rank = [arrays_of(r) for r in range(world)]
    per_rank[1][3][:] = [1, -1, 0]  # int64 values must fit int32: this rank's are small
    for r in (0, 2):
        per_rank[r][3][:] = [5, 6, 7]
    with Cluster(world, slots=8, k=K, engine=engine) as cl:
        got = run_ranks(cl.comms, lambda r, c: c.allreduce_many(per_rank[r]))
        stats = cl.comms[0].last_stats
        seq_after = cl.comms[0].engine.seq
    for res in got:
        assert not isinstance(res, BaseException), res
    n_floats = 35 + 40 + 3 + 33
    chunks_f, chunks_i = -(-n_floats // K), -(-(37 + 3) // K)
    n_exp = -(-(DESCRIPTOR_LANES + chunks_f) // K)
    assert stats is not None and stats.packets_sent == n_exp + chunks_f + chunks_i
    assert seq_after == n_exp + chunks_f + chunks_i  # one call
    # the float segment is quantized as one, so the bound uses the largest magnitude of
    # all float arrays (a chunk may span two of them), then each dtype's own rounding
    big = max(float(np.abs(a[j].astype(np.float64)).max()) for a in per_rank for j in (0, 2, 4, 5))
    for i, proto in enumerate(per_rank[0]):
        outs = [res[i] for res in got]
        assert all(o.dtype == proto.dtype and o.shape == proto.shape for o in outs)
        for o in outs:
            np.testing.assert_array_equal(o, outs[0])  # every rank the same bits
        if proto.dtype.kind == "i":
            want = np.sum([a[i].astype(np.int64) for a in per_rank], axis=0)
            np.testing.assert_array_equal(outs[0], want.astype(proto.dtype))
            continue
        exact = np.sum([a[i].astype(np.float64) for a in per_rank], axis=0)
        eps = EPS[str(proto.dtype)]
        err = np.abs(outs[0].astype(np.float64) - exact)
        assert np.all(err <= world * 2.0**-quant.shift_for(world) * big + eps * np.abs(exact))


EPS = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8, "float64": 2.0**-52}


@pytest.mark.timeout(60)
def test_both_engines_stream_the_same_bits_and_packets() -> None:
    from tests.support.memory_link import MemoryLink

    got: dict[str, Any] = {}
    for engine in ("python", "c"):
        t = MemoryLink(4, k=K)
        c = Communicator(JobSpec(1, 0, 1, 4, k=K, tunnel_port=1), t, timeout_s=5, engine=engine)
        got[engine] = (c.allreduce_many(arrays_of(0)[:3] + arrays_of(0)[4:]),
                       [(h.flags, h.slot, h.round, h.offset, h.exp) for h in t.seen])
    for a, b in zip(got["python"][0], got["c"][0], strict=True):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    assert got["python"][1] == got["c"][1]


def test_a_refused_array_refuses_the_whole_call_before_sending() -> None:
    from tests.worker.test_cstream import Silent

    t = Silent()
    c = Communicator(JobSpec(1, 0, 2, 4, tunnel_port=9), t, timeout_s=1)
    with pytest.raises(TypeError, match="dtype complex64 is not supported"):
        c.allreduce_many([np.ones(3, np.float32), np.ones(2, np.complex64)])
    with pytest.raises(ValueError, match="element 1 is 4294967296"):
        c.allreduce_many([np.ones(3, np.float32), np.array([0, 2**32])])
    assert t.sent == []
    assert c.allreduce_many([]) == []
    assert t.sent == []


@pytest.mark.timeout(120)
def test_lossy_fused_calls_give_identical_bits() -> None:
    per_rank = [arrays_of(r)[:3] for r in range(2)]
    with Cluster(2, slots=8, k=K) as clean:
        want = run_ranks(clean.comms, lambda r, c: c.allreduce_many(per_rank[r]))
    faults = Faults(drop=0.1, duplicate=0.05, reorder=0.1, seed=7)
    with Cluster(2, slots=8, k=K, faults=faults, initial_rto_s=0.02, min_rto_s=0.005,
                 max_rto_s=0.1) as lossy:
        got = run_ranks(lossy.comms, lambda r, c: c.allreduce_many(per_rank[r]))
    for w, g in zip(want, got, strict=True):
        for a, b in zip(w, g, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["python", "c"])
def test_total_stats_sum_every_call(engine: str) -> None:
    """`total_stats` is every call's cost summed (a DDP step is several calls, and
    `last_stats` only the last one); the packet counts are the engine's own."""
    world = 2
    with Cluster(world, slots=8, k=K, engine=engine) as cl:
        sent = []
        for n in (5, 300, 1):
            xs = [np.full(n, r + 1, np.float32) for r in range(world)]
            got = run_ranks(cl.comms, lambda r, c, xs=xs: c.allreduce(xs[r]))
            assert all(not isinstance(g, BaseException) for g in got), got
            stats = cl.comms[0].last_stats
            assert stats is not None
            sent.append(stats.packets_sent)
        total = cl.comms[0].total_stats
        assert total.packets_sent == sum(sent) == cl.comms[0].engine.seq
        assert total.tensor_bytes == 4 * (5 + 300 + 1)
        assert total.retransmitted == 0
