"""Windowed streaming with loss recovery (docs/DESIGN.md section 5).

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
calls. `abort`, when given, is asked at least every ABORT_POLL_S seconds during a call
(and before it starts): a reason it returns (a peer died, the switch restarted) ends the
call at once with `AllreduceError(reason)`, and likewise leaves the streamer unusable.

Everything per packet is done a batch at a time with numpy: the packets that may leave
are built as rows of one buffer (a row per slot, kept for resends), results are checked
and handed to the plan as arrays, and the transport moves whole batches (sendmmsg and
recvmmsg over that buffer). A batch then costs about the same for one packet as for
dozens, which is why a worker that is woken by a single result waits briefly for more
(`_gather`) rather than pay a batch for each.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from p4reduce.contract import FIELD_OFFSETS
from p4reduce.worker import wire
from p4reduce.worker.errors import AllreduceError, AllreduceTimeout, CommunicatorBroken
from p4reduce.worker.job import JobSpec
from p4reduce.worker.stats import CallStats
from p4reduce.worker.transport import RowTransport, Transport

log = logging.getLogger(__name__)

MissingRanks = Callable[[int, int, int], Sequence[int] | None]
Abort = Callable[[], str | None]
#: how often a running call asks its `abort` callable (seconds)
ABORT_POLL_S = 0.1
IntArray = npt.NDArray[np.intp]


class Plan(Protocol):
    """A call's packets, built and consumed a batch at a time (arrays indexed like `idx`)."""

    n_packets: int
    dep_offsets: tuple[int, ...]
    tensor_bytes: int

    def build(self, idx: IntArray) -> tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike,
                                            npt.ArrayLike]:
        """(flags, offsets, exps, (n, K) values) of packets idx, given in ascending order;
        scalars stand for the same value in every packet."""
        ...

    def expect(self, idx: IntArray) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]:
        """(EXP_ONLY bits, offsets) results of packets idx must carry: a cheap check that
        all ranks stream the same sequence (same tensor sizes and dtypes classes). The
        streamer checks the sent header bytes instead and asks this only to word the
        error about a result that does not match."""
        ...

    def on_result(self, idx: IntArray, exps: npt.NDArray[np.int8],
                  values: npt.NDArray[np.int32]) -> None:
        """Results of packets idx (distinct); `values` is (n, K) big-endian int32, a view
        valid only during the call."""
        ...


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


