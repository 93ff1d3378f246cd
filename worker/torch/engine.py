"""`SwitchEngine`: one rank's membership in a controller job and its ordered allreduce queue.

Shared by the process group and the DDP hook. All switch allreduces of a rank run on one
thread, in submission order: the switch pairs the ranks' packets by slot round, so every
rank must stream the same calls in the same order, which a single FIFO thread guarantees
as long as the ranks submit in the same order (as torch's collectives require anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import ml_dtypes
import numpy as np
import torch

from p4reduce.controller.client import ControllerCallError, ControllerClient
from p4reduce.worker import Communicator, JobSpec
from p4reduce.worker.peers import PeerWatch
from p4reduce.worker.resync import ResyncingCommunicator
from p4reduce.worker.torch.config import RankConfig

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The switch path could not be set up (controller refused or unreachable)."""


def to_numpy(t: torch.Tensor) -> np.ndarray[Any, Any]:
    """Host copy of a tensor as numpy; bfloat16 goes through its bits (numpy has no bf16)."""
    flat = t.detach().reshape(-1).cpu()
    if flat.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return flat.numpy()


@dataclass
class Packed:
    """The tensors of one collective as host buffers: every float tensor (float32,
    float16, bfloat16) in one float32 buffer, every int32 tensor in one int32 buffer, so
    that the call is one stream however many tensors and dtypes it has."""

    floats: list[torch.Tensor]
    ints: list[torch.Tensor]
    buffers: list[np.ndarray[Any, Any]]  # the float buffer (if any), then the int one


def _flat(group: list[torch.Tensor], dtype: type) -> np.ndarray[Any, Any]:
    parts = [to_numpy(t) for t in group]
    if len(parts) == 1:
        return parts[0].astype(dtype, copy=True)
    return np.concatenate([p.astype(dtype, copy=False) for p in parts])


def pack(tensors: list[torch.Tensor]) -> Packed:
    """Host copies of `tensors`, as they are when the collective is issued.

    Runs on the caller's thread: it snapshots the inputs, and for CUDA tensors `.cpu()`
    orders the copy after the kernels of the caller's current stream that produced them.
    """
    floats = [t for t in tensors if t.dtype != torch.int32]
    ints = [t for t in tensors if t.dtype == torch.int32]
    buffers = ([_flat(floats, np.float32)] if floats else []) + (
        [_flat(ints, np.int32)] if ints else [])
    return Packed(floats, ints, buffers)


class Reducer(Protocol):
    """What `finish` needs: a Communicator, or one wrapped to survive switch restarts."""

    @property
    def job(self) -> JobSpec: ...
    def allreduce_many(self, arrays: Sequence[np.ndarray[Any, Any]]
                       ) -> list[np.ndarray[Any, Any]]: ...


def finish(comm: Reducer, packed: Packed, average: bool) -> None:
    """Reduce the packed buffers through the switch in one call and write the results
    back in place.

    Floats travel as float32 whatever their dtype, so the sum of half-precision values is
    rounded once, at the end, not on every addition. The average of int32 truncates
    toward zero, as NCCL's does.
    """
    if not packed.buffers:
        return
    world = comm.job.world_size
    outs = comm.allreduce_many(packed.buffers)
    groups = ([packed.floats] if packed.floats else []) + ([packed.ints] if packed.ints else [])
    for group, out in zip(groups, outs, strict=True):
        if average:
            out = (np.trunc(out.astype(np.float64) / world).astype(np.int32)
                   if out.dtype == np.int32 else out / np.float32(world))
        result = torch.from_numpy(np.ascontiguousarray(out))
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(result[offset : offset + n].view(t.shape))  # casts to t's dtype
            offset += n
    for t in (*packed.floats, *packed.ints):
        if t.is_cuda:  # the copies above ran on this thread's stream: done before the future
            torch.cuda.current_stream(t.device).synchronize()


def reduce_into(comm: Reducer, tensors: list[torch.Tensor], average: bool) -> None:
    """Sum (or average) `tensors` over the ranks in place, as one switch call."""
    finish(comm, pack(tensors), average)


#: calls of at most this many bytes from the main thread run there when nothing is
#: queued (`SwitchEngine.submit`)
INLINE_MAX_BYTES = 64 * 1024

_live: list[SwitchEngine] = []
_live_lock = threading.Lock()


def live_engine() -> SwitchEngine | None:
    """The engine this process runs, if any: a process is one worker of one switch job."""
    with _live_lock:
        return _live[0] if _live else None


