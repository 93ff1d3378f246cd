"""The packets of one call, in Python: what the reference streamer sends and how it reads
the results (`worker/cstream.c` implements the same protocol in C; docs/WIRE.md describes
it).

A call reduces a float segment (block floating point, `quant`) and an int32 segment
(summed exactly, wrapping like int32), either possibly empty, as one stream:

* E exponent packets (flags EXP_ONLY, combined by the switch with a maximum per lane,
  their lanes order-encoded: `wire.order_encode`) carry the call descriptor
  (DESCRIPTOR_LANES lanes) and then this rank's exponent proposal for every float chunk,
  K lanes a packet;
* one data packet per float chunk, quantized with the chunk's agreed exponent once the
  exponent packet holding its proposal has its result;
* one data packet per int chunk, which waits for nothing.

The descriptor holds (v, ~v) for each of three values that describe the call, so a rank
whose peers stream another call sees it in its first result and fails, on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from p4reduce.contract import DESCRIPTOR_LANES
from p4reduce.worker import quant, wire
from p4reduce.worker.errors import AllreduceError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.stats import CallStats
from p4reduce.worker.stream import Abort, MissingRanks, RtoEstimator, Streamer
from p4reduce.worker.transport import Transport

IntArray = npt.NDArray[np.intp]
Built = tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]
I32 = npt.NDArray[np.int32]
_LOW31 = 0x7FFF_FFFF


def descriptor(n_floats: int, n_ints: int) -> I32:
    """The call descriptor lanes: (v, ~v) for v0 = n_floats mod 2^31, v1 = n_ints mod 2^31
    and v2 = their high bits (15 each). The switch's signed maximum of v equals a rank's
    own v, and that of ~v its own ~v, only if every rank has the same v."""
    values = (n_floats & _LOW31, n_ints & _LOW31,
              ((n_floats >> 31) & 0x7FFF) << 16 | ((n_ints >> 31) & 0x7FFF))
    lanes = np.array([x for v in values for x in (v, ~v)], dtype=np.int32)
    assert lanes.size == DESCRIPTOR_LANES
    return lanes


def check_descriptor(n_floats: int, n_ints: int, got: npt.ArrayLike) -> None:
    """Raise AllreduceError unless `got` (the switch's maximum of every rank's descriptor
    lanes) shows that every rank streams this call."""
    got = np.asarray(got, dtype=np.int64)
    own = descriptor(n_floats, n_ints)
    if np.array_equal(got, own):
        return
    hi, lo = got[0::2], ~got[1::2]  # maximum of v, minimum of v over the ranks
    raise AllreduceError(
        f"allreduce: the ranks are not reducing tensors of the same size and kind (this "
        f"rank has {n_floats} float and {n_ints} int32 elements; the ranks' float counts "
        f"range over {int(lo[0])}..{int(hi[0])} and their int32 counts over "
        f"{int(lo[1])}..{int(hi[1])}, mod 2^31)"
    )


def exponent_lanes(desc: I32, proposals: npt.NDArray[np.int8], k: int) -> I32:
    """The lanes of a call's exponent packets, (E, k), as sent (order-encoded, see
    `wire.order_encode`): the descriptor, then the proposals, then EXP_ZERO."""
    total = desc.size + proposals.size
    n = -(-total // k)
    lanes = np.full(n * k, quant.EXP_ZERO, dtype=np.int32)
    lanes[: desc.size] = desc
    lanes[desc.size: total] = proposals
    return wire.order_encode(lanes).reshape(n, k)


class CallPlan:
    """A call's packets, built and consumed a batch at a time (index arrays): every
    method is a handful of numpy operations whatever the batch size."""

    def __init__(self, floats: npt.NDArray[np.floating] | None,
                 ints: npt.NDArray[np.int32] | None, k: int, shift: int) -> None:
        self.k, self.shift = k, shift
        self.n_f = 0 if floats is None else floats.size
        self.n_i = 0 if ints is None else ints.size
        self.blocks = (quant.to_blocks(floats, k) if floats is not None and floats.size
                       else np.zeros((0, k), dtype=np.float32))
        irows = (quant.to_blocks(ints, k) if ints is not None and ints.size
                 else np.zeros((0, k), dtype=np.int32))
        # a copy, as the caller's array may be written while the call streams
        self.irows = irows.copy() if ints is not None and np.may_share_memory(irows, ints) else irows
        self.cf, self.ci = self.blocks.shape[0], self.irows.shape[0]
        self.desc = descriptor(self.n_f, self.n_i)
        self.proposals = quant.block_exponents(self.blocks)
        self.lanes = exponent_lanes(self.desc, self.proposals, k)
        self.n_exp = self.lanes.shape[0] if self.n_f or self.n_i else 0
        self.n_packets = self.n_exp + self.cf + self.ci if self.n_exp else 0
        self.tensor_bytes = 0
        self.agreed = np.full(self.cf, quant.EXP_ZERO, dtype=np.int8)
        self.result_f = np.zeros((self.cf, k), dtype=np.int32)
        self.result_i = np.empty((self.ci, k), dtype=np.int32)
        self.desc_got = np.zeros(self.desc.size, dtype=np.int64)  # as the results come
        self.desc_seen = 0

    def deps(self, idx: IntArray) -> IntArray:
        """A float data packet waits for the exponent packet holding its chunk's lane."""
        e, d = self.n_exp, self.desc.size
        floats = (idx >= e) & (idx < e + self.cf)
        return np.where(floats, (d + idx - e) // self.k, -1)

    def dependents(self, done: IntArray) -> IntArray:
        ex = done[done < self.n_exp]
        if not ex.size:
            return done[:0]
        d, k = self.desc.size, self.k
        lo = np.maximum(ex * k - d, 0)
        hi = np.minimum((ex + 1) * k - d, self.cf)
        parts = [np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a]
        return (np.concatenate(parts) + self.n_exp) if parts else done[:0]

    def expect(self, idx: IntArray) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]:
        head = idx < self.n_exp
        return (np.where(head, wire.FLAG_EXP_ONLY, 0),
                np.where(head, idx, idx - self.n_exp) * self.k)

    def build(self, idx: IntArray) -> Built:
        e, cf, k = self.n_exp, self.cf, self.k
        first, last = int(idx[0]), int(idx[-1])
        if first >= e and last < e + cf:  # float data only (the usual batch)
            c = idx - e
            lo, hi = first - e, last - e + 1
            if hi - lo == c.size:  # consecutive chunks: slices, no gather
                return 0, c * k, self.agreed[lo:hi], quant.quantize(self.blocks[lo:hi],
                                                                     self.agreed[lo:hi], self.shift)
            return 0, c * k, self.agreed[c], quant.quantize(self.blocks[c], self.agreed[c],
                                                            self.shift)
        flags = np.where(idx < e, wire.FLAG_EXP_ONLY, 0)
        offsets = np.where(idx < e, idx, idx - e) * k
        exps = np.zeros(idx.size, dtype=np.int8)
        values = np.empty((idx.size, k), dtype=np.int32)
        head = idx < e
        exps[head] = quant.EXP_ZERO
        values[head] = self.lanes[idx[head]]
        fl = (idx >= e) & (idx < e + cf)
        if fl.any():
            c = idx[fl] - e
            exps[fl] = self.agreed[c]
            values[fl] = quant.quantize(self.blocks[c], self.agreed[c], self.shift)
        it = idx >= e + cf
        values[it] = self.irows[idx[it] - e - cf]
        return flags, offsets, exps, values

    def on_result(self, idx: IntArray, exps: npt.NDArray[np.int8],
                  values: npt.NDArray[np.int32]) -> None:
        e, cf, k, d = self.n_exp, self.cf, self.k, self.desc.size
        head = idx < e
        if head.any():
            for row, pkt in zip(values[head], idx[head].tolist(), strict=True):
                lanes = wire.order_decode(row).astype(np.int64)
                at = pkt * k  # this packet's first lane in the call's lane stream
                if at < d:  # descriptor lanes (in packet 0 unless k < DESCRIPTOR_LANES)
                    n = min(d - at, k)
                    self.desc_got[at: at + n] = lanes[:n]
                    self.desc_seen += n
                    if self.desc_seen >= d:
                        check_descriptor(self.n_f, self.n_i, self.desc_got)
                c0 = max(at - d, 0)  # first chunk whose proposal is in this packet
                c1 = min(at + k - d, cf)
                if c1 > c0:
                    self.agreed[c0:c1] = np.clip(lanes[c0 + d - at: c1 + d - at], -128, 127)
            idx, exps, values = idx[~head], exps[~head], values[~head]
        fl = idx < e + cf
        if fl.all():
            self.result_f[idx - e] = values
            return
        self.result_f[idx[fl] - e] = values[fl]
        self.result_i[idx[~fl] - e - cf] = values[~fl]

