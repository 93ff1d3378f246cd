"""Real worker processes (multiprocessing spawn) against the reference switch."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from typing import Any

import numpy as np
import pytest

from p4reduce.worker import Communicator, JobSpec
from tests.support.refswitch import Faults, RefSwitch, RefSwitchServer
from tests.support.softswitch_job import SoftswitchJob

JOB = 9


def data(rank: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rank)
    return (rng.standard_normal(3000).astype(np.float32),
            rng.integers(-(2**31), 2**31, 2000, dtype=np.int64).astype(np.int32))


def rank_main(job: JobSpec, timeout_s: float, out: Any) -> None:
    try:
        with Communicator(job, timeout_s=timeout_s) as comm:
            f, i = data(job.rank)
            out.put((job.rank, comm.allreduce(f), comm.allreduce(i)))
    except Exception as exc:
        out.put((job.rank, type(exc).__name__, str(exc)))


def rank_loop(job: JobSpec, timeout_s: float, out: Any) -> None:
    """Allreduce over and over, reporting after the first call, until something fails."""
    try:
        with Communicator(job, timeout_s=timeout_s) as comm:
            for i in range(100_000):
                comm.allreduce(np.full(500, i, np.int32))
                if i == 0:
                    out.put((job.rank, "progress", ""))
    except Exception as exc:
        out.put((job.rank, type(exc).__name__, str(exc)))


def sleeper() -> None:
    time.sleep(60)


def spec(srv: RefSwitchServer, rank: int, world: int, slots: int) -> JobSpec:
    return JobSpec(JOB, rank, world, slots, local_ip=f"10.0.2.{rank + 1}",
                   tunnel_port=srv.addresses[rank][1])


def collect(out: Any, n: int) -> dict[int, tuple[Any, Any]]:
    got = {}
    for _ in range(n):
        rank, a, b = out.get(timeout=60)
        got[rank] = (a, b)
    return got


@pytest.mark.timeout(120)
@pytest.mark.parametrize("switch", ["refswitch", "aggregator.p4"])
def test_four_processes_bit_exact_ints_and_bounded_floats(switch: str) -> None:
    world, slots = 4, 16
    faults = Faults(drop=0.02, duplicate=0.02, reorder=0.05, seed=4)
    server: Any
    if switch == "refswitch":
        sw = RefSwitch()
        sw.add_job(JOB, slots, world)
        server = RefSwitchServer(sw, world, faults)
        specs = [spec(server, r, world, slots) for r in range(world)]
    else:
        server = SoftswitchJob(JOB, world, slots, drop=faults.drop, duplicate=faults.duplicate,
                               reorder=faults.reorder, seed=faults.seed)
        specs = [server.spec(r) for r in range(world)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with server:
        procs = [ctx.Process(target=rank_main, args=(specs[r], 30.0, out)) for r in range(world)]
        for p in procs:
            p.start()
        try:
            got = collect(out, world)
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
    floats = [data(r)[0] for r in range(world)]
    ints = [data(r)[1] for r in range(world)]
    want_i = np.sum(ints, axis=0, dtype=np.int32)
    exact = np.sum(np.stack(floats).astype(np.float64), axis=0)
    for r in range(world):
        f, i = got[r]
        assert isinstance(f, np.ndarray), got[r]
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(f, got[0][0])
        # documented bound with the tensor-wide max (looser than per chunk), plus float32 rounding
        m = np.abs(np.stack(floats)).max()
        assert np.all(np.abs(f - exact) <= world * 2.0**-28 * m + 2.0**-23 * np.abs(exact))


@pytest.mark.timeout(120)
def test_killing_a_worker_fails_the_others_within_the_bound() -> None:
    world, slots = 3, 8
    sw = RefSwitch()
    sw.add_job(JOB, slots, world)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with RefSwitchServer(sw, world) as srv:
        procs = [ctx.Process(target=rank_main, args=(spec(srv, r, world, slots), 2.0, out))
                 for r in range(world - 1)]
        victim = ctx.Process(target=sleeper)
        for p in [*procs, victim]:
            p.start()
        victim.kill()
        victim.join()
        try:
            got = collect(out, world - 1)
        except queue.Empty:
            pytest.fail("surviving workers did not report within the bound")
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
    for r in range(world - 1):
        kind, message = got[r]
        assert kind == "AllreduceTimeout"
        assert f"allreduce of job {JOB}" in message and "slot" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("switch", ["refswitch", "aggregator.p4"])
def test_killing_a_worker_mid_stream_fails_the_others(switch: str) -> None:
    world, slots = 3, 8
    server: Any
    if switch == "refswitch":
        sw = RefSwitch()
        sw.add_job(JOB, slots, world)
        server = RefSwitchServer(sw, world)
        specs = [spec(server, r, world, slots) for r in range(world)]
    else:
        server = SoftswitchJob(JOB, world, slots)
        specs = [server.spec(r) for r in range(world)]
    ctx = mp.get_context("spawn")
    # one queue per rank: a process killed while writing to a shared queue can leave its
    # lock held and block the survivors' reports
    outs = [ctx.Queue() for _ in range(world)]
    with server:
        procs = [ctx.Process(target=rank_loop, args=(specs[r], 2.0, outs[r]))
                 for r in range(world)]
        for p in procs:
            p.start()
        try:
            assert outs[2].get(timeout=60)[1] == "progress"  # the victim is streaming
            procs[2].kill()
            procs[2].join()
            final: dict[int, tuple[str, str]] = {}
            for r in range(world - 1):
                kind = "progress"
                while kind == "progress":
                    _, kind, message = outs[r].get(timeout=60)
                final[r] = (kind, message)
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
    for r in range(world - 1):
        kind, message = final[r]
        assert kind == "AllreduceTimeout", message
        assert f"allreduce of job {JOB}" in message
