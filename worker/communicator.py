"""`Communicator`: allreduce of numpy arrays through the aggregation switch.

Integers (int32, and int64 whose values fit int32) go as they are and come back as the
switch's wrapping int32 sum, bit-exact with a host int32 sum. Floats (float16, bfloat16,
float32, float64) go through block floating point (`p4reduce.worker.quant`). One call
streams any mix of them (`allreduce_many`): the packets are laid out by `plans` (see
docs/WIRE.md).

A rank whose chunk holds NaN/inf proposes the reserved poison exponent; every rank then
streams the whole call to the end (keeping slot rounds in step, so the communicator stays
usable) and raises `NonFiniteError` naming the chunks.

The engine is the C one (`cstream`, built on first use by `p4reduce.native`) where a C
compiler exists, else the Python streamer (`plans.PythonEngine`), with a warning once;
both give the same bits. `engine="python"` or `P4REDUCE_ENGINE=python` picks the Python
one, `engine="c"` insists on C.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import ml_dtypes
import numpy as np
import numpy.typing as npt

from p4reduce.worker import quant
from p4reduce.worker.errors import NonFiniteError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.plans import Outcome, PythonEngine
from p4reduce.worker.stats import CallStats
from p4reduce.worker.stream import Abort, MissingRanks, RtoEstimator
from p4reduce.worker.transport import Transport, make_transport

log = logging.getLogger(__name__)

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32),
                np.dtype(np.float64))
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
EngineChoice = Literal["auto", "c", "python"]
#: environment variable that picks the engine when the caller does not
ENGINE_ENV = "P4REDUCE_ENGINE"


class Engine(Protocol):
    """What a communicator streams its calls with (`PythonEngine`, `cstream.CEngine`)."""

    name: str

    @property
    def seq(self) -> int: ...

    @property
    def broken(self) -> str | None: ...

    @property
    def high(self) -> int: ...

    def restart_at(self, seq: int) -> None: ...

    def reduce(self, floats: npt.NDArray[np.floating] | None,
               ints: npt.NDArray[np.int32] | None, nbytes: int, *, wide: bool) -> Outcome: ...

    def close(self) -> None: ...


_fallback_warned = False


def make_engine(job: JobSpec, transport: Transport, choice: EngineChoice, **kw: Any) -> Engine:
    """The C engine unless `choice` (or $P4REDUCE_ENGINE) says python or no compiler
    exists; `choice="c"` raises NativeUnavailable instead of falling back."""
    global _fallback_warned
    if choice == "auto":
        env = os.environ.get(ENGINE_ENV, "auto")
        if env not in ("auto", "c", "python"):
            raise ValueError(f"{ENGINE_ENV}={env!r}: expected auto, c or python")
        choice = env  # type: ignore[assignment]
    if choice == "python":
        return PythonEngine(job, transport, **kw)
    from p4reduce.native import NativeUnavailable
    from p4reduce.worker import cstream

    try:
        return cstream.CEngine(job, transport, **kw)
    except NativeUnavailable as e:
        if choice == "c":
            raise
        if not _fallback_warned:
            _fallback_warned = True
            warnings.warn(f"p4reduce: the C packet engine is unavailable ({e}); using the "
                          "Python streamer, which costs several times more CPU per packet",
                          RuntimeWarning, stacklevel=3)
        return PythonEngine(job, transport, **kw)


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
        engine: EngineChoice = "auto",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.job = job
        self.transport = transport if transport is not None else make_transport(job)
        self._closing = False

        def aborting() -> str | None:
            # close() from another thread ends a running call first: the engine and the
            # socket it uses are freed only once the call is out
            if self._closing:
                return "the communicator was closed during the call"
            return abort() if abort is not None else None

        try:
            self.engine = make_engine(
                job, self.transport, engine, timeout_s=timeout_s,
                rto=RtoEstimator(initial_rto_s, min_rto_s, max_rto_s),
                missing_ranks=missing_ranks, abort=aborting)
        except BaseException:
            if transport is None:
                self.transport.close()
            raise
        self.shift = quant.shift_for(job.world_size)
        self.last_stats: CallStats | None = None
        #: every call's costs summed (a DDP step is several calls: last_stats is one)
        self.total_stats = CallStats(0, 0, 0, 0.0, 0)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the engine and close the transport; a call running in another thread is
        aborted first (within the engine's abort poll, 0.1 s) and raises AllreduceError."""
        self._closing = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._lock:
            self.engine.close()
            self.transport.close()

    @property
    def high_water(self) -> int:
        """One past the highest packet index this communicator may have sent."""
        return self.engine.high

    def restart_at(self, seq: int) -> None:
        """After the switch lost its state and every rank agreed where to go on (see
        `p4reduce.worker.resync`): continue the slot rounds at packet index `seq` (past
        anything sent before, so no earlier packet can be taken for a new one), and
        accept calls again after the failure the restart caused."""
        with self._lock:
            self.engine.restart_at(seq)

    def allreduce_async(self, array: npt.ArrayLike, op: str = "sum") -> Future[npt.NDArray[Any]]:
        """`allreduce` on this communicator's own thread. The engines read `array` while
        the call streams (the C engine without copying it first), so it must not be
        written until the future is done."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"allreduce-{self.job.rank}")
        return self._executor.submit(self.allreduce, array, op)

    def allreduce(self, array: npt.ArrayLike, op: str = "sum") -> npt.NDArray[Any]:
        """Elementwise sum of `array` over all ranks, same shape and dtype."""
        if op != "sum":
            raise ValueError(f"allreduce op {op!r} is not supported; the switch implements 'sum'")
        # one array: allreduce_many without its lists (a small call's Python cost counts)
        p = _part(np.asarray(array))
        nbytes = p.flat.size * p.dtype.itemsize
        with self._lock:
            if p.kind == "f":
                work = p.flat if p.dtype in (_F32, _F64) else p.flat.astype(np.float32)
                res = self.engine.reduce(work, None, nbytes, wide=p.dtype != _F32)
            else:
                res = self.engine.reduce(None, p.flat.astype(np.int32, copy=False), nbytes,
                                         wide=False)
            self.last_stats = res.stats
            self.total_stats = self.total_stats + res.stats
        if p.kind == "f":
            self._check_finite(res.agreed, res.proposals)
            return res.floats.astype(p.dtype, copy=False).reshape(p.shape)
        return res.ints.astype(p.dtype, copy=False).reshape(p.shape)

    def allreduce_many(self, arrays: Sequence[npt.ArrayLike], op: str = "sum"
                       ) -> list[npt.NDArray[Any]]:
        """Elementwise sums of several arrays (of any supported dtypes) in one stream: one
        exponent round and one packet window for all of them, as one call. Every rank must
        pass arrays of the same sizes and kinds in the same order. The floats are
        quantized together (a chunk may span two arrays), within the same error bound."""
        if op != "sum":
            raise ValueError(f"allreduce op {op!r} is not supported; the switch implements 'sum'")
        parts = [_part(np.asarray(a)) for a in arrays]  # all refusals before anything is sent
        floats = [p for p in parts if p.kind == "f"]
        ints = [p for p in parts if p.kind == "i"]
        wide = any(p.dtype != np.float32 for p in floats)
        f_work = _concat([p.flat for p in floats],
                         np.float64 if any(p.dtype == np.float64 for p in floats) else np.float32)
        i_work = _concat([p.flat for p in ints], np.int32)
        nbytes = sum(p.flat.size * p.dtype.itemsize for p in parts)
        with self._lock:
            res = self.engine.reduce(f_work, i_work, nbytes, wide=wide)
            self.last_stats = res.stats
            self.total_stats = self.total_stats + res.stats
        log.debug("job %d rank %d allreduce: %s, %.1f MB/s", self.job.job_id, self.job.rank,
                  res.stats, res.stats.goodput_mb_s)
        self._check_finite(res.agreed, res.proposals)
        out: list[npt.NDArray[Any]] = []
        at = {"f": 0, "i": 0}
        for p in parts:
            src = res.floats if p.kind == "f" else res.ints
            n = p.flat.size
            piece = src[at[p.kind]: at[p.kind] + n]
            at[p.kind] += n
            out.append(piece.astype(p.dtype, copy=False).reshape(p.shape))
        return out

    def _check_finite(self, agreed: npt.NDArray[np.int8], proposals: npt.NDArray[np.int8]) -> None:
        poisoned = np.flatnonzero(agreed == quant.EXP_POISON)
        if not poisoned.size:
            return
        mine = np.flatnonzero(proposals == quant.EXP_POISON)
        where = ", ".join(str(int(c) * self.job.k) for c in poisoned[:5])
        who = (
            f"this rank's input has NaN, inf or |x| >= 2^{quant.MAX_EXP} in chunks at offsets "
            + ", ".join(str(int(c) * self.job.k) for c in mine[:5])
            if mine.size
            else f"another rank's input has NaN, inf or |x| >= 2^{quant.MAX_EXP} there"
        )
        raise NonFiniteError(
            f"allreduce of job {self.job.job_id} (rank {self.job.rank}) refused: "
            f"non-finite or out-of-range values in {poisoned.size} chunk(s) of {self.job.k} "
            f"elements starting at element offsets {where} (of the call's floats: its float"
            f" arrays one after another); {who}"
        )


@dataclass
class _Part:
    """One array of a call: its kind on the wire ("f" floats, "i" int32), its values as a
    contiguous 1-D array, and what to give back."""

    kind: str
    flat: npt.NDArray[Any]
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


def _part(arr: npt.NDArray[Any]) -> _Part:
    dtype = arr.dtype
    flat = np.ascontiguousarray(arr).reshape(-1)
    if dtype == np.int32:
        return _Part("i", flat, dtype, arr.shape)
    if dtype == np.int64:
        if flat.size and (flat.min() < INT32_MIN or flat.max() > INT32_MAX):
            bad = int(np.flatnonzero((flat < INT32_MIN) | (flat > INT32_MAX))[0])
            raise ValueError(
                f"int64 allreduce needs every value to fit int32 (the switch sums int32); "
                f"element {bad} is {int(flat[bad])}"
            )
        return _Part("i", flat, dtype, arr.shape)
    if dtype in FLOAT_DTYPES:
        return _Part("f", flat, dtype, arr.shape)
    names = "float16, bfloat16, float32, float64, int32, int64 (values within int32)"
    raise TypeError(f"allreduce of dtype {dtype} is not supported; supported: {names}")


def _concat(flats: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any] | None:
    """One contiguous array of `dtype` (no copy for a single array of that dtype)."""
    if not flats:
        return None
    if len(flats) == 1:
        return flats[0].astype(dtype, copy=False)
    return np.concatenate(flats).astype(dtype, copy=False)
