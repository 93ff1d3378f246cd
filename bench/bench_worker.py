"""Worker benchmarks: block floating point speed, and allreduce goodput on loopback.

Quantization is measured on whole tensors (the vectorized kernels, best of a few runs on
one core). "worker CPU us/packet" is the worker threads' own CPU time per packet sent, the
figure to compare across runs on a shared machine. Allreduce runs W worker threads against the reference switch model served over
UDP tunnel ports in the same process, so the figures are those of a Python switch and
Python workers sharing the GIL: useful to compare sizes and windows with each other, not
as network numbers. `--softswitch` runs them through aggregator.p4 on the softswitch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from p4reduce.worker import Communicator, JobSpec, quant, wire

ROOT = Path(__file__).resolve().parent.parent

KB = 1024
MB = 1024 * KB


def bench_quant(n_bytes: int = 16 * MB, repeat: int = 5) -> list[dict[str, Any]]:
    x = np.random.default_rng(0).standard_normal(n_bytes // 4).astype(np.float32)
    shift = quant.shift_for(4)
    best_q = best_d = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        blocks = quant.to_blocks(x, 64)
        exps = quant.block_exponents(blocks)
        q = quant.quantize(blocks, exps, shift)
        t1 = time.perf_counter()
        quant.dequantize_f32(q, exps, shift)
        t2 = time.perf_counter()
        best_q, best_d = min(best_q, t1 - t0), min(best_d, t2 - t1)
    mb = n_bytes / 1e6
    return [{"what": "quantize float32 (exponents + int32)", "MB": round(mb, 1),
             "MB/s": mb / best_q},
            {"what": "dequantize to float32", "MB": round(mb, 1), "MB/s": mb / best_d},
            {"what": "quantize + dequantize", "MB": round(mb, 1), "MB/s": mb / (best_q + best_d)}]


class _InMemorySwitch:
    """A transport that hands packets straight to a one-worker reference switch: what is
    left is the worker's own cost per packet (plus the model's), without sockets."""

    def __init__(self, slots: int, k: int = 64) -> None:
        from tests.support.refswitch import RefSwitch

        self.switch = RefSwitch(k=k)
        self.switch.add_job(1, slots, 1)
        self.queue: list[bytes] = []

    def send(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.queue.extend(out for _, out in self.switch.handle(0, p))

    def recv(self, timeout: float) -> list[bytes]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        pass


class _Echo:
    """What a switch with a one-worker job answers: each packet back as its own result.
    No model runs, so what is measured is the worker alone (and the bytes objects of
    this list-based transport)."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def send(self, payloads: list[bytes]) -> None:
        self.queue.extend(bytes([p[0] | wire.FLAG_RESULT]) + p[1:] for p in payloads)

    def recv(self, timeout: float) -> list[bytes]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        pass


def bench_worker_only(nbytes: int = 4 * MB, slots: int = 64, k: int = 64, repeat: int = 3,
                      echo: bool = False) -> dict[str, Any]:
    """Best of a few calls: the figure is the worker's cost per packet, which a busy
    shared machine can only make look worse."""
    x = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    switch: Any = _Echo() if echo else _InMemorySwitch(slots, k)
    comm = Communicator(JobSpec(1, 0, 1, slots, k=k, tunnel_port=1), switch)
    comm.allreduce(x[:64])
    elapsed = cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = time.thread_time(), time.perf_counter()
        comm.allreduce(x)
        elapsed = min(elapsed, time.perf_counter() - t0)
        cpu = min(cpu, time.thread_time() - c0)
    stats = comm.last_stats
    assert stats is not None
    what = "in-memory echo (worker alone)" if echo else "in-memory switch model"
    return {"what": f"allreduce, {what}, 1 worker", "MB": round(nbytes / 1e6, 1),
            "MB/s": nbytes / elapsed / 1e6, "packets/s per worker": stats.packets_sent / elapsed,
            "K": k, "worker CPU us/packet": cpu / stats.packets_sent * 1e6}


def _allreduce_row(world: int, slots: int, nbytes: int, softswitch: bool,
                   k: int = 64) -> dict[str, Any]:
    from tests.e2e.test_worker_e2e import run_ranks

    arrays = [np.random.default_rng(r).standard_normal(max(1, nbytes // 4)).astype(np.float32)
              for r in range(world)]
    if softswitch:
        from tests.support.softswitch_job import SoftswitchJob

        ctx: Any = SoftswitchJob(7, world, slots)
        specs = [ctx.spec(r) for r in range(world)]
    else:
        from tests.support.refswitch import RefSwitch, RefSwitchServer

        ref = RefSwitch(k=k)
        ref.add_job(7, slots, world)
        ctx = RefSwitchServer(ref, world)
        specs = [JobSpec(7, r, world, slots, k=k, local_ip=f"10.0.0.{r + 1}",
                         tunnel_port=ctx.addresses[r][1]) for r in range(world)]
    with ctx:
        comms = [Communicator(s, timeout_s=60) for s in specs]
        try:
            run_ranks(comms, lambda r, c: c.allreduce(arrays[r][:64]))  # warm up, RTT estimate
            cpu = [0.0] * world

            def timed(r: int, c: Communicator) -> Any:
                c0 = time.thread_time()
                try:
                    return c.allreduce(arrays[r])
                finally:
                    cpu[r] = time.thread_time() - c0

            t0 = time.perf_counter()
            results = run_ranks(comms, timed)
            elapsed = time.perf_counter() - t0
        finally:
            for c in comms:
                c.close()
    for res in results:
        if isinstance(res, BaseException):
            raise res
    stats = comms[0].last_stats
    assert stats is not None
    return {"switch": "aggregator.p4/softswitch" if softswitch else "refswitch",
            "workers": world, "slots": slots, "K": k, "size": _size(nbytes),
            "goodput MB/s": arrays[0].nbytes / elapsed / 1e6,
            "packets/s per worker": stats.packets_sent / elapsed,
            "retransmitted": stats.retransmitted, "elapsed s": elapsed,
            # the worker threads' own CPU (the switch runs in another thread): what a
            # loaded machine does not inflate as much as the elapsed time
            "worker CPU us/packet": sum(cpu) / sum(c.last_stats.packets_sent for c in comms
                                            if c.last_stats is not None) * 1e6}


def _size(n: int) -> str:
    return f"{n // MB} MB" if n >= MB else f"{n // KB} KB"


def run(full: bool = False, softswitch: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [*bench_quant()]
    rows += [bench_worker_only(k=k, echo=echo) for echo in (False, True) for k in (64, 256)]
    sizes = [KB, 16 * KB, 256 * KB, MB, 4 * MB] + ([16 * MB, 64 * MB] if full else [])
    for world in (2, 4):
        for nbytes in sizes:
            rows.append(_allreduce_row(world, 64, nbytes, softswitch))
        for slots in (8, 32, 128, 512):
            rows.append(_allreduce_row(world, slots, 256 * KB, softswitch))
        if not softswitch:  # 1 KB packets, as the Mininet benchmark's NUM_LANES=256 switch
            for nbytes in (256 * KB, 4 * MB):
                rows.append(_allreduce_row(world, 64, nbytes, False, k=256))
    if not softswitch:  # a few rows through the real P4 program for comparison
        for world in (2, 4):
            rows.append(_allreduce_row(world, 64, 256 * KB, True))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="tensor sizes up to 64 MB")
    parser.add_argument("--softswitch", action="store_true",
                        help="through aggregator.p4 on the softswitch instead of the reference model")
    args = parser.parse_args()
    rows = run(full=args.full, softswitch=args.softswitch)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                         for k in keys))


if __name__ == "__main__":
    main()
