"""Worker benchmarks: the packet engine's cost per packet, C and Python side by side, and
allreduce on loopback beside gloo.

"worker CPU us/packet" is the worker thread's own CPU time per packet sent (first sends
and resends), the figure to compare across runs on a shared machine; elapsed times and
goodputs move with the machine's load, so quote ratios from one run only.

* in-memory echo: every packet comes back at once as its own result (a one-worker job):
  the engine alone, without sockets (C: its built-in echo; Python: a list transport).
* kernel UDP echo: the same through loopback sockets, answered by a minimal C echo
  (`cs_echo_serve`) in a thread of this process: the engine with its system calls.
* loopback: W worker processes through aggregator.p4 on a softswitch process (UDP
  tunnel ports), and W gloo processes (torch.distributed over TCP) on the same machine,
  timing the same sizes in the same run. The switch is the softswitch's current
  backend, so until it is native these rows measure the switch as much as the workers.

    python -m bench.bench_worker [--full] [--only echo,udp,loopback]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from p4reduce.worker import Communicator, JobSpec, quant, wire
from p4reduce.worker.transport import NativeIo

ROOT = Path(__file__).resolve().parent.parent

KB = 1024
MB = 1024 * KB


def _size(n: int) -> str:
    return f"{n // MB} MB" if n >= MB else f"{n // KB} KB"


# --------------------------------------------------------------------------------------
# block floating point kernels
# --------------------------------------------------------------------------------------


def bench_quant(n_bytes: int = 16 * MB, repeat: int = 5, k: int = 256) -> list[dict[str, Any]]:
    """numpy (worker/quant.py) and the C engine's kernels on one tensor, best of a few."""
    x = np.random.default_rng(0).standard_normal(n_bytes // 4).astype(np.float32)
    shift = quant.shift_for(4)
    best_q = best_d = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        blocks = quant.to_blocks(x, k)
        exps = quant.block_exponents(blocks)
        q = quant.quantize(blocks, exps, shift)
        t1 = time.perf_counter()
        quant.dequantize_f32(q, exps, shift)
        t2 = time.perf_counter()
        best_q, best_d = min(best_q, t1 - t0), min(best_d, t2 - t1)
    mb = n_bytes / 1e6
    rows = [{"what": "quantize float32 (exponents + int32)", "engine": "python", "MB": round(mb, 1),
             "MB/s": mb / best_q},
            {"what": "dequantize to float32", "engine": "python", "MB": round(mb, 1),
             "MB/s": mb / best_d}]
    try:
        from p4reduce.worker import cstream

        nat = cstream.load()
    except Exception as e:  # no compiler: the Python rows stand alone
        print(f"bench_worker: C kernels not measured: {e}", file=sys.stderr)
        return rows
    ffi, lib = nat.ffi, nat.lib
    exps = np.empty(x.size // k, dtype=np.int8)
    qc = np.empty(x.size, dtype=np.int32)
    out = np.empty(x.size, dtype=np.float32)
    best_q = best_d = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        lib.cs_block_exponents(cstream.CS_T_F32, ffi.from_buffer(x), x.size, k,
                               ffi.from_buffer("int8_t[]", exps))
        lib.cs_quantize(cstream.CS_T_F32, ffi.from_buffer(x), x.size, k,
                        ffi.from_buffer("int8_t[]", exps), shift, ffi.from_buffer("int32_t[]", qc))
        t1 = time.perf_counter()
        lib.cs_dequantize(cstream.CS_T_F32, ffi.from_buffer("int32_t[]", qc), x.size, k,
                          ffi.from_buffer("int8_t[]", exps), shift, ffi.from_buffer(out))
        t2 = time.perf_counter()
        best_q, best_d = min(best_q, t1 - t0), min(best_d, t2 - t1)
    rows += [{"what": "quantize float32 (exponents + int32)", "engine": "c", "MB": round(mb, 1),
              "MB/s": mb / best_q},
             {"what": "dequantize to float32", "engine": "c", "MB": round(mb, 1),
              "MB/s": mb / best_d}]
    return rows


# --------------------------------------------------------------------------------------
# one worker against an echo
# --------------------------------------------------------------------------------------


class MemoryEcho:
    """What a switch with a one-worker job answers: each packet back as its own result.
    The Python engine gets the results as a list; the C engine echoes inside itself
    (`native_io` mode "echo"), so no Python runs per batch."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def native_io(self) -> NativeIo:
        return NativeIo("echo")

    def send(self, payloads: list[bytes]) -> None:
        self.queue.extend(bytes([p[0] | wire.FLAG_RESULT]) + p[1:] for p in payloads)

    def recv(self, timeout: float) -> list[bytes]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        pass


def _timed_calls(comm: Communicator, x: np.ndarray, repeat: int) -> tuple[float, float, int]:
    """Best elapsed and best thread CPU of `repeat` calls, and the packets of one call."""
    comm.allreduce(x[:64])
    elapsed = cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = time.thread_time(), time.perf_counter()
        comm.allreduce(x)
        elapsed = min(elapsed, time.perf_counter() - t0)
        cpu = min(cpu, time.thread_time() - c0)
    stats = comm.last_stats
    assert stats is not None
    return elapsed, cpu, stats.packets_sent


def bench_echo(engine: str, k: int, nbytes: int = 4 * MB, slots: int = 64,
               repeat: int = 5) -> dict[str, Any]:
    """Best of a few calls: the worker's cost per packet, which a busy shared machine can
    only make look worse."""
    x = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    comm = Communicator(JobSpec(1, 0, 1, slots, k=k, tunnel_port=1), MemoryEcho(), engine=engine)
    elapsed, cpu, packets = _timed_calls(comm, x, repeat)
    return {"what": "allreduce, in-memory echo (worker alone), 1 worker", "engine": engine,
            "MB": round(nbytes / 1e6, 1), "K": k, "MB/s": nbytes / elapsed / 1e6,
            "packets/s per worker": packets / elapsed, "worker CPU us/packet": cpu / packets * 1e6}


def _echo_server(framing: int) -> tuple[socket.socket, Any, threading.Thread, list[int]]:
    from p4reduce.worker import cstream

    nat = cstream.load()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    srv.bind(("127.0.0.1", 0))
    stop = nat.ffi.new("int32_t *", 0)
    answered: list[int] = []
    th = threading.Thread(target=lambda: answered.append(
        nat.lib.cs_echo_serve(srv.fileno(), framing, 600.0, stop)), daemon=True)
    th.start()
    return srv, stop, th, answered


def bench_udp_echo(engine: str, k: int, workers: int, nbytes: int = 4 * MB, slots: int = 64,
                   repeat: int = 5) -> dict[str, Any]:
    """`workers` worker threads at once, each against its own C echo over kernel UDP."""
    from p4reduce.worker import cstream

    servers = [_echo_server(cstream.CS_FRAME_NONE) for _ in range(workers)]
    x = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    results: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * workers
    try:
        comms = [Communicator(JobSpec(1, 0, 1, slots, k=k, switch_ip="127.0.0.1",
                                      switch_port=srv.getsockname()[1], local_ip="127.0.0.1",
                                      transport="udp"), engine=engine, timeout_s=60)
                 for srv, *_ in servers]

        def body(i: int) -> None:
            results[i] = _timed_calls(comms[i], x, repeat)

        threads = [threading.Thread(target=body, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in comms:
            c.close()
    finally:
        for srv, stop, th, _ in servers:
            stop[0] = 1
            th.join()
            srv.close()
    elapsed = max(r[0] for r in results)
    packets = results[0][2]
    return {"what": f"allreduce, kernel UDP to a C echo, {workers} worker(s) at once",
            "engine": engine, "MB": round(nbytes / 1e6, 1), "K": k,
            "MB/s": nbytes / elapsed / 1e6, "packets/s per worker": packets / elapsed,
            "worker CPU us/packet": statistics.mean(r[1] for r in results) / packets * 1e6}


# --------------------------------------------------------------------------------------
# loopback: worker processes through the softswitch, and gloo
# --------------------------------------------------------------------------------------


def _switch_mac() -> str:
    return "02:00:00:00:00:fe"


def _worker_addr(rank: int) -> tuple[str, str, int]:
    return f"02:00:00:00:02:{rank + 1:02x}", f"10.0.3.{rank + 1}", 40000 + rank


def serve_switch(world: int, slots: int, k: int) -> None:
    """(subprocess) aggregator.p4 with NUM_LANES=k on UDP tunnel ports, one job installed
    as the controller would; prints the ports as one JSON line, runs until stdin closes."""
    from p4reduce import contract as n
    from p4reduce.softswitch.p4.frontend import compile_file
    from p4reduce.softswitch.runtime import Device, Pipeline, parse_port_spec
    from p4reduce.softswitch.runtime.control import ActionCall, Exact, Replica, TableEntry

    def ip(a: str) -> int:
        return int.from_bytes(socket.inet_aton(a), "big")

    pipe = Pipeline(compile_file(ROOT / "p4src" / "aggregator.p4", {"NUM_LANES": str(k)}))
    dev = Device()
    dev.set_pipeline(pipe)
    ports = []
    for w in range(world):
        number, port = parse_port_spec(f"{w + 1}@udp:127.0.0.1:0")
        ports.append(port.address)  # type: ignore[attr-defined]
        dev.add_port(number, port)
    job, group = 7, n.JOB_MCAST_BASE + 7
    pipe.table_insert(n.TABLE_JOBS.name, TableEntry((Exact(job),), ActionCall(
        n.ACTION_SET_JOB.name, (0, slots, world, group, 1))))
    for w in range(world):
        mac, addr, port_no = _worker_addr(w)
        pipe.table_insert(n.TABLE_MEMBERS.name, TableEntry(
            (Exact(job), Exact(w), Exact(ip(addr))), ActionCall(n.ACTION_MEMBER_OK.name)))
        pipe.table_insert(n.TABLE_RESULT_REWRITE.name, TableEntry(
            (Exact(job), Exact(w)), ActionCall(n.ACTION_SET_WORKER_ADDR.name, (
                int(mac.replace(":", ""), 16), ip(addr), port_no))))
    pipe.mc_group_set(group, tuple(Replica(w + 1, w) for w in range(world)))
    dev.start()
    print(json.dumps({"ports": [p[1] for p in ports]}), flush=True)
    try:
        sys.stdin.read()
    finally:
        dev.stop()


def _rank_times(comm_call: Any, sizes: list[int], reps: dict[int, int]) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        x = np.random.default_rng(n).standard_normal(n // 4).astype(np.float32)
        comm_call(x)  # warm-up (and the RTT estimate)
        times, cpu = [], []
        for _ in range(reps[n]):
            c0, t0 = time.thread_time(), time.perf_counter()
            comm_call(x)
            times.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        out.append({"size": n, "times": times, "cpu": cpu})
    return out


def rank_main(rank: int, world: int, slots: int, k: int, tunnel_port: int, engine: str,
              sizes: list[int], reps: dict[int, int]) -> None:
    """(subprocess) one p4reduce rank: per-call times of every size, as one JSON line."""
    mac, addr, port = _worker_addr(rank)
    job = JobSpec(7, rank, world, slots, k=k, switch_mac=_switch_mac(), switch_ip="10.0.0.254",
                  local_mac=mac, local_ip=addr, local_port=port, tunnel_port=tunnel_port)
    comm = Communicator(job, timeout_s=120, engine=engine)  # type: ignore[arg-type]
    packets: dict[int, int] = {}

    def call(x: np.ndarray) -> None:
        comm.allreduce(x)
        assert comm.last_stats is not None
        packets[x.nbytes] = comm.last_stats.packets_sent

    rows = _rank_times(call, sizes, reps)
    for r in rows:
        r["packets"] = packets[r["size"]]
    comm.close()
    print(json.dumps(rows), flush=True)


def gloo_main(rank: int, world: int, port: int, sizes: list[int], reps: dict[int, int]) -> None:
    """(subprocess) one gloo rank over TCP on loopback, the same timing as rank_main."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)

    def call(x: np.ndarray) -> None:
        dist.all_reduce(torch.from_numpy(x))

    rows = _rank_times(call, sizes, reps)
    dist.destroy_process_group()
    print(json.dumps(rows), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_ranks(argvs: list[list[str]], timeout: float = 600) -> list[list[dict[str, Any]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "bench.bench_worker", *a], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in argvs]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"bench rank failed ({p.returncode}): {err.strip().splitlines()[-1:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def _rows(name: str, per_rank: list[list[dict[str, Any]]], world: int, k: int | None,
          slots: int | None) -> list[dict[str, Any]]:
    rows = []
    for i, first in enumerate(per_rank[0]):
        n = first["size"]
        # a call ends when its slowest rank has its result: per call, the max over ranks
        per_call = [max(r[i]["times"][j] for r in per_rank) for j in range(len(first["times"]))]
        med = statistics.median(per_call)
        row: dict[str, Any] = {"what": "allreduce on loopback", "engine": name,
                               "workers": world, "size": _size(n)}
        if k is not None:
            row.update({"K": k, "slots": slots})
        row.update({"ms per call (median)": med * 1e3, "MB/s": n / med / 1e6})
        if "packets" in first:
            cpu = statistics.mean(statistics.median(r[i]["cpu"]) for r in per_rank)
            row["worker CPU us/packet"] = cpu / first["packets"] * 1e6
        rows.append(row)
    return rows


def bench_loopback(world: int = 4, sizes: tuple[int, ...] = (4 * KB, 64 * KB, 4 * MB),
                   slots: int = 128, k: int = 256, engines: tuple[str, ...] = ("c", "python"),
                   gloo: bool = True) -> list[dict[str, Any]]:
    reps = {n: (200 if n <= 4 * KB else 50 if n <= 64 * KB else 5) for n in sizes}
    size_arg = ",".join(str(n) for n in sizes)
    rep_arg = ",".join(str(reps[n]) for n in sizes)
    rows: list[dict[str, Any]] = []
    for engine in engines:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sw = subprocess.Popen([sys.executable, "-m", "bench.bench_worker", "--serve-switch",
                               str(world), str(slots), str(k)], cwd=ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert sw.stdout is not None and sw.stdin is not None
            ports = json.loads(sw.stdout.readline())["ports"]
            per_rank = _run_ranks([["--rank", str(r), str(world), str(slots), str(k),
                                    str(ports[r]), engine, size_arg, rep_arg]
                                   for r in range(world)])
        finally:
            if sw.stdin is not None:
                sw.stdin.close()
            sw.wait(timeout=30)
        rows += _rows(f"p4reduce ({engine}), softswitch", per_rank, world, k, slots)
    if gloo:
        port = _free_port()
        per_rank = _run_ranks([["--gloo-rank", str(r), str(world), str(port), size_arg, rep_arg]
                               for r in range(world)])
        gloo_rows = _rows("gloo (ring over TCP)", per_rank, world, None, None)
        gloo_ms = {r["size"]: r["ms per call (median)"] for r in gloo_rows}
        for r in rows:  # the yardstick: a call's time as a multiple of gloo's
            r["time / gloo"] = r["ms per call (median)"] / gloo_ms[r["size"]]
        rows += gloo_rows
    return rows


def run(full: bool = False, only: tuple[str, ...] = ("kernels", "echo", "udp", "loopback")
        ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "kernels" in only:
        rows += bench_quant()
    if "echo" in only:
        rows += [bench_echo(engine, k) for k in (64, 256) for engine in ("c", "python")]
    if "udp" in only:
        rows += [bench_udp_echo(engine, 256, w) for w in (1, 4) for engine in ("c", "python")]
    if "loopback" in only:
        sizes = (4 * KB, 64 * KB, 4 * MB) + ((16 * MB,) if full else ())
        rows += bench_loopback(4, sizes)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also 16 MB on loopback")
    parser.add_argument("--only", default="kernels,echo,udp,loopback",
                        help="comma-separated parts: kernels, echo, udp, loopback")
    parser.add_argument("--serve-switch", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rank", nargs=8, help=argparse.SUPPRESS)
    parser.add_argument("--gloo-rank", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_switch:
        serve_switch(*args.serve_switch)
        return
    if args.rank:
        r, w, s, k, tp, engine, sizes, reps = args.rank
        size_list = [int(x) for x in sizes.split(",")]
        rank_main(int(r), int(w), int(s), int(k), int(tp), engine, size_list,
                  dict(zip(size_list, (int(x) for x in reps.split(",")), strict=True)))
        return
    if args.gloo_rank:
        r, w, port, sizes, reps = args.gloo_rank
        size_list = [int(x) for x in sizes.split(",")]
        gloo_main(int(r), int(w), int(port), size_list,
                  dict(zip(size_list, (int(x) for x in reps.split(",")), strict=True)))
        return
    rows = run(full=args.full, only=tuple(args.only.split(",")))
    keys = list(dict.fromkeys(k for row in rows for k in row))
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                         for k in keys))


if __name__ == "__main__":
    main()