class Streamer:
    # gathering of results (see `_gather`): when fewer than min(gather_window_share * S,
    # gather_max) came and at least as many more are in flight, wait gather_rtt_share of
    # the smoothed RTT, at most gather_max_pause seconds
    gather_window_share = 0.25
    gather_max = 16
    gather_rtt_share = 0.125
    gather_max_pause = 1e-3

    def __init__(
        self,
        job: JobSpec,
        transport: Transport,
        *,
        timeout_s: float = 30.0,
        rto: RtoEstimator | None = None,
        missing_ranks: MissingRanks | None = None,
        abort: Abort | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.job = job
        self.transport = transport
        self.timeout_s = timeout_s
        self.rto = rto or RtoEstimator()
        self.missing_ranks = missing_ranks
        self.abort = abort
        self.seq = 0
        # one past the highest packet index any call so far may have sent (a failed call
        # may have used indices beyond `seq`): where a resynchronisation must start past
        self.high = 0
        self.broken: str | None = None
        self._length = wire.agg_payload_len(job.k)
        self._dtype = wire.agg_dtype(job.k)
        self._io: RowTransport = (transport if isinstance(transport, RowTransport)
                                  else _ListTransport(transport))
        # one row per slot: the packet outstanding on it, kept for retransmission and sent
        # from in place; job and worker fields never change
        self._slot_buf = np.zeros((job.num_slots, self._length), dtype=np.uint8)
        self._slot_rec = self._slot_buf.view(self._dtype)[:, 0]
        self._slot_rec["job_id"] = job.job_id
        self._slot_rec["worker_id"] = job.rank
        self._slot_rec["slot"] = np.arange(job.num_slots)
        self._keys = np.dtype({"names": ["h8", "h4"], "formats": [np.uint64, np.uint32],
                               "offsets": [0, 8], "itemsize": self._length})

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
        S, m = self.job.num_slots, plan.n_packets
        t0 = time.monotonic()
        abort = self.abort
        next_abort = t0
        if abort is not None and (why := abort()):
            raise AllreduceError(why)
        if m == 0:
            return CallStats(0, 0, 0, 0.0, plan.tensor_bytes)
        base = self.seq
        self.high = max(self.high, base + m)
        io = self._io
        length = self._length
        slot_buf = self._slot_buf  # payload of the packet outstanding on each slot
        rec = self._slot_rec
        offsets = np.array(sorted({S, *plan.dep_offsets}), dtype=np.intp)
        single = S if offsets.size == 1 else 0  # the usual case: a packet waits for its slot only
        done = np.zeros(m, dtype=bool)
        sent = np.zeros(m, dtype=bool)
        first_send = np.zeros(m)
        resent = np.zeros(m, dtype=bool)
        out_idx = np.full(S, -1, dtype=np.intp)
        deadline = np.full(S, np.inf)  # inf on idle slots, so no mask of active ones is needed
        slot_rto = np.zeros(S)
        last_send = np.full(S, np.inf)  # latest (re)send per outstanding slot
        rack_time, rack_rtt = -np.inf, 0.0  # newest first send with a result, and its RTT
        # What the result of each slot's outstanding packet must hold in its first 12
        # bytes, the worker id, the exponent and flags other than RESULT and EXP_ONLY
        # masked out: job, slot, round and offset are then checked by two comparisons per
        # batch. Index S (slot numbers >= S) and idle slots hold a key no result can match.
        key8 = np.full(S + 1, _NO_KEY8, dtype=np.uint64)
        key4 = np.zeros(S + 1, dtype=np.uint32)
        slot_keys = slot_buf.view(self._keys)[:, 0]
        n_sent = n_retx = n_dup = n_done = 0
        last_progress = t0

        def ready(c: IntArray) -> npt.NDArray[np.bool_]:
            ok = np.ones(c.size, dtype=bool)
            for d in offsets.tolist():
                prev = c - d
                ok &= (prev < 0) | done[np.maximum(prev, 0)]
            return ok

        def build(idx: IntArray, now: float) -> IntArray:
            """Write packets idx (distinct slots) into their slots' rows; returns the slots."""
            g = base + idx
            slots = g % S
            flags, offs, exps, values = plan.build(idx)
            rec["flags"][slots] = flags
            rec["round"][slots] = (g // S) % 256
            rec["offset"][slots] = offs
            rec["exp"][slots] = exps
            rec["values"][slots] = values
            if not single:  # with one dependency a successor is never offered twice
                sent[idx] = True
            first_send[idx] = now
            out_idx[slots] = idx
            slot_rto[slots] = self.rto.rto
            deadline[slots] = now + self.rto.rto
            last_send[slots] = now
            sent_keys = slot_keys[slots]
            key8[slots] = (sent_keys["h8"] & _MASK8) | _RESULT8
            key4[slots] = sent_keys["h4"] & _MASK4
            return slots

        now = time.monotonic()
        first = np.arange(min(m, S), dtype=np.intp)
        first = first[ready(first)]
        if first.size:
            io.send_rows(slot_buf, build(first, now), length)
            n_sent += first.size
        n_first = n_sent  # first sends so far: n_first - n_done packets are outstanding
        gather = max(1, min(int(S * self.gather_window_share), self.gather_max))
        paced = False

        while n_done < m:
            now = time.monotonic()
            if abort is not None and now >= next_abort:
                next_abort = now + ABORT_POLL_S
                if why := abort():
                    raise AllreduceError(why)
            reo = max(rack_rtt / 4, 0.001)
            # the oldest send is behind the newest acknowledged one, or no send is
            oldest = float(last_send.min())
            next_rack = oldest + rack_rtt + reo if oldest < rack_time else np.inf
            next_tail = max(float(deadline.min()), last_progress + self.rto.rto)
            wait = min(next_rack - now, next_tail - now, last_progress + self.timeout_s - now, 0.05)
            if paced and n_first - n_done >= 2 * gather and self.rto.srtt is not None:
                # the last batch was small and plenty is in flight: let results queue up
                # before looking, rather than be woken by the next one alone
                time.sleep(max(0.0, min(self._pause(), wait)))
                wait = 0.0
            rows = io.recv_rows(max(wait, 0.0), length)
            paced = len(rows) < gather
            if 0 < len(rows) < gather and n_first - n_done - len(rows) >= gather:
                rows = self._gather(rows, length)
            if len(rows):
                got = rows.view(self._dtype)[:, 0]
                keys = rows.view(self._keys)[:, 0]
                slot = np.minimum(got["slot"], S)
                good = ((keys["h8"] & _MASK8) == key8[slot]) & ((keys["h4"] & _MASK4) == key4[slot])
                sel = np.flatnonzero(good)
                if sel.size < len(rows):  # stale or duplicated results, or a wrong call
                    self._check_mismatch(plan, got[~good], out_idx, base)
                if sel.size > 1 and np.bincount(slot[sel], minlength=S + 1).max() > 1:
                    # a duplicated result within the batch: only its first copy counts
                    _, first_of = np.unique(slot[sel], return_index=True)
                    sel = np.sort(sel[first_of])
                n_dup += len(rows) - sel.size
            else:
                sel = _NO_ROWS
            if sel.size:
                slots = slot[sel].astype(np.intp)
                js = out_idx[slots]
                now = time.monotonic()
                done[js] = True
                out_idx[slots] = -1
                key8[slots] = _NO_KEY8
                deadline[slots] = np.inf
                last_send[slots] = np.inf
                clean = first_send[js[~resent[js]]]  # Karn: resent packets give no sample
                if clean.size:
                    self.rto.sample_many((now - clean).tolist())
                    newest = float(clean.max())
                    if newest > rack_time:
                        rack_time, rack_rtt = newest, now - newest
                if sel.size == len(rows):  # all of them (the usual case): no gather
                    plan.on_result(js, got["exp"], got["values"])
                else:
                    plan.on_result(js, got["exp"][sel], got["values"][sel])
                n_done += sel.size
                last_progress = now
                # successors only after the whole batch: their inputs (exponents) then
                # arrive together and are quantized in one run
                if single:  # successor j + S, whose only dependency j just completed
                    cand = np.sort(js + single)
                    cand = cand[: np.searchsorted(cand, m)]
                else:
                    cand = (js[:, None] + offsets[None, :]).ravel()
                    cand = cand[cand < m]
                    cand = np.unique(cand[~sent[cand]])
                    cand = cand[ready(cand)]
                if cand.size:  # sent now: the timers below may flag the row for a resend
                    io.send_rows(slot_buf, build(cand, now), length)
                    n_sent += cand.size
                    n_first += cand.size
            now = time.monotonic()
            # RACK-style loss detection: a packet is lost when one sent after it has its
            # result and it is late by more than that packet's RTT plus a reordering margin
            # (both tests on the oldest send first: most batches have nothing to resend)
            oldest = float(last_send.min())
            lost: npt.NDArray[np.bool_] | None = None
            if oldest < rack_time and now >= oldest + rack_rtt + reo:
                lost = (last_send < rack_time) & (now >= last_send + rack_rtt + reo)
            # tail timer: only when no result at all came for a timeout, so that a queue
            # building up at the switch is not mistaken for loss
            if now - last_progress >= self.rto.rto and float(deadline.min()) <= now:
                tail = deadline <= now
                self.rto.backoff(now)
                slot_rto[tail] = np.minimum(2 * slot_rto[tail], self.rto.max_s)
                lost = tail if lost is None else lost | tail
            if lost is not None:
                expired = np.flatnonzero(lost)
                rec["flags"][expired] |= wire.FLAG_RETRANSMIT
                resent[out_idx[expired]] = True
                n_retx += expired.size
                n_sent += expired.size
                deadline[expired] = now + slot_rto[expired]
                last_send[expired] = now
                io.send_rows(slot_buf, expired, length)
            if n_done < m and now - last_progress > self.timeout_s:
                raise self._timeout(out_idx, base, now - last_progress)
        self.seq = base + m
        return CallStats(n_sent, n_retx, n_dup, time.monotonic() - t0, plan.tensor_bytes)

    def _check_mismatch(self, plan: Plan, got: npt.NDArray[np.void], out_idx: IntArray,
                        base: int) -> None:
        """Results that failed the key check: stale or duplicated ones are counted by the
        caller; one for an outstanding packet (right job, slot and round) at another
        offset or kind means the ranks stream different calls, which is an error."""
        job, S = self.job, self.job.num_slots
        slot = got["slot"].astype(np.intp)
        live = ((got["flags"] & wire.FLAG_RESULT) != 0) & (got["job_id"] == job.job_id) & (slot < S)
        j = out_idx[np.where(live, slot, 0)]
        live &= (j >= 0) & (((base + j) // S) % 256 == got["round"])
        for r in np.flatnonzero(live).tolist():
            want_exp_only, want_offset = (int(v[0]) for v in plan.expect(j[r : r + 1]))
            flags, offset = int(got["flags"][r]), int(got["offset"][r])
            if (flags & wire.FLAG_EXP_ONLY) != want_exp_only or offset != want_offset:
                raise AllreduceError(
                    f"allreduce of job {job.job_id}: rank {job.rank} got a result for slot "
                    f"{int(slot[r])} round {int(got['round'][r])} at offset {offset} (exponent "
                    f"round: {bool(flags & wire.FLAG_EXP_ONLY)}) while it sent offset "
                    f"{want_offset} (exponent round: {bool(want_exp_only)}); the ranks are "
                    "not reducing tensors of the same size and kind"
                )

    def _pause(self) -> float:
        srtt = self.rto.srtt or 0.0
        return min(max(srtt * self.gather_rtt_share, 1e-4), self.gather_max_pause)

    def _gather(self, rows: npt.NDArray[np.uint8], length: int) -> npt.NDArray[np.uint8]:
        """Wait a little for more results when only a few came and many are outstanding.

        Processing a batch costs about the same for one result as for dozens, so a
        worker woken for every result of a switch that answers one at a time spends its
        CPU on wake-ups, and on a shared host takes it from the switch. The wait is
        `gather_rtt_share` of the smoothed RTT (0.1 ms to `gather_max_pause`), and the
        caller asks only while many packets stay in flight, so the switch is not left
        idle by it.
        """
        if self.rto.srtt is None:
            return rows
        first = np.array(rows)  # the transport's rows are overwritten by its next receive
        time.sleep(self._pause())
        more = self._io.recv_rows(0.0, length)
        return np.concatenate([first, more]) if len(more) else first

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


def _key_bytes(raw: bytes) -> int:
    """A native-endian integer whose bytes in memory are `raw` (masks over header bytes)."""
    return int(np.frombuffer(raw, dtype=np.uint64 if len(raw) == 8 else np.uint32)[0])


def _header_bytes(**fields: int) -> bytes:
    """The agg header with the given fields set, as bytes (a mask or a pattern)."""
    out = bytearray(wire.AGG_HEADER_LEN)
    sizes = dict(wire.AGG_FIELDS)
    for name, value in fields.items():
        at, width = FIELD_OFFSETS[name], sizes[name] // 8
        out[at:at + width] = value.to_bytes(width, "big")
    return bytes(out)


# A result matches the packet sent for its slot when these header bits agree: the RESULT
# and EXP_ONLY flags, job, slot, round and offset (not the worker id, not the exponent).
# Compared as one 8-byte and one 4-byte word per row.
_MATCH = _header_bytes(flags=wire.FLAG_RESULT | wire.FLAG_EXP_ONLY, job_id=0xFFFF,
                       slot=0xFFFF, round=0xFF, offset=0xFFFF_FFFF)
_MASK8 = np.uint64(_key_bytes(_MATCH[:8]))
_RESULT8 = np.uint64(_key_bytes(_header_bytes(flags=wire.FLAG_RESULT)[:8]))
_MASK4 = np.uint32(_key_bytes(_MATCH[8:]))
_NO_KEY8 = np.uint64(_key_bytes(_header_bytes(worker_id=1)[:8]))  # outside the mask
assert len(_MATCH) == 12 and not _NO_KEY8 & _MASK8
_NO_ROWS = np.zeros(0, dtype=np.intp)


class _ListTransport:
    """Rows on top of a transport that moves lists of bytes (test doubles, in-memory
    switches): one bytes object per packet, as such a transport needs anyway."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def send_rows(self, buf: npt.NDArray[np.uint8], rows: IntArray, length: int) -> None:
        self.inner.send([buf[r, :length].tobytes() for r in rows.tolist()])

    def recv_rows(self, timeout: float, length: int) -> npt.NDArray[np.uint8]:
        got = [p[:length] for p in self.inner.recv(timeout) if len(p) >= length]
        return np.frombuffer(b"".join(got), dtype=np.uint8).reshape(len(got), length)
