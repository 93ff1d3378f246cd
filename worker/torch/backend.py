"""`P4ReduceProcessGroup`: torch.distributed's allreduce through the aggregation switch.

allreduce (and allreduce_coalesced) of float32/float16/bfloat16/int32 with SUM or AVG go
to the switch; every other collective, op or dtype goes to a gloo group built on the same
store under its own prefix, so a script using broadcast, barrier or MAX still runs, only
without in-network aggregation for those calls.

Which of those calls deserve a warning: a collective the user's code issues that goes to
gloo (a MAX, an int64 tensor, a broadcast: once per kind and reason, pointing at the
user's line), and a gradient allreduce that cannot use the switch. Not the collectives
torch issues for its own set-up, such as DDP's parameter-shape check (an allgather) and
its initial state sync (a broadcast), nor barriers, which carry no data to aggregate:
those are logged at debug level only, so a plain DDP script starts without warnings.

When the switch has no room for the job (all slots or job ids taken), the controller
makes it host-only and every allreduce goes to gloo for the whole run (one warning says
so when the group is made). It does not move to the switch when slots free up later:
the ranks would all have to switch at the same call; the next run gets slots again.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import PrefixStore, Store

if TYPE_CHECKING:
    from p4reduce.worker.torch.config import RankConfig

BACKEND_NAME = "p4reduce"
#: dtypes the switch path reduces; everything else goes to gloo.
SWITCH_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int32)
_SWITCH_OPS = {dist.ReduceOp.SUM: False, dist.ReduceOp.AVG: True}  # op -> average?
_warned: set[str] = set()
_logged: set[str] = set()
log = logging.getLogger("p4reduce.worker.torch")

#: collectives without data to reduce: the switch could never take them
_SYNC_ONLY = frozenset({"barrier", "monitored_barrier"})
#: torch functions that issue collectives of their own while setting groups up
_TORCH_SETUP = frozenset({"init_process_group", "new_group", "_new_group_with_tag",
                          "new_subgroups", "new_subgroups_by_enumeration",
                          "destroy_process_group", "_store_based_barrier"})
#: torch modules whose collectives are the library's own bookkeeping (DDP's set-up checks,
#: its state and buffer syncs), never a call the user wrote
_TORCH_INTERNAL = (os.sep + os.path.join("nn", "parallel") + os.sep,)
_OURS = os.path.dirname(os.path.abspath(__file__))
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))


def _caller() -> tuple[bool, int]:
    """(issued by torch itself, stacklevel of the first frame outside torch and us),
    seen from `_fallback`'s caller. Frames are walked outwards until the user's code: a
    torch set-up function or a DDP-internal module on the way means torch issued it."""
    frame = sys._getframe(2)
    level = 2  # stacklevel 2 is the frame below: _fallback's caller
    internal = False
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_OURS):
            if not path.startswith(_TORCH):
                break
            if frame.f_code.co_name in _TORCH_SETUP or any(
                    part in path[len(_TORCH):] for part in _TORCH_INTERNAL):
                internal = True
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return internal, level


def _fallback(key: str, why: str, collective: str) -> None:
    """Say once per `key` that a call goes to gloo: a warning at the user's line when
    the user (or a gradient allreduce) issued it, a debug line when torch did."""
    internal, level = _caller()
    text = f"p4reduce: {why}; this call goes through gloo instead of the switch"
    if internal or collective in _SYNC_ONLY:
        if key not in _logged:
            _logged.add(key)
            log.debug("%s (%s)", text, "a barrier" if collective in _SYNC_ONLY
                      else "issued by torch itself")
        return
    if key not in _warned:
        _warned.add(key)
        warnings.warn(text, RuntimeWarning, stacklevel=level)


class FutureWork(dist.Work):
    """A Work whose wait() raises when its future failed.

    The Work that `_create_work_from_future` builds reports success and returns from
    wait() even when the future holds an exception, which would let a failed allreduce
    pass as done with the tensors unchanged.
    """

    def __init__(self, fut: torch.futures.Future[list[torch.Tensor]]) -> None:
        super().__init__()
        self._fut = fut

    def wait(self, timeout: timedelta | None = None) -> bool:
        self._fut.wait()  # re-raises the allreduce's exception
        return True

    def get_future(self) -> torch.futures.Future[list[torch.Tensor]]:
        return self._fut

    def is_completed(self) -> bool:
        return bool(self._fut.done())

    def is_success(self) -> bool:
        if not self._fut.done():
            return False
        try:
            self._fut.value()
        except Exception:
            return False
        return True

    def exception(self) -> BaseException | None:
        if not self._fut.done():
            return None
        try:
            self._fut.value()
        except Exception as e:
            return e
        return None

    def result(self) -> list[torch.Tensor]:
        return self._fut.value()


def _delegate(name: str) -> Any:
    def method(self: P4ReduceProcessGroup, *args: Any, **kwargs: Any) -> Any:
        _fallback(name, f"{name} is not aggregated by the switch (only allreduce is)", name)
        return getattr(self.gloo, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"{name} through the internal gloo group."
    return method


class P4ReduceProcessGroup(dist.ProcessGroup):
    """One rank of a torch process group whose allreduce runs on the P4 switch."""

    def __init__(self, store: Store, rank: int, world_size: int, timeout: timedelta,
                 cfg: RankConfig | None = None) -> None:
        # imported here: `register` runs inside `import torch` and must stay cheap
        from p4reduce.worker.torch.config import from_env
        from p4reduce.worker.torch.engine import SwitchEngine, live_engine

        super().__init__(rank, world_size)  # type: ignore[call-arg]
        self.gloo = dist.ProcessGroupGloo(PrefixStore("p4reduce/gloo/", store), rank,
                                          world_size, timeout)
        self.engine: SwitchEngine | None = None
        self._no_switch: str | None = None
        self._host_only: str | None = None
        other = live_engine()
        if other is None:
            self.engine = SwitchEngine(cfg or from_env(rank, world_size),
                                       join_timeout_s=timeout.total_seconds())
            if self.engine.host_only:
                self._host_only = self._no_switch = (
                    f"the switch has no room for job {self.engine.cfg.job!r} (all slots or job"
                    " ids taken), so the controller made it host-only: every allreduce of this"
                    " run goes through gloo, even if slots free up later")
                warnings.warn(f"p4reduce: {self._host_only}", RuntimeWarning, stacklevel=2)
        else:
            # a process is one member of one switch job: further groups (new_group) use gloo
            self._no_switch = (f"this process group is not the first p4reduce group of the "
                               f"process (that one is rank {other.cfg.rank} of switch job "
                               f"{other.cfg.job!r}), so it has no switch job of its own")

    def getBackendName(self) -> str:
        return BACKEND_NAME

    def name(self) -> str:
        return BACKEND_NAME

    def _switch_reason(self, tensors: list[torch.Tensor], op: Any) -> str | None:
        """Why these tensors cannot go through the switch, or None when they can."""
        if self._no_switch is not None:
            return self._no_switch
        if op not in _SWITCH_OPS:
            return f"reduce op {op} is not summed by the switch (SUM and AVG are)"
        for t in tensors:
            if t.dtype not in SWITCH_DTYPES:
                return (f"dtype {t.dtype} is not carried by the switch "
                        "(float32, float16, bfloat16, int32 are)")
            if t.is_sparse:
                return "sparse tensors are not carried by the switch"
        return None

    def _allreduce(self, tensors: list[torch.Tensor], op: Any, gloo_call: str,
                   opts: Any) -> dist.Work:
        reason = self._switch_reason(tensors, op)
        if reason is not None:
            if reason is not self._host_only:  # that one was said once, at creation
                _fallback(f"{gloo_call}:{reason}", reason, gloo_call)
            if op == dist.ReduceOp.AVG:
                return self._gloo_average(tensors, gloo_call, opts)
            work: dist.Work = getattr(self.gloo, gloo_call)(tensors, opts)
            return work
        assert self.engine is not None
        return FutureWork(self.engine.submit(list(tensors), _SWITCH_OPS[op]))

    def _gloo_average(self, tensors: list[torch.Tensor], gloo_call: str, opts: Any) -> dist.Work:
        """gloo has no AVG: sum there, then divide (ints truncate toward zero, as NCCL)."""
        sum_opts = type(opts)()
        sum_opts.reduceOp = dist.ReduceOp.SUM
        sum_opts.timeout = opts.timeout
        world = self.size()

        def divide(fut: torch.futures.Future[list[torch.Tensor]]) -> list[torch.Tensor]:
            fut.value()
            for t in tensors:
                if t.is_floating_point() or t.is_complex():
                    t.div_(world)
                else:
                    t.copy_(torch.div(t, world, rounding_mode="trunc"))
            return tensors

        summed = getattr(self.gloo, gloo_call)(tensors, sum_opts).get_future()
        return FutureWork(summed.then(divide))

    def allreduce(  # type: ignore[override]
        self, tensors: list[torch.Tensor] | torch.Tensor, opts: Any = None
    ) -> dist.Work:
        if isinstance(tensors, torch.Tensor):
            tensors = [tensors]
        if opts is None:
            opts = dist.AllreduceOptions()
        elif not isinstance(opts, dist.AllreduceOptions):  # a bare ReduceOp
            op, opts = opts, dist.AllreduceOptions()
            opts.reduceOp = op
        return self._allreduce(tensors, opts.reduceOp.op, "allreduce", opts)

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        if opts is None:
            opts = dist.AllreduceCoalescedOptions()
        return self._allreduce(tensors, opts.reduceOp.op, "allreduce_coalesced", opts)

    def shutdown(self) -> None:
        """Leave the job (after queued allreduces finish) and drop the gloo group."""
        if self.engine is not None:
            self.engine.close()
        shutdown = getattr(self.gloo, "shutdown", None)
        if shutdown is not None:
            shutdown()

    for _name in ("broadcast", "allgather", "allgather_coalesced", "_allgather_base",
                  "allgather_into_tensor_coalesced", "reduce", "reduce_scatter",
                  "_reduce_scatter_base", "reduce_scatter_tensor_coalesced", "gather",
                  "scatter", "alltoall", "alltoall_base", "barrier", "monitored_barrier",
                  "send", "recv", "recv_anysource"):
        locals()[_name] = _delegate(_name)
    del _name


def create(store: Store, rank: int, world_size: int, timeout: timedelta) -> P4ReduceProcessGroup:
    """The creator torch calls for init_process_group(backend="p4reduce")."""
    return P4ReduceProcessGroup(store, rank, world_size, timeout)


def register() -> None:
    """Make "p4reduce" a torch.distributed backend name (idempotent)."""
    if BACKEND_NAME.upper() in getattr(dist.Backend, "_plugins", {}):
        return
    dist.Backend.register_backend(BACKEND_NAME, create, devices=["cpu", "cuda"])
