"""A p4reduce job on loopback for torch tests: softswitch + controller + N rank processes.

`Cluster` compiles p4src/aggregator.p4, starts `p4reduce-switch` with one UDP tunnel port per
rank and `p4reduce-ctl serve` with a topology that names each rank's host and tunnel, and
hands out the P4REDUCE_* environment a rank needs. `run_ranks` starts ranks as separate
Python processes with torchrun's variables, each running one scenario of this file
(`python torch_harness.py SCENARIO OUT`), and collects what each saved with torch.save.

This module must not import `worker` at top level: scenarios check that the backend
registers itself through torch's entry point.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.paths import ROOT

PY = sys.executable
START_TIMEOUT_S = 60.0


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(RuntimeError):
    pass


def _read_ready(proc: subprocess.Popen[str], marker: str, what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        if "Address already in use" in err:
            raise PortTaken(err)
        raise RuntimeError(f"{what} did not start: {line!r} {err}")
    return line


class Cluster:
    """Softswitch and controller processes for `world` ranks; a context manager."""

    def __init__(self, workdir: Path, world: int, *, drop: float = 0.0, seed: int = 1) -> None:
        self.workdir, self.world = workdir, world
        self.tunnels = [free_port() for _ in range(world)]
        self.procs: list[subprocess.Popen[str]] = []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        build = workdir / "build"
        subprocess.run([PY, "-m", "p4reduce.softswitch.p4.cli", str(ROOT / "p4src" / "aggregator.p4"),
                        "-o", str(build)], check=True, cwd=ROOT, env=env, timeout=120,
                       capture_output=True)
        self._faults = ["--drop", str(drop), "--seed", str(seed)] if drop else []
        self._env, self._build = env, build
        for _ in range(5):
            try:
                self._launch()
                return
            except PortTaken:
                # a free port found by free_port() was taken before the switch bound it
                self.close()
                self.tunnels = [free_port() for _ in range(world)]
        raise RuntimeError("softswitch: no free UDP ports after 5 attempts")

    def _launch(self) -> None:
        env, faults = self._env, self._faults
        build, workdir = self._build, self.workdir
        try:
            # a fixed P4Runtime port, so a restarted switch is found where it was
            self._switch_argv = [PY, "-m", "p4reduce.softswitch.cli", "--grpc-server-addr",
                                 f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
                                 "--log-level", "warn", *faults,
                                 *[a for r, p in enumerate(self.tunnels)
                                   for a in ("-i", f"{r + 1}@udp:127.0.0.1:{p}")]]
            self.switch = self._start(self._switch_argv, env)
            switch_addr = _read_ready(self.switch, "ready", "softswitch").rsplit(" ", 1)[1].strip()
            self.topology = workdir / "topology.json"
            self.topology.write_text(json.dumps({
                "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
                "hosts": [{"name": f"h{r}", "mac": f"02:00:00:00:01:{r + 1:02x}",
                           "ipv4": f"10.0.1.{r + 1}", "port": r + 1,
                           "tunnel": f"127.0.0.1:{p}"} for r, p in enumerate(self.tunnels)],
            }))
            # a fixed API port too, so that ranks find a restarted controller
            self._ctl_argv = [PY, "-m", "p4reduce.controller.cli", "serve", "--switch", switch_addr,
                              "--p4info", str(build / "aggregator.p4info.txtpb"),
                              "--device-config", str(build / "aggregator.json"),
                              "--topology", str(self.topology),
                              "--state", str(workdir / "ctl.db"),
                              "--listen", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"]
            self.ctl = self._start(self._ctl_argv, env)
            line = _read_ready(self.ctl, "controller API on", "controller")
            self.controller = line.split("controller API on ", 1)[1].split(";", 1)[0].strip()
        except BaseException:
            self.close()
            raise

    def restart_controller(self) -> None:
        """kill -9 the controller and start it again (same state file, same API port)."""
        self._kill(self.ctl)
        self.ctl = self._start(self._ctl_argv, self._env)
        _read_ready(self.ctl, "controller API on", "controller")

    def _kill(self, proc: subprocess.Popen[str]) -> None:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self.procs.remove(proc)

    def restart_switch(self) -> None:
        """kill -9 the switch and start it again on the same ports (empty: no pipeline,
        no entries, registers zero), as after a crash; the controller restores it."""
        self._kill(self.switch)
        self.switch = self._start(self._switch_argv, self._env)
        _read_ready(self.switch, "ready", "softswitch")

    def _start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def env(self, job: str | None = None) -> dict[str, str]:
        """P4REDUCE_* variables every rank of one job gets (identical for all, as torchrun)."""
        return {
            "P4REDUCE_CONTROLLER": self.controller,
            "P4REDUCE_TOPOLOGY": str(self.topology),
            "P4REDUCE_JOB": job or f"t-{uuid.uuid4().hex[:12]}",
            "P4REDUCE_TIMEOUT": "20",
        }

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.procs.clear()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_ranks(cluster: Cluster, scenario: str, out: Path, *, timeout: float = 240.0,
              extra_env: dict[str, str] | None = None) -> list[Any]:
    """Run `scenario` in `cluster.world` rank processes; each rank's saved object, by rank."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    base = {**os.environ, "PYTHONPATH": str(ROOT),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port(socket.SOCK_STREAM)),
            "WORLD_SIZE": str(cluster.world), **cluster.env(), **(extra_env or {})}
    procs = [subprocess.Popen([PY, __file__, scenario, str(out / f"rank{r}.pt")],
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(cluster.world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for r, p in enumerate(procs):
        if p.returncode != 0:
            raise AssertionError(f"rank {r} exited with {p.returncode}:\n{logs[r][-4000:]}")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(cluster.world)]


# ---------------------------------------------------------------------------------------
# Scenarios: run inside the rank processes.

SCENARIOS: dict[str, Callable[[], Any]] = {}


def scenario(fn: Callable[[], Any]) -> Callable[[], Any]:
    SCENARIOS[fn.__name__] = fn
    return fn


def main(argv: list[str]) -> int:
    import torch

    name, out = argv
    result = SCENARIOS[name]()
    torch.save(result, out)
    return 0


DTYPES = ("float32", "float16", "bfloat16", "int32")
OPS = ("SUM", "AVG")


def rank_input(dtype_name: str, rank: int, n: int = 1000) -> Any:
    """Rank `rank`'s input tensor; the test rebuilds every rank's from the same seed."""
    import torch

    g = torch.Generator().manual_seed(1000 * rank + DTYPES.index(dtype_name))
    if dtype_name == "int32":
        return torch.randint(-(2**20), 2**20, (n,), dtype=torch.int32, generator=g)
    x = torch.randn(n, generator=g, dtype=torch.float32) * torch.logspace(-2, 2, n)
    return x.to(getattr(torch, dtype_name))


@scenario
def collectives() -> dict[str, Any]:
    import threading
    import warnings

    import torch
    import torch.distributed as dist

    autoloaded = "p4reduce.worker.torch" in sys.modules  # put there by torch's entry point only
    dist.init_process_group(backend="p4reduce")
    rank, world = dist.get_rank(), dist.get_world_size()
    gloo = dist.new_group(backend="gloo")
    world_group = dist.group.WORLD
    assert world_group is not None
    res: dict[str, Any] = {"autoloaded": autoloaded, "backend": dist.get_backend(),
                           "group_type": type(world_group).__name__,
                           "names": (world_group.name(), world_group._get_backend_name())}
    for dtype_name in DTYPES:
        x = rank_input(dtype_name, rank)
        for op_name in OPS:
            a = x.clone()
            dist.all_reduce(a, op=getattr(dist.ReduceOp, op_name))
            b = x.clone()
            dist.all_reduce(b, group=gloo)  # gloo has no AVG: the test divides
            res[f"{dtype_name}/{op_name}"] = (a, b)
    # several tensors of several dtypes in one call
    many = [rank_input("float32", rank, 300), rank_input("float16", rank, 50),
            rank_input("int32", rank, 70), rank_input("float32", rank, 15).view(3, 5),
            rank_input("bfloat16", rank, 9)]
    ref = [t.clone() for t in many]
    world_group.allreduce_coalesced(many, dist.AllreduceCoalescedOptions()).wait()
    for t in ref:
        dist.all_reduce(t, group=gloo)
    res["coalesced"] = (many, ref)
    # async: several in flight, waited in reverse order
    xs = [rank_input("float32", rank, 200 + 10 * i) for i in range(4)]
    works = [dist.all_reduce(t, async_op=True) for t in xs]
    for w in reversed(works):
        w.wait()
    refs = [rank_input("float32", rank, 200 + 10 * i) for i in range(4)]
    for t in refs:
        dist.all_reduce(t, group=gloo)
    res["async"] = (xs, refs)
    # fallbacks to gloo, with their warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = torch.tensor([float(rank), -float(rank)])
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
        i64 = torch.tensor([2**40 + rank], dtype=torch.int64)
        dist.all_reduce(i64)
        bc = torch.tensor([float(rank + 7)])
        dist.broadcast(bc, src=1)
        gathered = [torch.zeros(2) for _ in range(world)]
        dist.all_gather(gathered, torch.tensor([float(rank), 1.0]))
        dist.barrier()
        f64 = torch.tensor([1.0, -4.0], dtype=torch.float64) * (rank + 1)
        dist.all_reduce(f64, op=dist.ReduceOp.AVG)  # float64 is not sent to the switch
        res["f64_avg"] = f64
        sub = dist.new_group(backend="p4reduce")  # a second p4reduce group: gloo inside
        s = torch.full((5,), float(rank))
        dist.all_reduce(s, group=sub)
    res["subgroup"] = s
    res["fallback"] = (m, i64, bc, gathered, [str(w.message) for w in caught])
    # an error on the switch path surfaces in wait(); the group stays usable
    bad = torch.ones(500)
    if rank == 1:
        bad[123] = float("nan")
    work = dist.all_reduce(bad, async_op=True)
    try:
        work.wait()
        res["error"] = None
    except Exception as e:
        res["error"] = (type(e).__name__, str(e))
    after = torch.full((64,), float(rank + 1))
    dist.all_reduce(after)
    res["after_error"] = after
    # a rank that does not take part and leaves: the others' allreduce fails, raised by wait()
    if rank != 2:
        lonely = torch.ones(300)
        work = dist.all_reduce(lonely, async_op=True)
        try:
            work.wait()
            res["timeout"] = None
        except Exception as e:
            res["timeout"] = (type(e).__name__, str(e))
    dist.destroy_process_group()
    res["threads_after"] = [t.name for t in threading.enumerate() if "p4reduce" in t.name]
    return res


STEPS = 50


def _model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))


