"""Loss detection of the packets in flight: which to resend, and when to look again.

A unit of its own, apart from packets and sockets, so that it can be tested with made-up
times; `worker/cstream.c` has the same unit in C (`cs_win_*`), and the tests run the same
scenarios on both. The window holds, per slot, the packet outstanding on it and its
timers; the streamer tells it what it sent and what came back, and asks it what is due.

Two ways to declare a packet lost:

* RACK-style (RFC 8985 in spirit): a packet is lost when a packet sent after it already
  has its result and it is later than that packet's RTT plus a reordering margin
  (a quarter of that RTT, at least 1 ms). The switch serves packets roughly in order, so
  this finds losses while the window keeps moving, without waiting for a timer.
* Tail timer: when no result at all came for a retransmission timeout (Jacobson/Karels
  estimate; Karn's rule: only packets sent once are sampled), the outstanding packets past
  their own deadline are resent, and each of them doubles its own timeout. The timer
  waits for silence because a queue building up at a slow switch would otherwise look like
  loss and be flooded with copies.

Here the whole-window tests are numpy operations over the slots; the C unit keeps the
outstanding slots in order of their latest send instead (a resend moves a slot to the
end), so that its RACK test walks from the oldest send and stops at the first packet that
is not late. Both decide the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
#: the smallest reordering margin of the RACK test, seconds
MIN_REORDER_S = 0.001


@dataclass
class RtoEstimator:
    """Retransmission timeout from RTT samples (RFC 6298), clamped to [min_s, max_s]."""

    initial_s: float = 0.1
    min_s: float = 0.01
    max_s: float = 1.0
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = field(init=False)
    _last_backoff: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self.rto = self.initial_s

    def sample(self, rtt: float) -> None:
        self.sample_many([rtt])

    def sample_many(self, rtts: list[float]) -> None:
        """`sample` of each RTT in turn, with the state in locals: a batch of results is
        one call, not one method call and one timeout computation per packet."""
        if not rtts:
            return
        srtt, var = self.srtt, self.rttvar
        for rtt in rtts:
            if srtt is None:
                srtt, var = rtt, rtt / 2
            else:
                var = 0.75 * var + 0.25 * abs(srtt - rtt)
                srtt = 0.875 * srtt + 0.125 * rtt
        assert srtt is not None
        self.srtt, self.rttvar = srtt, var
        self.rto = min(self.max_s, max(self.min_s, srtt + 4 * var))

    def backoff(self, now: float) -> None:
        """A timer fired: double the timeout for packets sent from now on (RFC 6298 5.5),
        until the next clean sample. Keeps a queue that grew beyond the estimate from
        being flooded with copies of packets that are merely late. At most once per
        timeout period: under heavy loss many slots expire together, and one congestion
        signal must not push the timeout to its maximum."""
        if now - self._last_backoff >= self.rto:
            self.rto = min(self.max_s, 2 * self.rto)
            self._last_backoff = now


class Window:
    """Per-slot timers of the packets in flight; times are `time.monotonic()` seconds.

    Arrays indexed by slot; idle slots hold `idx` -1 and infinite times, so that the
    whole-window tests need no mask of active slots.
    """

    def __init__(self, num_slots: int, rto: RtoEstimator | None = None) -> None:
        self.num_slots = num_slots
        self.rto = rto or RtoEstimator()
        self.idx = np.full(num_slots, -1, dtype=np.intp)  # packet outstanding on the slot
        self.first = np.zeros(num_slots)  # its first send
        self.last = np.full(num_slots, np.inf)  # its latest (re)send
        self.deadline = np.full(num_slots, np.inf)  # when the tail timer may resend it
        self.slot_rto = np.zeros(num_slots)  # its own timeout, doubled per tail resend
        self.resent = np.zeros(num_slots, dtype=bool)
        self.rack_time = -math.inf  # newest first send that has its result...
        self.rack_rtt = 0.0  # ...and its RTT
        self.last_progress = 0.0
        self.outstanding = 0

    def start(self, now: float) -> None:
        """A call begins: every slot idle and the RACK state the call's own. A call that
        failed (timeout, abort) left packets outstanding; after a switch restart
        (`restart_at`) the next call must not resend those pre-restart rows."""
        self.idx.fill(-1)
        self.last.fill(np.inf)
        self.deadline.fill(np.inf)
        self.resent.fill(False)
        self.outstanding = 0
        self.rack_time, self.rack_rtt = -math.inf, 0.0
        self.last_progress = now

    def sent(self, slots: IntArray, idx: IntArray, now: float) -> None:
        """First sends of packets idx on slots (distinct, idle)."""
        rto = self.rto.rto
        self.idx[slots] = idx
        self.first[slots] = now
        self.last[slots] = now
        self.deadline[slots] = now + rto
        self.slot_rto[slots] = rto
        self.resent[slots] = False
        self.outstanding += len(slots)

    def acked(self, slots: IntArray, now: float) -> IntArray:
        """Results for the packets outstanding on slots (distinct, busy): frees the slots,
        samples the RTT of packets sent once and advances the RACK reference. Returns the
        packets' indexes."""
        idx = self.idx[slots].copy()
        clean = self.first[slots[~self.resent[slots]]]  # Karn: resent packets give no sample
        if clean.size:
            self.rto.sample_many((now - clean).tolist())
            newest = float(clean.max())
            if newest > self.rack_time:
                self.rack_time, self.rack_rtt = newest, now - newest
        self.idx[slots] = -1
        self.last[slots] = np.inf
        self.deadline[slots] = np.inf
        self.outstanding -= len(slots)
        self.last_progress = now
        return idx

    def reorder_margin(self) -> float:
        return max(self.rack_rtt / 4, MIN_REORDER_S)

    def due(self, now: float) -> IntArray:
        """Slots whose packet is to be resent now (ascending), recorded as resent."""
        reo = self.reorder_margin()
        last = self.last
        lost: npt.NDArray[np.bool_] | None = None
        oldest = float(last.min()) if self.outstanding else math.inf
        if oldest < self.rack_time and now >= oldest + self.rack_rtt + reo:
            lost = (last < self.rack_time) & (now >= last + self.rack_rtt + reo)
        if now - self.last_progress >= self.rto.rto and self.outstanding:
            tail = self.deadline <= now
            if tail.any():
                self.rto.backoff(now)
                self.slot_rto[tail] = np.minimum(2 * self.slot_rto[tail], self.rto.max_s)
                lost = tail if lost is None else lost | tail
        if lost is None:
            return np.zeros(0, dtype=np.intp)
        slots = np.flatnonzero(lost)
        self.resent[slots] = True
        self.deadline[slots] = now + self.slot_rto[slots]
        self.last[slots] = now
        return slots

    def next_event(self, now: float) -> float:
        """The earliest time `due` may find something: the RACK deadline of the oldest
        send, and the tail timer, which cannot fire before `last_progress + rto` (until
        then that bound stands in for the earliest slot deadline: waking early is
        harmless, and it spares a scan of the window on every wait)."""
        if not self.outstanding:
            return math.inf
        oldest = float(self.last.min())
        rack = (oldest + self.rack_rtt + self.reorder_margin() if oldest < self.rack_time
                else math.inf)
        tail = self.last_progress + self.rto.rto
        if tail <= now:
            tail = max(tail, float(self.deadline.min()))
        return min(rack, tail)

    def stuck(self) -> list[tuple[int, int]]:
        """(slot, packet index) of every outstanding packet, by slot."""
        return [(int(s), int(self.idx[s])) for s in np.flatnonzero(self.idx >= 0)]
