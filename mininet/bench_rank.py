"""One rank of `make bench-mininet`: timed allreduces of several sizes, or a timed training.

Run by mininet/bench_mininet.py inside a Mininet host with torchrun's variables (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GLOO_SOCKET_IFNAME) and, for p4reduce, P4REDUCE_*:

    python mininet/bench_rank.py --sizes 65536,1048576 --reps 3 --train 200 --out r0.json

Every repetition starts right after a barrier and is timed on each rank from there to the
call's completion; the launcher takes the slowest rank's time, which is when the reduced
tensor is everywhere. Wall-clock timestamps (one kernel, one clock for every namespace) let
the launcher attribute the switch's CPU samples to each measurement, and each rank's own
CPU seconds show whether the host, not the network, was the limit. The first repetition's
result is checked against the exact sum (every rank can rebuild every other rank's input
from its seed), so a fast wrong answer can never look like a win.
"""

import argparse
import gc
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import demo_rank
import torch
import torch.distributed as dist

# int32 block floating point: per-chunk error bound relative to the chunk's largest sum
REL_TOL = 1e-4


def _input(rank: int, n: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(1000 + rank))


def _tcp_counters() -> tuple[int, int]:
    """(OutSegs, RetransSegs) of this network namespace's TCP: a rank runs alone in its
    Mininet host, so the deltas over a gloo call are that call's segments and resends."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
             if ln.startswith("Tcp:")]
    row = dict(zip(lines[0][1:], lines[1][1:], strict=True))
    return int(row["OutSegs"]), int(row["RetransSegs"])


def _switch_stats() -> Any:
    """The p4reduce communicator's last CallStats (None under gloo)."""
    if dist.get_backend() != "p4reduce":
        return None
    from p4reduce.worker.torch.engine import live_engine

    engine = live_engine()
    return engine.comm.last_stats if engine is not None else None


def _check(out: torch.Tensor, world: int, n: int, backend: str) -> float:
    """Largest error relative to the largest |sum|; exits if beyond tolerance."""
    want = sum((_input(r, n) for r in range(world)), torch.zeros(n))
    err = float((out - want).abs().max() / want.abs().max().clamp_min(1e-30))
    if err > REL_TOL:
        raise SystemExit(f"bench_rank: {backend} allreduce of {n} floats is wrong "
                         f"(max error {err:.2e} of the largest sum, tolerance {REL_TOL:g})")
    return err


def _timed(buf: torch.Tensor, src: torch.Tensor,
           group: Any) -> tuple[float, float, float, int, int]:
    """(seconds, wall-clock start, CPU seconds of this process, TCP segments sent, TCP
    segments retransmitted) of one allreduce."""
    buf.copy_(src)
    dist.barrier()
    segs0, re0 = _tcp_counters()
    c0, t0, w0 = time.process_time(), time.perf_counter(), time.time()
    dist.all_reduce(buf, group=group)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    segs1, re1 = _tcp_counters()
    return secs, w0, cpu, segs1 - segs0, re1 - re0


