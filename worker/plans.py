"""The packets of one call, in Python: what the reference streamer sends and how it reads
the results (`worker/cstream.c` implements the same protocol in C).

Integers (int32) go as they are, one packet per chunk of K values, and come back as the
switch's wrapping int32 sum. Floats go through block floating point (`quant`): a first
window of exponent-only packets proposes the exponents of chunks 0..S-1, and the data
packet of chunk c carries the proposal for chunk c+S, so the agreed exponent of every
later chunk is back before its data may leave.

Every call starts with a descriptor (see `descriptor`) so that ranks disagreeing on the
tensor size fail instead of mixing chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from p4reduce.worker import quant, wire
from p4reduce.worker.errors import AllreduceError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.stats import CallStats
from p4reduce.worker.stream import Abort, MissingRanks, RtoEstimator, Streamer
from p4reduce.worker.transport import Transport

IntArray = npt.NDArray[np.intp]
Built = tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]
#: descriptor kinds: what the ranks reduce, besides how many elements
KIND_INT, KIND_FLOAT = 1, 2


def descriptor(n: int, kind: int, k: int) -> npt.NDArray[np.int32]:
    """Lanes of a call's first packet: (n, n*n + kind) mod 2^31, zeros after.

    The switch sums them; the sums equal W times each rank's own lanes only when every
    rank reduces the same number of elements of the same kind (two moments: equal sums of
    n and of n^2 force equal n). A rank whose peers stream a different call learns it from
    its first packet's result instead of returning a silently mixed sum.
    """
    lanes = np.zeros(k, dtype=np.int32)
    lanes[0] = n & 0x7FFFFFFF
    if k > 1:
        lanes[1] = (n * n + kind) & 0x7FFFFFFF
    return lanes


def descriptor_error(n: int, world: int, got0: int) -> AllreduceError:
    return AllreduceError(
        f"allreduce: the ranks are not reducing tensors of the same size and kind "
        f"(this rank has {n} elements; the switch's sum of the ranks' sizes is {got0}, "
        f"not {world} x {n})"
    )


class _Plan:
    """Common part: packet 0 .. n_head-1 are EXP_ONLY, packet 0 carries the descriptor.

    The streamer asks for packets and hands results back a batch at a time, as index
    arrays: every method is a handful of numpy operations whatever the batch size."""

    kind = 0

    def __init__(self, n_elems: int, n_chunks: int, n_head: int, k: int, world: int) -> None:
        self.k, self.n, self.n_head, self.world = k, n_chunks, n_head, world
        self.n_elems = n_elems
        self.n_packets = n_head + n_chunks if n_chunks else 0
        self.tensor_bytes = 0
        self.desc = descriptor(n_elems, self.kind, k)

    def head_values(self, idx: IntArray) -> npt.NDArray[np.int32]:
        """Lanes of head packets idx: the descriptor in packet 0, zeros elsewhere."""
        values = np.zeros((idx.size, self.k), dtype=np.int32)
        values[idx == 0] = self.desc
        return values

    def expect(self, idx: IntArray) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]:
        head = idx < self.n_head
        exp_only = np.where(head, wire.FLAG_EXP_ONLY, 0)
        return exp_only, np.where(head, idx, idx - self.n_head) * self.k

    def check_head(self, idx: IntArray, values: npt.NDArray[np.int32]) -> None:
        at = np.flatnonzero(idx == 0)
        if not at.size:
            return
        got = values[int(at[0]), : min(self.k, 2)].astype(np.int64)
        want = (self.desc[: got.size].astype(np.int64) * self.world + 2**31) % 2**32 - 2**31
        if not np.array_equal(got, want):
            raise descriptor_error(self.n_elems, self.world, int(got[0]))


class IntPlan(_Plan):
    kind = KIND_INT

    def __init__(self, flat: npt.NDArray[np.int32], k: int, world: int) -> None:
        rows = quant.to_blocks(flat, k)
        # a copy, as the caller's array may be written while the call streams
        self.rows = rows.copy() if np.may_share_memory(rows, flat) else rows
        super().__init__(flat.size, self.rows.shape[0], 1, k, world)
        self.result = np.empty_like(self.rows)

    def deps(self, idx: IntArray) -> IntArray:
        return np.full(idx.size, -1, dtype=np.intp)

    def dependents(self, done: IntArray) -> IntArray:
        return done[:0]

    def build(self, idx: IntArray) -> Built:
        chunk = idx - 1
        if idx[0] > 0:  # the usual batch: data packets only
            return 0, chunk * self.k, 0, self.rows[chunk]
        values = self.rows[np.maximum(chunk, 0)]
        values[0] = self.desc  # idx is sorted: packet 0, the descriptor, comes first
        flags = np.where(idx == 0, wire.FLAG_EXP_ONLY, 0)
        return flags, np.maximum(chunk, 0) * self.k, 0, values

    def on_result(self, idx: IntArray, exps: npt.NDArray[np.int8],
                  values: npt.NDArray[np.int32]) -> None:
        data = idx > 0
        if not data.all():
            self.check_head(idx, values)
            idx, values = idx[data], values[data]
        self.result[idx - 1] = values


class FloatPlan(_Plan):
    """Packets 0..n_exp-1 propose the exponents of chunks 0..n_exp-1; data packet of chunk
    c carries the proposal for chunk c+S and gets back its agreed exponent."""

    kind = KIND_FLOAT

    def __init__(self, flat: npt.NDArray[np.floating], k: int, num_slots: int, shift: int,
                 world: int) -> None:
        self.S, self.shift = num_slots, shift
        self.blocks = quant.to_blocks(flat, k)
        n = self.blocks.shape[0]
        super().__init__(flat.size, n, min(num_slots, n), k, world)
        self.proposals = quant.block_exponents(self.blocks)
        # the exponent field of data packet c: the proposal for chunk c + S, or none
        self.ahead = np.full(n, quant.EXP_ZERO, dtype=np.int8)
        self.ahead[: max(n - num_slots, 0)] = self.proposals[num_slots:]
        self.agreed = np.full(n, quant.EXP_ZERO, dtype=np.int8)
        self.result = np.zeros((n, k), dtype=np.int32)

    def deps(self, idx: IntArray) -> IntArray:
        # data packets wait for the packet that brings their chunk's agreed exponent: the
        # exponent-only packet of their chunk, or (from chunk S on) the data packet of
        # chunk c - S; n_head packets earlier either way
        return np.where(idx >= self.n_head, idx - self.n_head, -1)

    def dependents(self, done: IntArray) -> IntArray:
        return done + self.n_head

    def build(self, idx: IntArray) -> Built:
        n_head = self.n_head
        if idx[-1] < n_head:  # idx is sorted: exponent-only packets only
            return wire.FLAG_EXP_ONLY, idx * self.k, self.proposals[idx], self.head_values(idx)
        if idx[0] < n_head:  # both kinds: the streamer never asks so, but be general
            cut = int(np.searchsorted(idx, n_head))
            head, data = self.build(idx[:cut]), self.build(idx[cut:])
            return tuple(np.concatenate([np.broadcast_to(np.asarray(h), (cut, *np.shape(h)[1:])),
                                         np.broadcast_to(np.asarray(d), (idx.size - cut, *np.shape(d)[1:]))])
                         for h, d in zip(head, data, strict=True))  # type: ignore[return-value]
        # data packets: quantized once their exponents are agreed, a batch per numpy call
        c = idx - n_head
        lo, hi = int(c[0]), int(c[-1]) + 1
        if hi - lo == c.size:  # consecutive chunks (the common case): slices, no gather
            values = quant.quantize(self.blocks[lo:hi], self.agreed[lo:hi], self.shift)
            return 0, c * self.k, self.ahead[lo:hi], values
        values = quant.quantize(self.blocks[c], self.agreed[c], self.shift)
        return 0, c * self.k, self.ahead[c], values

    def on_result(self, idx: IntArray, exps: npt.NDArray[np.int8],
                  values: npt.NDArray[np.int32]) -> None:
        n_head, S = self.n_head, self.S
        head = idx < n_head
        if head.any():
            self.check_head(idx, values)
            self.agreed[idx[head]] = exps[head]
            data = ~head
            idx, exps, values = idx[data], exps[data], values[data]
        c = idx - n_head
        self.result[c] = values
        later = c + S < self.n
        self.agreed[c[later] + S] = exps[later]


@dataclass
class FloatOutcome:
    """A float call's sum (float32 or float64, the caller's element count), the agreed
    exponent of every chunk and this rank's own proposals (for NonFiniteError)."""

    values: npt.NDArray[np.floating]
    agreed: npt.NDArray[np.int8]
    proposals: npt.NDArray[np.int8]
    stats: CallStats