def _train(ddp: Any, rank: int) -> list[float]:
    """STEPS of SGD on this rank's own synthetic regression data."""
    import torch

    g = torch.Generator().manual_seed(rank)
    w_true = torch.randn(16, 4, generator=torch.Generator().manual_seed(99))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    losses = []
    for _ in range(STEPS):
        x = torch.randn(32, 16, generator=g)
        y = x @ w_true + 0.1 * torch.randn(32, 4, generator=g)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss))
    return losses


def _params(model: Any) -> list[Any]:
    return [p.detach().clone() for p in model.parameters()]


@scenario
def ddp() -> dict[str, Any]:
    """The same model trained with DDP on the p4reduce group and on a gloo group."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group(backend="p4reduce")
    rank = dist.get_rank()
    gloo = dist.new_group(backend="gloo")
    base = _model()
    m_sw, m_gl = copy.deepcopy(base), copy.deepcopy(base)
    # a small bucket cap: several buckets in flight per step
    losses_sw = _train(DDP(m_sw, bucket_cap_mb=0.001), rank)
    losses_gl = _train(DDP(m_gl, process_group=gloo, bucket_cap_mb=0.001), rank)
    gc.collect()  # the DDP models hold the groups: freed now, not at exit
    dist.barrier()  # leave together: gloo can abort a rank whose peer left first
    dist.destroy_process_group()
    return {"switch": _params(m_sw), "gloo": _params(m_gl), "losses": (losses_sw, losses_gl)}


@scenario
def ddp_hook() -> dict[str, Any]:
    """gloo stays the default group; only gradients go through the switch, via the hook."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from p4reduce.worker.torch import HookState, allreduce_hook

    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()
    base = _model()
    m_sw, m_gl = copy.deepcopy(base), copy.deepcopy(base)
    state = HookState.from_env()
    d_sw = DDP(m_sw)
    d_sw.register_comm_hook(state, allreduce_hook)
    losses_sw = _train(d_sw, rank)
    losses_gl = _train(DDP(m_gl), rank)
    state.close()
    gc.collect()  # the DDP models hold the groups: freed now, not at exit
    dist.barrier()  # leave together: gloo can abort a rank whose peer left first
    dist.destroy_process_group()
    return {"switch": _params(m_sw), "gloo": _params(m_gl), "losses": (losses_sw, losses_gl)}


