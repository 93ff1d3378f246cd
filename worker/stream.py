"""Windowed streaming with loss recovery (DESIGN.md section 5).

The streamer knows slots, rounds and timers, and nothing about quantization: a call is a
`Plan`, a list of m packets whose payload is built when the packet may leave and whose
result is handed back. Packet i of a call is the (seq + i)-th packet of this worker since
the communicator started, so it uses slot (seq + i) mod S in round (seq + i) div S mod 256,
and rounds continue across calls as the switch expects.

Packet i may leave when packet i - S (the previous user of its slot) has its result, and
when the packets named by `Plan.dep_offsets` have theirs (the float path also waits for
the exponent of its chunk). Loss is detected two ways. RACK-style: a packet is resent when
a packet this worker sent after it already has its result and it is later than that
packet's RTT plus a reordering margin (the switch serves packets roughly in order, so
this catches losses while the window keeps moving). Tail timer: when no result at all
came for a timeout (Jacobson/Karels estimate, Karn's rule: only first sends are sampled;
doubled per resend of the same packet and, once per period, for new packets), the
outstanding packets past their deadline are resent. The timer waits for silence because a
queue building up at a slow switch would otherwise look like loss and be flooded.

A call that sees no new result for `timeout_s` raises `AllreduceTimeout`; this leaves the
rounds of this worker out of step with the switch, so the streamer then refuses further
calls.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from worker import wire
from worker.errors import AllreduceError, AllreduceTimeout, CommunicatorBroken
from worker.job import JobSpec
from worker.stats import CallStats
from worker.transport import Transport

log = logging.getLogger(__name__)

MissingRanks = Callable[[int, int, int], Sequence[int] | None]


class Plan(Protocol):
    n_packets: int
    dep_offsets: tuple[int, ...]
    tensor_bytes: int

    def build(self, i: int) -> tuple[int, int, int, bytes]:
        """(flags, offset, exp, big-endian int32 values) of packet i."""
        ...

    def expect(self, i: int) -> tuple[int, int]:
        """(EXP_ONLY bit, offset) a result of packet i must carry: a cheap check that
        all ranks stream the same sequence (same tensor sizes and dtypes classes)."""
        ...

    def on_result(self, i: int, exp: int, payload: bytes) -> None: ...


@dataclass
class RtoEstimator:
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
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(self.max_s, max(self.min_s, self.srtt + 4 * self.rttvar))

    def backoff(self, now: float) -> None:
        """A timer fired: double the timeout for packets sent from now on (RFC 6298 5.5),
        until the next clean sample. Keeps a queue that grew beyond the estimate from
        being flooded with copies of packets that are merely late. At most once per
        timeout period: under heavy loss many slots expire together, and one congestion
        signal must not push the timeout to its maximum."""
        if now - self._last_backoff >= self.rto:
            self.rto = min(self.max_s, 2 * self.rto)
            self._last_backoff = now


_HDR = wire.AggHeader


class Streamer:
    def __init__(
        self,
        job: JobSpec,
        transport: Transport,
        *,
        timeout_s: float = 30.0,
        rto: RtoEstimator | None = None,
        missing_ranks: MissingRanks | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.job = job
        self.transport = transport
        self.timeout_s = timeout_s
        self.rto = rto or RtoEstimator()
        self.missing_ranks = missing_ranks
        self.seq = 0
        self.broken: str | None = None

    def run(self, plan: Plan) -> CallStats:
        if self.broken is not None:
            raise CommunicatorBroken(
                f"job {self.job.job_id} rank {self.job.rank}: communicator unusable after an "
                f"earlier failure ({self.broken}); create a new job"
            )
        try:
            return self._run(plan)
        except BaseException as exc:  # any interruption mid-stream desynchronizes the rounds
            self.broken = str(exc) or type(exc).__name__
            raise

    def _run(self, plan: Plan) -> CallStats:
        job, S, m = self.job, self.job.num_slots, plan.n_packets
        t0 = time.monotonic()
        if m == 0:
            return CallStats(0, 0, 0, 0.0, plan.tensor_bytes)
        base = self.seq
        offsets = tuple(sorted({S, *plan.dep_offsets}))
        done = np.zeros(m, dtype=bool)
        sent = np.zeros(m, dtype=bool)
        first_send = np.zeros(m)
        resends = np.zeros(m, dtype=np.int64)
        out_idx = np.full(S, -1, dtype=np.int64)
        deadline = np.full(S, np.inf)
        slot_rto = np.zeros(S)
        slot_payload: list[bytes] = [b""] * S
        last_send = np.full(S, np.inf)  # latest (re)send per outstanding slot
        rack_time, rack_rtt = -np.inf, 0.0  # newest first send with a result, and its RTT
        n_sent = n_retx = n_dup = n_done = 0
        last_progress = t0
        batch: list[bytes] = []
        completed: list[int] = []

        def ready(i: int) -> bool:
            return all(i - d < 0 or done[i - d] for d in offsets)

        def send(i: int, now: float) -> None:
            nonlocal n_sent
            g = base + i
            slot, rnd = g % S, (g // S) % 256
            flags, offset, exp, values = plan.build(i)
            payload = _HDR(flags, job.job_id, job.rank, slot, rnd, offset, exp).pack() + values
            sent[i] = True
            first_send[i] = now
            out_idx[slot] = i
            slot_payload[slot] = payload
            slot_rto[slot] = self.rto.rto
            deadline[slot] = now + self.rto.rto
            last_send[slot] = now
            batch.append(payload)
            n_sent += 1

        now = time.monotonic()
        for i in range(min(m, S)):
            if ready(i):
                send(i, now)
        self.transport.send(batch)
        batch.clear()

        while n_done < m:
            now = time.monotonic()
            active = out_idx >= 0
            reo = max(rack_rtt / 4, 0.001)
            behind = active & (last_send < rack_time)
            next_rack = float(last_send[behind].min()) + rack_rtt + reo if behind.any() else np.inf
            next_tail = max(float(deadline.min()), last_progress + self.rto.rto)
            wait = min(next_rack - now, next_tail - now, last_progress + self.timeout_s - now, 0.05)
            for payload in self.transport.recv(max(wait, 0.0)):
                flags, job_id, _w, slot, rnd, offset, exp = _fields(payload)
                if not flags & wire.FLAG_RESULT or job_id != job.job_id or slot >= S:
                    n_dup += 1
                    continue
                j = int(out_idx[slot])
                if j < 0 or ((base + j) // S) % 256 != rnd:
                    n_dup += 1
                    continue
                want_exp_only, want_offset = plan.expect(j)
                if (flags & wire.FLAG_EXP_ONLY) != want_exp_only or offset != want_offset:
                    raise AllreduceError(
                        f"allreduce of job {job.job_id}: rank {job.rank} got a result for slot "
                        f"{slot} round {rnd} at offset {offset} (exponent round: "
                        f"{bool(flags & wire.FLAG_EXP_ONLY)}) while it sent offset {want_offset} "
                        f"(exponent round: {bool(want_exp_only)}); the ranks are not reducing "
                        "tensors of the same size and kind"
                    )
                now = time.monotonic()
                done[j] = True
                out_idx[slot] = -1
                deadline[slot] = np.inf
                last_send[slot] = np.inf
                if resends[j] == 0:
                    self.rto.sample(now - first_send[j])
                    if first_send[j] > rack_time:
                        rack_time, rack_rtt = float(first_send[j]), now - float(first_send[j])
                plan.on_result(j, exp, payload)
                n_done += 1
                last_progress = now
                completed.append(j)
            # successors only after the whole batch: their inputs (exponents) then arrive
            # together and are quantized in one run
            for j in completed:
                for d in offsets:
                    c = j + d
                    if c < m and not sent[c] and ready(c):
                        send(c, now)
            completed.clear()
            now = time.monotonic()
            active = out_idx >= 0
            # RACK-style loss detection: a packet is lost when one sent after it has its
            # result and it is late by more than that packet's RTT plus a reordering margin
            lost = active & (last_send < rack_time) & (now >= last_send + rack_rtt + reo)
            # tail timer: only when no result at all came for a timeout, so that a queue
            # building up at the switch is not mistaken for loss
            stalled = now - last_progress >= self.rto.rto
            tail = active & (deadline <= now) if stalled else np.zeros(S, dtype=bool)
            if tail.any():
                self.rto.backoff(now)
            for expired in np.flatnonzero(lost | tail):
                slot = int(expired)
                j = int(out_idx[slot])
                payload = slot_payload[slot]
                batch.append(bytes([payload[0] | wire.FLAG_RETRANSMIT]) + payload[1:])
                resends[j] += 1
                n_retx += 1
                n_sent += 1
                if tail[slot]:
                    slot_rto[slot] = min(2 * slot_rto[slot], self.rto.max_s)
                deadline[slot] = now + slot_rto[slot]
                last_send[slot] = now
            if batch:
                self.transport.send(batch)
                batch.clear()
            if n_done < m and now - last_progress > self.timeout_s:
                raise self._timeout(out_idx, base, now - last_progress)
        self.seq = base + m
        return CallStats(n_sent, n_retx, n_dup, time.monotonic() - t0, plan.tensor_bytes)

    def _timeout(self, out_idx: np.ndarray, base: int, waited: float) -> AllreduceTimeout:
        S = self.job.num_slots
        stuck = [(s, ((base + int(j)) // S) % 256) for s, j in enumerate(out_idx) if j >= 0]
        missing: list[int] | None = None
        if self.missing_ranks is not None:
            found: set[int] = set()
            try:
                for slot, rnd in stuck[:8]:
                    ranks = self.missing_ranks(self.job.job_id, slot, rnd)
                    if ranks is None:
                        raise LookupError
                    found.update(ranks)
                missing = sorted(found)
            except Exception as exc:  # a failing probe must not hide the timeout itself
                log.debug("missing-ranks probe failed: %r", exc)
                missing = None
        return AllreduceTimeout(self.job.job_id, stuck, waited, missing)


# A tuple unpack is cheaper than building an AggHeader per result.
_FIELDS = wire.HEADER_STRUCT


def _fields(payload: bytes) -> tuple[int, int, int, int, int, int, int]:
    return _FIELDS.unpack_from(payload)