def sweep(groups: dict[str, Any], sizes: list[int], reps: list[int],
          warmup: int) -> dict[str, Any]:
    """Both backends, interleaved repetition by repetition (their order alternating), so
    that a noisy neighbour or a drifting clock hits both alike. `warmup` untimed calls of
    the smallest size first open gloo's connections and the switch path."""
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = []
    names = list(groups)
    small = _input(rank, min(sizes, default=4096) // 4)
    for _ in range(warmup):
        for b in names:
            _timed(small.clone(), small, groups[b])  # untimed
    for size, size_reps in zip(sizes, reps, strict=True):
        n = size // 4
        src = _input(rank, n)
        buf = src.clone()
        rec: dict[str, dict[str, list[Any]]] = {
            b: {"times": [], "starts": [], "cpu": [], "packets": [], "retransmitted": []}
            for b in names}
        errs: dict[str, float] = {}
        for i in range(size_reps):
            for b in (names if i % 2 == 0 else names[::-1]):
                secs, w0, cpu, segs, resegs = _timed(buf, src, groups[b])
                stats = _switch_stats() if b == "p4reduce" else None
                if b == "p4reduce" and (stats is None or stats.packets_sent == 0):
                    raise SystemExit("bench_rank: the p4reduce backend did not use the switch")
                if i == 0:  # after the timing: checking costs a sum of every rank's input
                    errs[b] = _check(buf, world, n, b)
                r = rec[b]
                r["times"].append(secs)
                r["starts"].append(w0)
                r["cpu"].append(cpu)
                # p4reduce: agg packets and resends; gloo: TCP segments and retransmissions
                r["packets"].append(stats.packets_sent if stats is not None else segs)
                r["retransmitted"].append(stats.retransmitted if stats is not None else resegs)
        for b in names:
            rows.append({"backend": b, "size": size, "max_rel_error": errs[b], **rec[b]})
        if rank == 0:
            meds = ", ".join(f"{b} {sorted(rec[b]['times'])[size_reps // 2]:.4f} s" for b in names)
            print(f"size {size}: {meds}", flush=True)
    return {"sizes": rows}


def _send_all(sock: socket.socket, size: int) -> None:
    chunk = memoryview(bytes(1 << 20))
    left = size
    while left:
        left -= sock.send(chunk[:min(left, len(chunk))])


def tcp_ring(size: int, reps: int, port: int) -> list[float]:
    """Seconds for this rank to stream `size` bytes to the next rank over one plain TCP
    connection while receiving as many from the previous: a ring's traffic pattern without
    its step-by-step synchronization, so that gloo's time can be set against what TCP
    itself gets through these links and this switch."""
    rank, world = dist.get_rank(), dist.get_world_size()
    ips = os.environ["BENCH_DATA_IPS"].split(",")
    srv = socket.create_server((ips[rank], port))
    dist.barrier()  # every rank listens before any connects
    out = socket.create_connection((ips[(rank + 1) % world], port), timeout=60)
    inc, _ = srv.accept()
    inc.settimeout(60)
    buf = bytearray(1 << 20)
    times = []
    try:
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            sender = threading.Thread(target=_send_all, args=(out, size))
            sender.start()
            got = 0
            while got < size:
                n = inc.recv_into(buf, min(len(buf), size - got))
                if n == 0:
                    raise SystemExit("bench_rank: the TCP ring probe's peer closed early")
                got += n
            sender.join()
            times.append(time.perf_counter() - t0)
    finally:
        for sock in (out, inc, srv):
            sock.close()
    return times


def train(group: Any, steps: int, every: int, batch: int, lr: float,
          seed: int) -> list[dict[str, float]]:
    """The demo's DDP training over `group`, with held-out loss and accuracy every `every`
    steps against the training's wall-clock time (evaluation excluded)."""
    from torch.nn.parallel import DistributedDataParallel

    ex = demo_rank.train_module()  # the example's model, as in the demo
    rank = dist.get_rank()
    model = DistributedDataParallel(ex.make_model(seed), process_group=group)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    w_true = ex.teacher(seed)
    data = torch.Generator().manual_seed(seed * 1000 + rank)
    curve = []
    elapsed = 0.0
    dist.barrier()
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        x, y = ex.batch(w_true, data, batch)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()  # type: ignore[no-untyped-call]
        opt.step()
        elapsed += time.perf_counter() - t0
        if step % every == 0 or step == steps:
            loss, accuracy = demo_rank.held_out(model.module, seed, w_true)
            curve.append({"step": step, "seconds": elapsed, "loss": loss, "accuracy": accuracy})
            if rank == 0:
                print(f"train step {step}/{steps} loss {curve[-1]['loss']:.5f}", flush=True)
    return curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="", help="comma-separated tensor sizes in bytes")
    p.add_argument("--reps", default="3",
                   help="timed repetitions: one number, or one per size (comma-separated)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument("--train", type=int, default=0, help="then train this many steps on each")
    p.add_argument("--every", type=int, default=10, help="evaluate every N training steps")
    p.add_argument("--tcp-ring", type=int, default=0,
                   help="then bytes per rank of a plain TCP ring probe (BENCH_DATA_IPS)")
    p.add_argument("--tcp-port", type=int, default=29400)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    try:
        # p4reduce is the default group; gloo is a second group on the same interface
        # (GLOO_SOCKET_IFNAME: the data link), so both cross the same switch and links
        dist.init_process_group(backend="p4reduce")
        groups = {"p4reduce": dist.group.WORLD, "gloo": dist.new_group(backend="gloo")}
    except (ValueError, RuntimeError) as e:
        print(f"bench_rank: cannot start the process groups: {e}", file=sys.stderr)
        return 1
    sizes = [int(s) for s in args.sizes.split(",") if s]
    reps = [int(r) for r in args.reps.split(",")]
    reps = reps * len(sizes) if len(reps) == 1 else reps
    if len(reps) != len(sizes):
        p.error(f"--reps names {len(reps)} counts for {len(sizes)} sizes")
    result: dict[str, Any] = sweep(groups, sizes, reps, args.warmup)
    if args.tcp_ring:
        result["tcp_ring"] = {"size": args.tcp_ring,
                              "times": tcp_ring(args.tcp_ring, min(reps, default=3),
                                                args.tcp_port)}
    if args.train:
        result["train"] = {b: train(g, args.train, args.every, batch=64, lr=0.05, seed=0)
                           for b, g in groups.items()}
    result.update(rank=dist.get_rank(), world=dist.get_world_size())
    args.out.write_text(json.dumps(result))
    gc.collect()  # the DDP models of `train` hold the groups: freed now, not at exit
    dist.barrier()  # no rank tears down while a peer is still in a collective
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