class SwitchEngine:
    """Joins the job at construction (waiting for every rank), heartbeats until `close`.

    One per process: a second engine would be a second job member with the same address
    and tunnel port, and the two jobs' results would reach either engine.

    The heartbeats are a `PeerWatch`: the controller tells this rank when another rank of
    the job dies or leaves, and the communicator's `abort` hook fails the pending
    allreduce with that reason within seconds (every rank hears the same, so all of them
    fail, none waits for the others forever). When the switch restarts, the ranks agree
    through the controller where to go on and continue (`ResyncingCommunicator`), or
    all fail with one error saying why they could not.

    When the switch has no room for the job (`cfg.best_effort`, the default), the
    controller makes it host-only: `host_only` is then True, there is no communicator,
    and the process group sends every allreduce to gloo for the whole run.
    """

    def __init__(self, cfg: RankConfig, join_timeout_s: float = 300.0,
                 communicator_factory: Callable[[JobSpec], Communicator] | None = None) -> None:
        self.cfg = cfg
        other = live_engine()
        if other is not None:
            raise BackendError(
                f"p4reduce: this process already is rank {other.cfg.rank} of switch job "
                f"{other.cfg.job!r}; a second switch job from the same process would share its "
                "address (use one p4reduce process group per process, or the DDP hook with a "
                "gloo/nccl default group)"
            )
        self._client = ControllerClient(cfg.controller)
        try:
            info = self._client.join(cfg.job, cfg.rank, cfg.world_size, cfg.mac, cfg.ipv4,
                                     cfg.udp_port, slots=cfg.slots,
                                     wait_ready_timeout=join_timeout_s,
                                     best_effort=cfg.best_effort)
        except ControllerCallError as e:
            self._client.close()
            raise BackendError(
                f"p4reduce: rank {cfg.rank} could not join job {cfg.job!r} through the "
                f"controller at {cfg.controller}: {e}"
            ) from None
        self.host_only = bool(getattr(info, "host_only", False))
        self.peers = PeerWatch(self._client, cfg.job, cfg.rank,
                               lease_until=float(info.lease_until))
        self.comm: Communicator | None = None
        self.reducer: ResyncingCommunicator | None = None
        if not self.host_only:
            self.spec = JobSpec(
                job_id=info.job_id, rank=cfg.rank, world_size=cfg.world_size,
                num_slots=info.slot_count, k=info.k, switch_mac=info.aggregation.mac,
                switch_ip=info.aggregation.ipv4, switch_port=info.aggregation.udp_port,
                local_mac=cfg.mac, local_ip=cfg.ipv4, local_port=cfg.udp_port,
                transport=cfg.transport, tunnel_host=cfg.tunnel_host,
                tunnel_port=cfg.tunnel_port,
            )
            make = communicator_factory or (
                lambda s: Communicator(s, timeout_s=cfg.timeout_s, abort=self.peers.abort))
            try:
                self.comm = make(self.spec)
            except BaseException:
                self.peers.stop()
                self._client.close()
                raise
            self.reducer = ResyncingCommunicator(self.comm, self.peers, self._client, cfg.job)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"p4reduce-{cfg.rank}")
        # calls submitted and not finished; one call streams at a time, in submission order
        self._submit_lock = threading.Lock()
        self._order = threading.Lock()
        self._pending = 0
        self.closed = False
        with _live_lock:
            _live.append(self)

    def submit(self, tensors: list[torch.Tensor], average: bool) -> torch.futures.Future[list[torch.Tensor]]:
        """Start an in-place allreduce; the future fails with the switch path's error.

        A small call from the main thread with nothing queued before it runs right here:
        handing it to the engine's thread costs more than its packets do (about 100 us
        against a few tens on loopback), and with nothing in flight there is nothing to
        overlap it with. Anything larger, anything behind a queued call, and every call
        from another thread (DDP's buckets come from autograd threads, whose backward pass
        must go on meanwhile) goes to the engine's thread, in submission order.
        """
        fut: torch.futures.Future[list[torch.Tensor]] = torch.futures.Future()
        if self.closed:
            fut.set_exception(BackendError("p4reduce: the process group was shut down"))  # type: ignore[arg-type]
            return fut
        comm = self.reducer
        if comm is None:
            fut.set_exception(BackendError(  # type: ignore[arg-type]
                f"p4reduce: job {self.cfg.job!r} is host-only (the switch had no room): "
                "its allreduce runs on gloo, not through this engine"))
            return fut

        try:
            packed = pack(tensors)
        except Exception as e:
            fut.set_exception(e)  # type: ignore[arg-type]
            return fut

        def run() -> None:
            error: BaseException | None = None
            try:
                finish(comm, packed, average)
            except BaseException as e:
                error = e
            with self._submit_lock:  # before the future: a caller woken by it may submit
                self._pending -= 1
            if error is not None:
                fut.set_exception(error)  # type: ignore[arg-type]
            else:
                fut.set_result(tensors)

        small = (sum(b.nbytes for b in packed.buffers) <= INLINE_MAX_BYTES
                 and threading.current_thread() is threading.main_thread())
        with self._submit_lock:
            inline = small and self._pending == 0
            self._pending += 1
            if inline:  # taken before any later call can queue: it cannot overtake us
                self._order.acquire()
        if inline:
            try:
                run()
            finally:
                self._order.release()
            return fut

        def queued() -> None:
            with self._order:
                run()

        self._executor.submit(queued)
        return fut

    def close(self) -> None:
        """Finish queued calls, stop heartbeats, leave the job. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        with _live_lock:
            _live.remove(self)
        self._executor.shutdown(wait=True)
        self.peers.stop()
        if self.reducer is not None:
            self.reducer.close()
        elif self.comm is not None:
            self.comm.close()
        try:
            self._client.leave(self.cfg.job, self.cfg.rank)
        except ControllerCallError as e:
            log.warning("p4reduce: leaving job %s failed: %s", self.cfg.job, e)
        self._client.close()
