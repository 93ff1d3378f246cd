"""The streamer's slot/round bookkeeping and loss recovery, without sockets, on both
engines (the Python streamer and the C engine in queue mode)."""

from __future__ import annotations

import numpy as np
import pytest

from p4reduce.worker import AllreduceError, Communicator, JobSpec, wire
from p4reduce.worker.stream import RtoEstimator
from tests.support.memory_link import MemoryLink, ShiftedResults


def first_sends(t: MemoryLink) -> list[wire.AggHeader]:
    return [h for h in t.seen if not h.flags & wire.FLAG_RETRANSMIT]


@pytest.fixture(params=["python", "c"], autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("P4REDUCE_ENGINE", request.param)
    return str(request.param)


def comm(t: MemoryLink, slots: int) -> Communicator:
    return Communicator(JobSpec(1, 0, 1, slots, tunnel_port=1), t, timeout_s=5,
                        initial_rto_s=0.002, min_rto_s=0.001, max_rto_s=0.01)


@pytest.mark.timeout(60)
def test_slots_and_rounds_continue_across_calls() -> None:
    t = MemoryLink(4)
    c = comm(t, 4)
    c.allreduce(np.arange(64 * 3, dtype=np.int32))  # descriptor + 3 chunks: slots 0..3
    c.allreduce(np.arange(64 * 2, dtype=np.int32))  # descriptor + 2 chunks: slots 0..2 round 1
    seen = first_sends(t)  # a loaded machine may add timer resends; they are not the point
    assert [(h.slot, h.round) for h in seen] == [(0, 0), (1, 0), (2, 0), (3, 0),
                                                    (0, 1), (1, 1), (2, 1)]
    assert [h.flags for h in seen] == [wire.FLAG_EXP_ONLY, 0, 0, 0, wire.FLAG_EXP_ONLY, 0, 0]
    assert [h.offset for h in seen] == [0, 0, 64, 128, 0, 0, 64]


@pytest.mark.timeout(60)
def test_rounds_wrap_after_256_uses_of_a_slot() -> None:
    t = MemoryLink(1)
    c = comm(t, 1)
    for _ in range(130):
        c.allreduce(np.ones(1, np.int32))  # two packets per call on the only slot
    rounds = [h.round for h in first_sends(t)]
    assert rounds[:3] == [0, 1, 2] and rounds[255:258] == [255, 0, 1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("up", "down"), [(3, 0), (0, 4), (5, 7), (2, 3)])
def test_deterministic_losses_are_recovered_exactly(up: int, down: int) -> None:
    x = np.random.default_rng(up * 10 + down).standard_normal(64 * 40).astype(np.float32)
    clean = comm(MemoryLink(8), 8).allreduce(x)
    t = MemoryLink(8, drop_up=up, drop_down=down)
    c = comm(t, 8)
    np.testing.assert_array_equal(c.allreduce(x), clean)
    stats = c.last_stats
    assert stats is not None and stats.retransmitted > 0
    retx = [h for h in t.seen if h.flags & wire.FLAG_RETRANSMIT]
    assert len(retx) == stats.retransmitted
    assert stats.packets_sent == len(t.seen)


def test_rto_estimator_follows_rtt_and_backs_off_once_per_period() -> None:
    est = RtoEstimator(initial_s=0.1, min_s=0.001, max_s=1.0)
    assert est.rto == 0.1
    for _ in range(20):
        est.sample(0.004)
    assert 0.001 <= est.rto < 0.01
    before = est.rto
    est.backoff(100.0)
    est.backoff(100.0)  # same period: no second doubling
    assert est.rto == pytest.approx(2 * before)
    for i in range(30):
        est.backoff(101.0 + i)
    assert est.rto == 1.0


class Doubling(MemoryLink):
    """Every result arrives twice in the same batch (a duplicating link)."""

    def recv(self, timeout: float) -> list[bytes]:
        return [p for p in super().recv(timeout) for _ in range(2)]


@pytest.mark.timeout(60)
def test_duplicated_results_in_one_batch_count_once() -> None:
    x = np.random.default_rng(5).standard_normal(64 * 40).astype(np.float32)
    clean = comm(MemoryLink(8), 8).allreduce(x)
    c = comm(Doubling(8), 8)
    np.testing.assert_array_equal(c.allreduce(x), clean)
    stats = c.last_stats
    assert stats is not None and stats.duplicates_received == stats.packets_sent


@pytest.mark.timeout(60)
def test_a_result_at_another_offset_fails_the_call() -> None:
    c = comm(ShiftedResults(4), 4)
    with pytest.raises(AllreduceError, match=r"at offset 64 .* while it sent offset 0"):
        c.allreduce(np.ones(64 * 3, np.int32))


class Trickle(MemoryLink):
    """Results handed over one per receive, as from a switch slower than the worker:
    the streamer then pauses to gather them (see Streamer._gather)."""

    def recv(self, timeout: float) -> list[bytes]:
        head, self.queue = self.queue[:1], self.queue[1:]
        return head


@pytest.mark.timeout(60)
def test_results_trickling_in_one_at_a_time_are_gathered_correctly() -> None:
    x = np.random.default_rng(9).standard_normal(64 * 200).astype(np.float32)
    clean = comm(MemoryLink(64), 64).allreduce(x)
    t = Trickle(64)
    c = comm(t, 64)
    np.testing.assert_array_equal(c.allreduce(x), clean)
    stats = c.last_stats
    # a duplicate only answers a resend (a loaded machine may make the timers fire)
    assert stats is not None and stats.duplicates_received <= stats.retransmitted
