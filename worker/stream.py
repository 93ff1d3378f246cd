"""Windowed streaming with loss recovery (docs/DESIGN.md section 5), in Python (the
reference; `cstream` is the C one).

The streamer knows slots, rounds and packets, and nothing about quantization: a call is a
`Plan`, a list of m packets whose payload is built when the packet may leave and whose
result is handed back. Packet i of a call is the (seq + i)-th packet of this worker since
the communicator started, so it uses slot (seq + i) mod S in round (seq + i) div S mod 256,
and rounds continue across calls as the switch expects.

Packet i may leave when packet i - S (the previous user of its slot) has its result, and
when the packet `Plan.deps` names has its own (the float path's data packets wait for the
exponents of their chunks). Which packets are lost and when to look again is the
`window.Window`'s business (RACK-style detection and a tail timer).

A call that sees no new result for `timeout_s` raises `AllreduceTimeout`, and a call whose
`abort` callable returns a reason raises `AllreduceError(reason)` (it is polled at least
every `ABORT_POLL_S`). Either leaves the rounds of this worker out of step with the
switch, so the streamer then refuses further calls.

Everything per packet is done a batch at a time with numpy: the packets that may leave
are built as rows of one buffer (a row per slot, kept for resends), results are checked
and handed to the plan as arrays, and the transport moves whole batches (sendmmsg and
recvmmsg over that buffer). A batch then costs about the same for one packet as for
dozens, which is why a worker that is woken by a single result waits briefly for more
(`_gather`) rather than pay a batch for each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from p4reduce.contract import FIELD_OFFSETS
from p4reduce.worker import wire
from p4reduce.worker.errors import AllreduceError, AllreduceTimeout, CommunicatorBroken
from p4reduce.worker.job import JobSpec
from p4reduce.worker.stats import CallStats
from p4reduce.worker.transport import RowTransport, Transport
from p4reduce.worker.window import RtoEstimator, Window

__all__ = ["ABORT_POLL_S", "Abort", "MissingRanks", "Plan", "RtoEstimator", "Streamer"]

log = logging.getLogger(__name__)

MissingRanks = Callable[[int, int, int], Sequence[int] | None]
#: asked during a call; a string is the reason to fail the call on this rank now
Abort = Callable[[], str | None]
IntArray = npt.NDArray[np.intp]
#: the longest a streaming loop goes without asking its `abort` callable, seconds
ABORT_POLL_S = 0.1
#: the longest a streaming loop blocks in one receive, seconds
MAX_WAIT_S = 0.05


class Plan(Protocol):
    """A call's packets, built and consumed a batch at a time (arrays indexed like `idx`)."""

    n_packets: int
    tensor_bytes: int

    def deps(self, idx: IntArray) -> IntArray:
        """The packet each of packets idx waits for besides its slot's previous user
        (-1: none); always an earlier packet."""
        ...

    def dependents(self, done: IntArray) -> IntArray:
        """Packets that may have waited for packets `done` through `deps` (a superset is
        fine; indexes >= n_packets are ignored)."""
        ...

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
        self._win = Window(job.num_slots, self.rto)
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
        check_usable(self.broken, self.job)
        try:
            return self._run(plan)
        except BaseException as exc:  # any interruption mid-stream desynchronizes the rounds
            self.broken = str(exc) or type(exc).__name__
            raise

    def _run(self, plan: Plan) -> CallStats:
        S, m = self.job.num_slots, plan.n_packets
        t0 = time.monotonic()
        aborting = AbortPoll(self.abort, t0)
        if m == 0:
            return CallStats(0, 0, 0, 0.0, plan.tensor_bytes)
        base = self.seq
        self.high = max(self.high, base + m)
        io = self._io
        length = self._length
        slot_buf = self._slot_buf  # payload of the packet outstanding on each slot
        rec = self._slot_rec
        win = self._win
        win.start(t0)
        done = np.zeros(m, dtype=bool)
        sent = np.zeros(m, dtype=bool)
        # What the result of each slot's outstanding packet must hold in its first 12
        # bytes, the worker id, the exponent and flags other than RESULT and EXP_ONLY
        # masked out: job, slot, round and offset are then checked by two comparisons per
        # batch. Index S (slot numbers >= S) and idle slots hold a key no result can match.
        key8 = np.full(S + 1, _NO_KEY8, dtype=np.uint64)
        key4 = np.zeros(S + 1, dtype=np.uint32)
        slot_keys = slot_buf.view(self._keys)[:, 0]
        n_sent = n_retx = n_dup = n_done = 0

        def ready(c: IntArray) -> npt.NDArray[np.bool_]:
            """Of candidates c (not yet sent): those whose slot and dependency are done."""
            prev = c - S
            ok = (prev < 0) | done[np.maximum(prev, 0)]
            dep = plan.deps(c)
            return ok & ((dep < 0) | done[np.maximum(dep, 0)])

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
            sent[idx] = True
            win.sent(slots, idx, now)
            sent_keys = slot_keys[slots]
            key8[slots] = (sent_keys["h8"] & _MASK8) | _RESULT8
            key4[slots] = sent_keys["h4"] & _MASK4
            return slots

        first = np.arange(min(m, S), dtype=np.intp)
        first = first[ready(first)]
        if first.size:
            io.send_rows(slot_buf, build(first, time.monotonic()), length)
            n_sent += first.size
        gather = max(1, min(int(S * self.gather_window_share), self.gather_max))
        paced = False

        while n_done < m:
            now = time.monotonic()
            aborting.poll(now)
            wait = min(win.next_event(now), win.last_progress + self.timeout_s,
                       aborting.next_poll) - now
            wait = min(wait, MAX_WAIT_S)
            if paced and win.outstanding >= 2 * gather and self.rto.srtt is not None:
                # the last batch was small and plenty is in flight: let results queue up
                # before looking, rather than be woken by the next one alone
                time.sleep(max(0.0, min(self._pause(), wait)))
                wait = 0.0
            rows = io.recv_rows(max(wait, 0.0), length)
            paced = len(rows) < gather
            if 0 < len(rows) < gather and win.outstanding - len(rows) >= gather:
                rows = self._gather(rows, length)
            if len(rows):
                got = rows.view(self._dtype)[:, 0]
                keys = rows.view(self._keys)[:, 0]
                slot = np.minimum(got["slot"], S)
                good = ((keys["h8"] & _MASK8) == key8[slot]) & ((keys["h4"] & _MASK4) == key4[slot])
                sel = np.flatnonzero(good)
                if sel.size < len(rows):  # stale or duplicated results, or a wrong call
                    self._check_mismatch(plan, got[~good], win.idx, base)
                if sel.size > 1 and np.bincount(slot[sel], minlength=S + 1).max() > 1:
                    # a duplicated result within the batch: only its first copy counts
                    _, first_of = np.unique(slot[sel], return_index=True)
                    sel = np.sort(sel[first_of])
                n_dup += len(rows) - sel.size
            else:
                sel = _NO_ROWS
            if sel.size:
                slots = slot[sel].astype(np.intp)
                key8[slots] = _NO_KEY8
                js = win.acked(slots, time.monotonic())
                done[js] = True
                if sel.size == len(rows):  # all of them (the usual case): no gather
                    plan.on_result(js, got["exp"], got["values"])
                else:
                    plan.on_result(js, got["exp"][sel], got["values"][sel])
                n_done += sel.size
                # successors only after the whole batch: their inputs (exponents) then
                # arrive together and are quantized in one run
                cand = np.concatenate([js + S, plan.dependents(js)])
                cand = np.unique(cand[cand < m])
                cand = cand[~sent[cand]]
                cand = cand[ready(cand)]
                if cand.size:  # sent now: the timers below may flag the row for a resend
                    io.send_rows(slot_buf, build(cand, time.monotonic()), length)
                    n_sent += cand.size
            now = time.monotonic()
            expired = win.due(now)
            if expired.size:
                rec["flags"][expired] |= wire.FLAG_RETRANSMIT
                n_retx += expired.size
                n_sent += expired.size
                io.send_rows(slot_buf, expired, length)
            if n_done < m and now - win.last_progress > self.timeout_s:
                raise self._timeout(win.stuck(), base, now - win.last_progress)
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
                raise mismatch_error(job, int(slot[r]), int(got["round"][r]), offset,
                                     bool(flags & wire.FLAG_EXP_ONLY), want_offset,
                                     bool(want_exp_only))

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

    def _timeout(self, stuck: list[tuple[int, int]], base: int, waited: float) -> AllreduceTimeout:
        S = self.job.num_slots
        pairs = [(slot, ((base + j) // S) % 256) for slot, j in stuck]
        return timeout_error(self.job, pairs, waited, self.missing_ranks)


def check_usable(broken: str | None, job: JobSpec) -> None:
    """Refuse a call after a failure that left this worker's rounds out of step."""
    if broken is not None:
        raise CommunicatorBroken(
            f"job {job.job_id} rank {job.rank}: communicator unusable after an "
            f"earlier failure ({broken}); create a new job"
        )


class AbortPoll:
    """Asks the caller's `abort` callable at most every ABORT_POLL_S, and raises
    AllreduceError with its reason once it gives one."""

    def __init__(self, abort: Abort | None, now: float) -> None:
        self.abort = abort
        self.next_poll = now if abort is not None else float("inf")

    def poll(self, now: float) -> None:
        if now < self.next_poll or self.abort is None:
            return
        self.next_poll = now + ABORT_POLL_S
        reason = self.abort()
        if reason is not None:
            raise AllreduceError(reason)


def mismatch_error(job: JobSpec, slot: int, rnd: int, offset: int, exp_only: bool,
                   want_offset: int, want_exp_only: bool) -> AllreduceError:
    """A result for this rank's outstanding packet (job, slot and round agree) that carries
    another offset or kind: the ranks stream different calls."""
    return AllreduceError(
        f"allreduce of job {job.job_id}: rank {job.rank} got a result for slot {slot} round "
        f"{rnd} at offset {offset} (exponent round: {exp_only}) while it sent offset "
        f"{want_offset} (exponent round: {want_exp_only}); the ranks are not reducing "
        "tensors of the same size and kind"
    )


def timeout_error(job: JobSpec, stuck: list[tuple[int, int]], waited: float,
                  missing_ranks: MissingRanks | None) -> AllreduceTimeout:
    """The timeout of a call whose (slot, round) pairs `stuck` are still waiting, naming
    the missing ranks when `missing_ranks` can tell."""
    missing: list[int] | None = None
    if missing_ranks is not None:
        found: set[int] = set()
        try:
            for slot, rnd in stuck[:8]:
                ranks = missing_ranks(job.job_id, slot, rnd)
                if ranks is None:
                    raise LookupError
                found.update(ranks)
            missing = sorted(found)
        except Exception as exc:  # a failing probe must not hide the timeout itself
            log.debug("missing-ranks probe failed: %r", exc)
            missing = None
    return AllreduceTimeout(job.job_id, stuck, waited, missing)


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