@dataclass
class Outcome:
    """A call's sums: floats (float32 or float64) and ints of the caller's element counts,
    the agreed exponent of every float chunk and this rank's own proposals (for
    NonFiniteError)."""

    floats: npt.NDArray[np.floating]
    ints: npt.NDArray[np.int32]
    agreed: npt.NDArray[np.int8]
    proposals: npt.NDArray[np.int8]
    stats: CallStats


class PythonEngine:
    """The reference engine: a CallPlan driven by the numpy streamer."""

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

    @property
    def high(self) -> int:
        """One past the highest packet index any call so far may have sent."""
        return self.streamer.high

    def restart_at(self, seq: int) -> None:
        """Go on at packet index `seq` after a switch restart (`Communicator.restart_at`),
        and accept calls again."""
        self.streamer.seq = self.streamer.high = seq
        self.streamer.broken = None

    def reduce(self, floats: npt.NDArray[np.floating] | None, ints: I32 | None, nbytes: int,
               *, wide: bool) -> Outcome:
        """Sum both segments over the ranks in one stream. Float sums come back as float64
        when `wide` (rounded once more by the caller, to its dtype), else as float32
        (`quant.dequantize_f32`, the same bits as rounding the float64)."""
        plan = CallPlan(floats, ints, self.job.k, self.shift)
        plan.tensor_bytes = nbytes
        stats = self.streamer.run(plan)
        if wide:
            out: npt.NDArray[np.floating] = quant.dequantize(plan.result_f, plan.agreed,
                                                             self.shift)
        else:
            out = quant.dequantize_f32(plan.result_f, plan.agreed, self.shift)
        return Outcome(out.reshape(-1)[: plan.n_f], plan.result_i.reshape(-1)[: plan.n_i],
                       plan.agreed, plan.proposals, stats)

    def close(self) -> None:
        return None
