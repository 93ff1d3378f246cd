"""The window's loss detection (worker/window.py and its C twin in worker/cstream.c),
driven with made-up times: both implementations must decide the same in every scenario."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from p4reduce.worker.window import RtoEstimator, Window


class CWindow:
    """cstream.c's window unit behind Window's interface (slots and indexes as arrays)."""

    def __init__(self, slots: int, rto: RtoEstimator) -> None:
        from p4reduce.worker import cstream

        nat = cstream.load()
        self.lib, self.ffi = nat.lib, nat.ffi
        self.w = self.ffi.gc(self.lib.cs_win_new(slots, rto.initial_s, rto.min_s, rto.max_s),
                             self.lib.cs_win_free)
        self.buf = self.ffi.new("uint32_t[]", slots)

    def start(self, now: float) -> None:
        self.lib.cs_win_start(self.w, now)

    def sent(self, slots: Any, idx: Any, now: float) -> None:
        for s, i in zip(np.asarray(slots).tolist(), np.asarray(idx).tolist(), strict=True):
            self.lib.cs_win_sent(self.w, s, i, now)

    def acked(self, slots: Any, now: float) -> np.ndarray:
        return np.array([self.lib.cs_win_acked(self.w, s, now)
                         for s in np.asarray(slots).tolist()], dtype=np.intp)

    def due(self, now: float) -> np.ndarray:
        n = self.lib.cs_win_due(self.w, now, self.buf)
        return np.sort(np.array([self.buf[i] for i in range(n)], dtype=np.intp))

    def next_event(self, now: float) -> float:
        return float(self.lib.cs_win_next(self.w, now))

    @property
    def outstanding(self) -> int:
        return int(self.lib.cs_win_outstanding(self.w))

    @property
    def rto_s(self) -> float:
        return float(self.lib.cs_win_rto(self.w))

    @property
    def srtt(self) -> float | None:
        v = float(self.lib.cs_win_srtt(self.w))
        return None if v < 0 else v

    @property
    def rack_rtt(self) -> float:
        return float(self.lib.cs_win_rack_rtt(self.w))


class PyWindow(Window):
    @property
    def rto_s(self) -> float:
        return self.rto.rto

    @property
    def srtt(self) -> float | None:
        return self.rto.srtt


Make = Callable[..., Any]


@pytest.fixture(params=["python", "c"])
def make(request: pytest.FixtureRequest) -> Make:
    def build(slots: int = 8, initial: float = 0.1, lo: float = 0.01, hi: float = 1.0) -> Any:
        rto = RtoEstimator(initial, lo, hi)
        return PyWindow(slots, rto) if request.param == "python" else CWindow(slots, rto)

    return build


def a(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.intp)


def test_results_free_slots_and_sample_the_rtt(make: Make) -> None:
    w = make()
    w.start(0.0)
    w.sent(a(0, 1, 2, 3), a(10, 11, 12, 13), 0.0)
    assert w.outstanding == 4
    assert w.acked(a(2, 0), 0.01).tolist() == [12, 10]
    assert w.outstanding == 2
    assert w.srtt == pytest.approx(0.01)
    # two samples of 10 ms: rttvar 5 ms then 3.75 ms, so rto = 10 + 4 * 3.75 ms
    assert w.rto_s == pytest.approx(0.025)
    assert w.rack_rtt == pytest.approx(0.01)


def test_rack_resends_a_packet_overtaken_by_a_later_one(make: Make) -> None:
    w = make()
    w.start(0.0)
    for s, t in enumerate((0.0, 0.001, 0.002)):
        w.sent(a(s), a(s), t)
    w.acked(a(2), 0.012)  # RTT 10 ms; margin max(10 ms / 4, 1 ms) = 2.5 ms
    assert w.due(0.0124).tolist() == []
    assert w.next_event(0.0124) == pytest.approx(0.0125)
    assert w.due(0.0125).tolist() == [0]  # sent before the acknowledged one, now late
    assert w.next_event(0.0125) == pytest.approx(0.0135)  # slot 1 is next
    assert w.due(0.0135).tolist() == [1]
    assert w.due(0.02).tolist() == []  # both resent at their detection time: not late again
    assert w.outstanding == 2


def test_karn_resent_packets_give_no_rtt_sample(make: Make) -> None:
    w = make()
    w.start(0.0)
    w.sent(a(0), a(0), 0.0)
    w.sent(a(1), a(1), 0.001)
    w.acked(a(1), 0.011)
    assert w.due(0.02).tolist() == [0]
    srtt, rto = w.srtt, w.rto_s
    w.acked(a(0), 0.5)  # a resend's result: which copy it answers is unknown
    assert (w.srtt, w.rto_s) == (srtt, rto)


def test_tail_timer_fires_after_silence_and_doubles_the_slots_timeout(make: Make) -> None:
    w = make(initial=0.1, hi=0.3)
    w.start(0.0)
    w.sent(a(3), a(7), 0.0)
    assert w.due(0.099).tolist() == []
    assert w.next_event(0.05) == pytest.approx(0.1)
    assert w.due(0.1).tolist() == [3]
    assert w.rto_s == pytest.approx(0.2)  # backed off for packets sent from now on
    assert w.due(0.29).tolist() == []  # the slot's own timeout doubled: 0.2 s from 0.1
    assert w.due(0.301).tolist() == [3]
    assert w.due(0.6).tolist() == []  # and doubled again, up to the maximum 0.3 s
    assert w.due(0.602).tolist() == [3]
    assert w.acked(a(3), 0.61).tolist() == [7]
    assert w.outstanding == 0 and w.due(5.0).tolist() == []
    assert w.next_event(5.0) == math.inf


def test_tail_timer_waits_for_silence(make: Make) -> None:
    """A result for another packet is progress: an old packet is then not resent by the
    timer although its own deadline passed (a queue at a slow switch is not loss)."""
    w = make(initial=0.1)
    w.start(0.0)
    w.sent(a(0, 1), a(0, 1), 0.0)  # same send time: no RACK ordering between them
    w.acked(a(1), 0.09)  # RTT 90 ms: rto 0.27 s
    assert w.due(0.15).tolist() == []
    assert w.next_event(0.15) == pytest.approx(0.09 + w.rto_s)
    assert w.due(0.09 + w.rto_s).tolist() == [0]


def test_many_expiries_back_off_once_per_period(make: Make) -> None:
    w = make(initial=0.1, hi=10.0)
    w.start(0.0)
    w.sent(a(0), a(0), 0.0)
    w.sent(a(1), a(1), 0.05)
    assert w.due(0.16).tolist() == [0, 1]  # two expiries, one congestion signal
    assert w.rto_s == pytest.approx(0.2)
    assert w.due(0.35).tolist() == []  # each slot's own timeout doubled to 0.2 s
    assert w.due(0.37).tolist() == [0, 1]  # a new period: the second doubling
    assert w.rto_s == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(6))
def test_random_schedules_decide_the_same_in_python_and_c(seed: int) -> None:
    """Random sends, results and clock steps: both windows resend the same slots at the
    same times and keep the same estimates."""
    rng = np.random.default_rng(seed)
    slots = int(rng.integers(1, 40))
    rto = RtoEstimator(0.05, 0.005, 0.4)
    py = PyWindow(slots, RtoEstimator(rto.initial_s, rto.min_s, rto.max_s))
    cw = CWindow(slots, rto)
    now = 0.0
    py.start(now)
    cw.start(now)
    nxt = 0
    for _ in range(400):
        now += float(rng.exponential(0.004))
        busy = np.flatnonzero(py.idx >= 0)
        idle = np.flatnonzero(py.idx < 0)
        r = rng.random()
        if r < 0.45 and idle.size:
            pick = rng.choice(idle, size=int(rng.integers(1, idle.size + 1)), replace=False)
            idx = np.arange(nxt, nxt + pick.size)
            nxt += pick.size
            py.sent(pick, idx, now)
            cw.sent(pick, idx, now)
        elif r < 0.8 and busy.size:
            pick = rng.choice(busy, size=int(rng.integers(1, busy.size + 1)), replace=False)
            assert py.acked(pick, now).tolist() == cw.acked(pick, now).tolist()
        assert py.due(now).tolist() == cw.due(now).tolist(), now
        assert py.next_event(now) == pytest.approx(cw.next_event(now))
        assert py.outstanding == cw.outstanding
        assert py.rto_s == pytest.approx(cw.rto_s)
        assert py.rack_rtt == pytest.approx(cw.rack_rtt)