@scenario
def host_only() -> dict[str, Any]:
    """The switch has no room for this job: allreduce still works, through gloo."""
    import warnings

    import torch
    import torch.distributed as dist

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist.init_process_group(backend="p4reduce")
        rank = dist.get_rank()
        sums = []
        for i in range(3):
            t = torch.full((100,), float(rank + i))
            dist.all_reduce(t)
            sums.append(t[0].item())
        avg = torch.full((10,), float(rank))
        dist.all_reduce(avg, op=dist.ReduceOp.AVG)
        group = dist.group.WORLD
        engine = getattr(group, "engine", None)
        host_only = bool(engine is not None and engine.host_only)
        dist.barrier()
        dist.destroy_process_group()
    return {"sums": sums, "avg": avg[0].item(), "host_only": host_only,
            "warnings": [str(w.message) for w in caught if "p4reduce" in str(w.message)]}


@scenario
def hook_host_only() -> dict[str, Any]:
    """The DDP hook of a job the switch has no room for: gradients on the default group."""
    import copy
    import warnings

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from p4reduce.worker.torch import HookState, allreduce_hook

    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()
    base = _model()
    m_hook, m_plain = copy.deepcopy(base), copy.deepcopy(base)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = HookState.from_env()
    d_hook = DDP(m_hook)
    d_hook.register_comm_hook(state, allreduce_hook)
    _train(d_hook, rank)
    _train(DDP(m_plain), rank)
    host_only = state.engine.host_only
    state.close()
    gc.collect()  # the DDP models hold the groups: freed now, not at exit
    dist.barrier()
    dist.destroy_process_group()
    return {"hook": _params(m_hook), "plain": _params(m_plain), "host_only": host_only,
            "warnings": [str(w.message) for w in caught if "p4reduce" in str(w.message)]}


@scenario
def bench() -> dict[str, float]:
    """Seconds per float32 allreduce of BENCH_ELEMS elements, switch vs gloo (not a test)."""
    import time

    import torch
    import torch.distributed as dist

    dist.init_process_group(backend="p4reduce")
    gloo = dist.new_group(backend="gloo")
    n = int(os.environ.get("BENCH_ELEMS", "262144"))
    x = torch.randn(n)
    out: dict[str, float] = {}
    for name, group in (("p4reduce", None), ("gloo", gloo)):
        dist.all_reduce(x.clone(), group=group)
        dist.barrier(group=gloo)
        t0 = time.perf_counter()
        for _ in range(5):
            dist.all_reduce(x.clone(), group=group)
        out[name] = (time.perf_counter() - t0) / 5
    dist.destroy_process_group()
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