class PythonEngine:
    """The reference engine: the plans above driven by the numpy streamer."""

    name = "python"

    def __init__(self, job: JobSpec, transport: Transport, *, timeout_s: float,
                 rto: RtoEstimator, missing_ranks: MissingRanks | None,
                 abort: Abort | None) -> None:
        self.job = job
        self.streamer = Streamer(job, transport, timeout_s=timeout_s, rto=rto,
                                 missing_ranks=missing_ranks, abort=abort)
        self.shift = quant.shift_for(job.world_size)

    @property
    def seq(self) -> int:
        return self.streamer.seq

    @property
    def broken(self) -> str | None:
        return self.streamer.broken

    def reduce_ints(self, flat: npt.NDArray[np.int32], nbytes: int
                    ) -> tuple[npt.NDArray[np.int32], CallStats]:
        plan = IntPlan(flat, self.job.k, self.job.world_size)
        plan.tensor_bytes = nbytes
        stats = self.streamer.run(plan)
        return plan.result.reshape(-1)[: flat.size], stats

    def reduce_floats(self, flat: npt.NDArray[np.floating], nbytes: int, *, wide: bool
                      ) -> FloatOutcome:
        """Sums as float64 when `wide` (rounded once more by the caller, to its dtype),
        else float32 (`quant.dequantize_f32`, the same bits as rounding the float64)."""
        job = self.job
        plan = FloatPlan(flat, job.k, job.num_slots, self.shift, job.world_size)
        plan.tensor_bytes = nbytes
        stats = self.streamer.run(plan)
        if not wide:
            out: npt.NDArray[np.floating] = quant.dequantize_f32(plan.result, plan.agreed,
                                                                 self.shift)
        else:
            out = quant.dequantize(plan.result, plan.agreed, self.shift)
        return FloatOutcome(out.reshape(-1)[: flat.size], plan.agreed, plan.proposals, stats)

    def close(self) -> None:
        return None
