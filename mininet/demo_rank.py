"""One rank of the demo's training run under DDP: a wide MLP, or the example's small one.

Run as a script by `mininet/demo.py` with torchrun's variables (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) and, for the p4reduce backend, the P4REDUCE_* ones:

    python mininet/demo_rank.py --backend p4reduce --steps 100 --out rank0.json [--model small]

The default model (`wide`) has 1.09 M parameters, a 4.4 MB gradient per step: enough that
the allreduce, not the computation, sets the pace on a 100 Mbit/s network, which is the
situation in-network aggregation is for. `small` is examples/train_ddp.py's own model
(27 KB of gradient), where no allreduce method can matter much. Both learn the same
generated data (the example's teacher map), so their losses read the same way.

The gradients' allreduce goes through a DDP communication hook that only times the
call, so that both backends are measured the same way (issue to completion). Packets and
retransmissions are the p4reduce communicator's statistics summed over every call (a
step is one call per DDP bucket), read after training. Rank 0 prints one
`step N/M loss X` line per step so the launcher can show progress.
"""


import argparse
import gc
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket
from torch.nn.parallel import DistributedDataParallel

ROOT = Path(__file__).resolve().parent.parent
EVAL_SAMPLES = 1024


def train_module() -> Any:
    """examples/train_ddp.py by path: the demo trains exactly the example's model."""
    spec = importlib.util.spec_from_file_location("train_ddp", ROOT / "examples" / "train_ddp.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: the demo's models: name -> (hidden width, hidden layers); `small` is the example's own
MODELS = {"wide": 1024, "small": 0}


def make_model(name: str, seed: int) -> torch.nn.Module:
    """The named model with the same initial weights on every rank."""
    if name == "small":
        model: torch.nn.Module = train_module().make_model(seed)
        return model
    width = MODELS[name]
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(32, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
        torch.nn.ReLU(), torch.nn.Linear(width, 8),
    )


def held_out(module: torch.nn.Module, seed: int, w_true: torch.Tensor) -> tuple[float, float]:
    """Loss and the share of outputs of the right sign on held-out data, the same on every
    rank and for every backend."""
    g = torch.Generator().manual_seed(seed + 777)
    xe = torch.randn(EVAL_SAMPLES, 32, generator=g)
    ye = torch.tanh(xe @ w_true)
    with torch.no_grad():
        pred = module(xe)
    return (float(torch.nn.functional.mse_loss(pred, ye)),
            float(((pred > 0) == (ye > 0)).float().mean()))


class Timer:
    """Seconds each bucket's allreduce took, from issue to completion."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.total = 0.0
        self.calls = 0


def timed_allreduce(state: Timer, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    t0 = time.perf_counter()
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    assert work is not None
    fut = work.get_future()

    def done(f: torch.futures.Future[Any]) -> torch.Tensor:
        state.total += time.perf_counter() - t0
        state.calls += 1
        out: torch.Tensor = f.value()[0]
        return out.div_(state.world)

    chained: torch.futures.Future[torch.Tensor] = fut.then(done)
    return chained


def _switch_stats() -> Any:
    """The switch calls' summed CallStats so far, or None for a backend without a switch."""
    if dist.get_backend() != "p4reduce":
        return None
    from p4reduce.worker.torch.engine import live_engine

    engine = live_engine()
    return engine.comm.total_stats if engine is not None and engine.comm is not None else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--model", choices=sorted(MODELS), default="wide")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    ex = train_module()
    try:
        dist.init_process_group(backend=args.backend)
    except (ValueError, RuntimeError) as e:
        print(f"demo_rank: cannot start the {args.backend!r} process group: {e}", file=sys.stderr)
        return 1
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(make_model(args.model, args.seed))
    timer = Timer(world)
    model.register_comm_hook(timer, timed_allreduce)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    w_true = ex.teacher(args.seed)
    data = torch.Generator().manual_seed(args.seed * 1000 + rank)
    packets = retrans = 0
    t_start = time.perf_counter()
    for step in range(args.steps):
        x, y = ex.batch(w_true, data, args.batch)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if rank == 0:
            print(f"step {step + 1}/{args.steps} loss {float(loss):.5f}", flush=True)
    train_s = time.perf_counter() - t_start
    if (stats := _switch_stats()) is not None:
        packets, retrans = stats.packets_sent, stats.retransmitted
    final_loss, accuracy = held_out(model.module, args.seed, w_true)
    result = {
        "rank": rank, "backend": args.backend, "steps": args.steps, "model": args.model,
        "grad_bytes": 4 * sum(p.numel() for p in model.parameters()),
        "final_loss": final_loss, "accuracy": accuracy,
        "step_s": train_s / max(args.steps, 1),
        "allreduce_s": timer.total / max(timer.calls, 1),
        "allreduce_calls": timer.calls,
        "packets_sent": packets, "retransmitted": retrans,
    }
    args.out.write_text(json.dumps(result))
    # DDP holds the group: freed at exit, after destroy_process_group, gloo can abort the
    # process (examples/train_ddp.py says more)
    del model, opt
    gc.collect()
    # every rank done before any tears down: gloo aborts a rank whose peer left mid-shutdown
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
