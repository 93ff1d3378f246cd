"""`Communicator`: allreduce of numpy arrays through the aggregation switch.

Two packet plans share the streamer. Integers (int32, and int64 whose values fit int32)
go as they are, one packet per chunk, and come back as the switch's wrapping int32 sum,
bit-exact with a host int32 sum. Floats (float16, bfloat16, float32, float64) go through
block floating point (`p4reduce.worker.quant`): a first window of exponent-only packets proposes the
exponents of chunks 0..S-1, and the data packet of chunk c carries the proposal for chunk
c+S, so the agreed exponent of every later chunk is back before its data may leave.

Every call starts with a descriptor (see `_descriptor`) so that ranks disagreeing on the
tensor size fail instead of mixing chunks. A rank whose chunk holds NaN/inf proposes the reserved poison exponent; every rank then
streams the whole call to the end (keeping slot rounds in step, so the communicator stays
usable) and raises `NonFiniteError` naming the chunks.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

from p4reduce.worker import quant, wire
from p4reduce.worker.errors import AllreduceError, NonFiniteError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.stats import CallStats
from p4reduce.worker.stream import Abort, MissingRanks, RtoEstimator, Streamer
from p4reduce.worker.transport import Transport, make_transport

log = logging.getLogger(__name__)

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32),
                np.dtype(np.float64))
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _descriptor(n: int, kind: int, k: int) -> npt.NDArray[np.int32]:
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


IntArray = npt.NDArray[np.intp]
Built = tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]


class _Plan:
    """Common part: packet 0 .. n_head-1 are EXP_ONLY, packet 0 carries the descriptor.

    The streamer asks for packets and hands results back a batch at a time, as index
    arrays: every method is a handful of numpy operations whatever the batch size."""

    kind = 0

    def __init__(self, n_elems: int, n_chunks: int, n_head: int, k: int, world: int) -> None:
        self.k, self.n, self.n_head, self.world = k, n_chunks, n_head, world
        self.n_packets = n_head + n_chunks if n_chunks else 0
        self.tensor_bytes = 0
        self.desc = _descriptor(n_elems, self.kind, k)
        self.mismatch: str | None = None

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
            raise AllreduceError(
                f"allreduce: the ranks are not reducing tensors of the same size and kind "
                f"(this rank has {int(self.desc[0])} elements; the switch's sum of the ranks' "
                f"sizes is {int(got[0])}, not {self.world} x {int(self.desc[0])})"
            )


class _IntPlan(_Plan):
    kind = 1

    def __init__(self, flat: npt.NDArray[np.int32], k: int, world: int) -> None:
        rows = quant.to_blocks(flat, k)
        # a copy, as the caller's array may be written while the call streams
        self.rows = rows.copy() if np.may_share_memory(rows, flat) else rows
        super().__init__(flat.size, self.rows.shape[0], 1, k, world)
        self.dep_offsets: tuple[int, ...] = ()
        self.result = np.empty_like(self.rows)

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


class _FloatPlan(_Plan):
    """Packets 0..n_exp-1 propose the exponents of chunks 0..n_exp-1; data packet of chunk
    c carries the proposal for chunk c+S and gets back its agreed exponent."""

    kind = 2

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
        # data packets also wait for the exponent-only packet of their chunk (when n < S
        # that is not the previous user of their slot)
        self.dep_offsets: tuple[int, ...] = (self.n_head,)
        self.result = np.zeros((n, k), dtype=np.int32)

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


class Communicator:
    """Allreduce through one job's slots. Calls run one at a time, in submission order;
    every rank must make the same sequence of calls with arrays of the same size.

    `timeout_s` bounds the wait for progress: with no new result for that long, the call
    raises `AllreduceTimeout` naming the job and the stuck (slot, round) pairs. Which ranks
    failed to contribute is in the switch's bitmap register, which a worker cannot see;
    `missing_ranks(job_id, slot, round)` may be given to look it up (a controller with
    register access, or the test switches), and its answer is put in the error. Without
    it the error says the ranks are unknown rather than guessing.

    `abort`, when given, is asked at least every 0.1 s while a call runs; a reason it
    returns ends the call at once with `AllreduceError(reason)` (the torch engine passes
    its peer watch: a dead rank or a restarted switch fails the call in seconds, naming
    why, instead of after `timeout_s`).
    """

    def __init__(
        self,
        job: JobSpec,
        transport: Transport | None = None,
        *,
        timeout_s: float = 30.0,
        initial_rto_s: float = 0.1,
        min_rto_s: float = 0.01,
        max_rto_s: float = 1.0,
        missing_ranks: MissingRanks | None = None,
        abort: Abort | None = None,
    ) -> None:
        self.job = job
        self.transport = transport if transport is not None else make_transport(job)
        self._streamer = Streamer(
            job, self.transport, timeout_s=timeout_s,
            rto=RtoEstimator(initial_rto_s, min_rto_s, max_rto_s), missing_ranks=missing_ranks,
            abort=abort,
        )
        self.shift = quant.shift_for(job.world_size)
        self.last_stats: CallStats | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.transport.close()

    @property
    def high_water(self) -> int:
        """One past the highest packet index this communicator may have sent."""
        return self._streamer.high

    def restart_at(self, seq: int) -> None:
        """After the switch lost its state and every rank agreed where to go on (see
        `p4reduce.worker.resync`): continue the slot rounds at packet index `seq` (past
        anything sent before, so no earlier packet can be taken for a new one), and
        accept calls again after the failure the restart caused."""
        with self._lock:
            self._streamer.seq = self._streamer.high = seq
            self._streamer.broken = None

    def allreduce_async(self, array: npt.ArrayLike, op: str = "sum") -> Future[npt.NDArray[Any]]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"allreduce-{self.job.rank}")
        return self._executor.submit(self.allreduce, array, op)

    def allreduce(self, array: npt.ArrayLike, op: str = "sum") -> npt.NDArray[Any]:
        """Elementwise sum of `array` over all ranks, same shape and dtype."""
        if op != "sum":
            raise ValueError(f"allreduce op {op!r} is not supported; the switch implements 'sum'")
        arr = np.asarray(array)
        dtype = arr.dtype
        flat = np.ascontiguousarray(arr).reshape(-1)
        if dtype == np.int32:
            return self._ints(flat, arr.shape, dtype)
        if dtype == np.int64:
            if flat.size and (flat.min() < INT32_MIN or flat.max() > INT32_MAX):
                bad = int(np.flatnonzero((flat < INT32_MIN) | (flat > INT32_MAX))[0])
                raise ValueError(
                    f"int64 allreduce needs every value to fit int32 (the switch sums int32); "
                    f"element {bad} is {int(flat[bad])}"
                )
            return self._ints(flat.astype(np.int32), arr.shape, dtype)
        if dtype in FLOAT_DTYPES:
            work = flat if dtype == np.float64 else flat.astype(np.float32)
            return self._floats(work, arr.shape, dtype)
        names = "float16, bfloat16, float32, float64, int32, int64 (values within int32)"
        raise TypeError(f"allreduce of dtype {dtype} is not supported; supported: {names}")

    def _run(self, plan: _IntPlan | _FloatPlan, nbytes: int) -> None:
        plan.tensor_bytes = nbytes
        with self._lock:
            stats = self._streamer.run(plan)
        self.last_stats = stats
        log.debug("job %d rank %d allreduce: %s, %.1f MB/s", self.job.job_id, self.job.rank,
                  stats, stats.goodput_mb_s)

    def _ints(self, flat: npt.NDArray[Any], shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        plan = _IntPlan(flat, self.job.k, self.job.world_size)
        self._run(plan, flat.size * dtype.itemsize)
        out = plan.result.astype(np.int32).reshape(-1)[: flat.size]
        return out.astype(dtype).reshape(shape)

    def _floats(self, flat: npt.NDArray[Any], shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        plan = _FloatPlan(flat, self.job.k, self.job.num_slots, self.shift, self.job.world_size)
        self._run(plan, flat.size * dtype.itemsize)
        poisoned = np.flatnonzero(plan.agreed == quant.EXP_POISON)
        if poisoned.size:
            mine = np.flatnonzero(plan.proposals == quant.EXP_POISON)
            where = ", ".join(str(int(c) * self.job.k) for c in poisoned[:5])
            who = (
                f"this rank's input has NaN, inf or |x| >= 2^{quant.MAX_EXP} in chunks at offsets "
                + ", ".join(str(int(c) * self.job.k) for c in mine[:5])
                if mine.size
                else "another rank's input has NaN, inf or |x| >= 2^126 there"
            )
            raise NonFiniteError(
                f"allreduce of job {self.job.job_id} (rank {self.job.rank}) refused: "
                f"non-finite or out-of-range values in {poisoned.size} chunk(s) of {self.job.k} "
                f"elements starting at element offsets {where}; {who}"
            )
        if dtype == np.float32:
            out32 = quant.dequantize_f32(plan.result, plan.agreed, self.shift).reshape(-1)
            return out32[: flat.size].reshape(shape)
        out = quant.dequantize(plan.result, plan.agreed, self.shift).reshape(-1)[: flat.size]
        return out.astype(dtype).reshape(shape)
