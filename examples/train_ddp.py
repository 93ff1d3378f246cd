"""Train a small MLP with DistributedDataParallel; the gradients' allreduce runs on the switch.

    torchrun --nproc-per-node 3 examples/train_ddp.py            # backend p4reduce
    torchrun --nproc-per-node 3 examples/train_ddp.py --backend gloo

Nothing here is specific to p4reduce but the backend name: the backend registers itself
when torch is imported, and reads P4REDUCE_CONTROLLER (and P4REDUCE_TOPOLOGY or
P4REDUCE_MAC/IPV4/TUNNEL) from the environment. The data is generated, not downloaded:
a noisy linear map each rank samples with its own seed, so every rank sees different
batches and the allreduce matters.
"""

from __future__ import annotations

import argparse
import gc
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="p4reduce", help="process group backend (default p4reduce)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", metavar="FILE", help="rank 0 saves the final state_dict here")
    return p.parse_args(argv)


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # same initial weights on every rank (DDP also broadcasts them)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 8),
    )


def teacher(seed: int) -> torch.Tensor:
    """The linear map the data comes from: the same on every rank."""
    return torch.randn(32, 8, generator=torch.Generator().manual_seed(seed + 12345))


def batch(w_true: torch.Tensor, data: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy samples of tanh(x @ w_true), drawn from this rank's own generator."""
    x = torch.randn(n, 32, generator=data)
    return x, torch.tanh(x @ w_true) + 0.05 * torch.randn(n, 8, generator=data)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        dist.init_process_group(backend=args.backend)
    except (ValueError, RuntimeError) as e:  # unknown backend, missing P4REDUCE_* setting, ...
        print(f"train_ddp: cannot start the {args.backend!r} process group: {e}", file=sys.stderr)
        return 1
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(make_model(args.seed))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    w_true = teacher(args.seed)
    data = torch.Generator().manual_seed(args.seed * 1000 + rank)
    for epoch in range(args.epochs):
        total = torch.zeros(1)
        for _ in range(args.steps_per_epoch):
            x, y = batch(w_true, data, args.batch)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += loss.detach()
        dist.all_reduce(total)  # the mean loss over all ranks' batches of this epoch
        if rank == 0:
            print(f"epoch {epoch + 1}/{args.epochs} loss {total.item() / (world * args.steps_per_epoch):.5f}",
                  flush=True)
    if rank == 0 and args.save:
        torch.save(model.module.state_dict(), args.save)
    # Release DDP before its process group: its reducer holds the group, and a group
    # freed only at interpreter exit (after destroy_process_group) made gloo abort the
    # process now and then ("terminate called without an active exception": 3 of 12
    # torchrun runs of this script with --backend gloo; 0 of 28 with this).
    del model, opt
    gc.collect()
    # Leave together: a rank that tears down its gloo connections while another is still
    # in a collective or saving can make gloo abort the process at exit.
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
