"""The streamer's slot/round bookkeeping and loss recovery, without sockets, on both
engines (the Python streamer and the C engine in queue mode)."""

from __future__ import annotations

import numpy as np
import pytest

from p4reduce.worker import AllreduceError, Communicator, JobSpec, wire
from p4reduce.worker.stream import RtoEstimator
from tests.support.refswitch import RefSwitch


class LossyMemory:
    """One worker and an in-memory reference switch; every n-th packet is dropped on
    the way up and every m-th result on the way down (deterministic)."""

    def __init__(self, slots: int, drop_up: int = 0, drop_down: int = 0) -> None:
        self.switch = RefSwitch()
        self.switch.add_job(1, slots, 1)
        self.drop_up, self.drop_down = drop_up, drop_down
        self.n_up = self.n_down = 0
        self.queue: list[bytes] = []
        self.seen: list[wire.AggHeader] = []

    def send(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.seen.append(wire.AggHeader.unpack(p))
            self.n_up += 1
            if self.drop_up and self.n_up % self.drop_up == 0:
                continue
            for _, out in self.switch.handle(0, p):
                self.n_down += 1
                if self.drop_down and self.n_down % self.drop_down == 0:
                    continue
                self.queue.append(out)

    def recv(self, timeout: float) -> list[bytes]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        pass


def first_sends(t: LossyMemory) -> list[wire.AggHeader]:
    return [h for h in t.seen if not h.flags & wire.FLAG_RETRANSMIT]


@pytest.fixture(params=["python", "c"], autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("P4REDUCE_ENGINE", request.param)
    return str(request.param)


def comm(t: LossyMemory, slots: int) -> Communicator:
    return Communicator(JobSpec(1, 0, 1, slots, tunnel_port=1), t, timeout_s=5,
                        initial_rto_s=0.002, min_rto_s=0.001, max_rto_s=0.01)


@pytest.mark.timeout(60)
def test_slots_and_rounds_continue_across_calls() -> None:
    t = LossyMemory(4)
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
    t = LossyMemory(1)
    c = comm(t, 1)
    for _ in range(130):
        c.allreduce(np.ones(1, np.int32))  # two packets per call on the only slot
    rounds = [h.round for h in first_sends(t)]
    assert rounds[:3] == [0, 1, 2] and rounds[255:258] == [255, 0, 1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("up", "down"), [(3, 0), (0, 4), (5, 7), (2, 3)])
def test_deterministic_losses_are_recovered_exactly(up: int, down: int) -> None:
    x = np.random.default_rng(up * 10 + down).standard_normal(64 * 40).astype(np.float32)
    clean = comm(LossyMemory(8), 8).allreduce(x)
    t = LossyMemory(8, up, down)
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


class Doubling(LossyMemory):
    """Every result arrives twice in the same batch (a duplicating link)."""

    def recv(self, timeout: float) -> list[bytes]:
        return [p for p in super().recv(timeout) for _ in range(2)]


@pytest.mark.timeout(60)
def test_duplicated_results_in_one_batch_count_once() -> None:
    x = np.random.default_rng(5).standard_normal(64 * 40).astype(np.float32)
    clean = comm(LossyMemory(8), 8).allreduce(x)
    c = comm(Doubling(8), 8)
    np.testing.assert_array_equal(c.allreduce(x), clean)
    stats = c.last_stats
    assert stats is not None and stats.duplicates_received == stats.packets_sent


class Shifted(LossyMemory):
    """Results of data packets come back at another offset, as when the ranks stream
    calls of different layouts that the descriptor did not catch."""

    def recv(self, timeout: float) -> list[bytes]:
        out = []
        for p in super().recv(timeout):
            h = wire.AggHeader.unpack(p)
            if not h.flags & wire.FLAG_EXP_ONLY:
                h = wire.AggHeader(h.flags, h.job_id, h.worker_id, h.slot, h.round,
                                   h.offset + 64, h.exp)
            out.append(h.pack() + p[wire.AGG_HEADER_LEN:])
        return out


@pytest.mark.timeout(60)
def test_a_result_at_another_offset_fails_the_call() -> None:
    c = comm(Shifted(4), 4)
    with pytest.raises(AllreduceError, match=r"at offset 64 .* while it sent offset 0"):
        c.allreduce(np.ones(64 * 3, np.int32))


class Trickle(LossyMemory):
    """Results handed over one per receive, as from a switch slower than the worker:
    the streamer then pauses to gather them (see Streamer._gather)."""

    def recv(self, timeout: float) -> list[bytes]:
        head, self.queue = self.queue[:1], self.queue[1:]
        return head


@pytest.mark.timeout(60)
def test_results_trickling_in_one_at_a_time_are_gathered_correctly() -> None:
    x = np.random.default_rng(9).standard_normal(64 * 200).astype(np.float32)
    clean = comm(LossyMemory(64), 64).allreduce(x)
    t = Trickle(64)
    c = comm(t, 64)
    np.testing.assert_array_equal(c.allreduce(x), clean)
    stats = c.last_stats
    # a duplicate only answers a resend (a loaded machine may make the timers fire)
    assert stats is not None and stats.duplicates_received <= stats.retransmitted
