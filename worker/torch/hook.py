"""DDP communication hook: gradients through the switch, everything else on the default group.

For users who keep gloo or NCCL as their process group (for broadcasts, checkpoints,
metrics) and want only the gradient allreduce in the network:

    state = HookState.from_env()          # after init_process_group(...)
    ddp.register_comm_hook(state, allreduce_hook)
    ...
    state.close()                         # leaves the job
"""

# No `from __future__ import annotations`: DDP checks the hook's annotations as objects.
import warnings

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket

from p4reduce.worker.torch.config import RankConfig, from_env
from p4reduce.worker.torch.engine import SwitchEngine


class HookState:
    """The switch engine a hook uses; its own job membership, separate from any group."""

    def __init__(self, engine: SwitchEngine) -> None:
        self.engine = engine

    @classmethod
    def from_env(cls, cfg: RankConfig | None = None, join_timeout_s: float = 300.0) -> "HookState":
        """Join the job of P4REDUCE_* for this rank of the default process group."""
        if cfg is None:
            cfg = from_env(dist.get_rank(), dist.get_world_size())
        engine = SwitchEngine(cfg, join_timeout_s=join_timeout_s)
        if engine.host_only:
            warnings.warn(
                f"p4reduce: the switch has no room for job {cfg.job!r} (all slots or job ids"
                " taken), so the controller made it host-only: the hook reduces gradients on"
                " the default process group for this whole run", RuntimeWarning, stacklevel=2)
        return cls(engine)

    def close(self) -> None:
        self.engine.close()


def allreduce_hook(state: HookState,
                   bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Average a gradient bucket over the ranks through the switch (DDP divides nothing
    after a hook: the hook's result is the gradient)."""
    if state.engine.host_only:  # what DDP does without a hook: sum, then divide
        buf = bucket.buffer().div_(dist.get_world_size())
        work = dist.all_reduce(buf, async_op=True)
        assert work is not None
        summed: torch.futures.Future[list[torch.Tensor]] = work.get_future()
        return summed.then(lambda f: f.value()[0])
    fut = state.engine.submit([bucket.buffer()], average=True)
    return fut.then(lambda f: f.value()[0])
