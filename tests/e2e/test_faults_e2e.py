"""Faults of a running job on loopback: p4reduce-switch (aggregator.p4) and p4reduce-ctl
serve as processes (tests.support.torch_harness.Cluster), ranks joining through the
controller as the torch engine does.

- A rank killed with SIGKILL: the other ranks' pending allreduce fails within 5 s, naming
  the rank and when it was last seen (never blaming the tensor size).
- The switch killed with SIGKILL and restarted, 20 times, each during a job: every rank
  either continues with exact results or fails with one clear error saying the switch
  restarted; no rank is left waiting.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from p4reduce.controller.client import ControllerClient
from p4reduce.worker import Communicator, JobSpec
from p4reduce.worker.peers import PeerWatch
from p4reduce.worker.resync import ResyncingCommunicator
from tests.support.torch_harness import Cluster

RESTARTS = 20


def _host(rank: int) -> tuple[str, str]:
    """Rank r is host r of the Cluster's topology."""
    return f"02:00:00:00:01:{rank + 1:02x}", f"10.0.1.{rank + 1}"


# ------------------------------------------------------------------------- dead rank


def dead_rank_main(rank: int, world: int, env: dict[str, str], out: Any) -> None:
    """One rank process: allreduce through the torch engine until it fails; the last rank
    kills itself with SIGKILL after a few calls."""
    os.environ.update(env)
    import torch

    from p4reduce.worker.torch.config import from_env
    from p4reduce.worker.torch.engine import SwitchEngine

    eng = SwitchEngine(from_env(rank, world), join_timeout_s=60)
    try:
        for i in range(1_000_000):
            t = torch.full((3000,), float(rank + 1))
            eng.submit([t], average=False).wait()
            assert t[0].item() == world * (world + 1) / 2
            if rank == world - 1 and i == 5:
                out.put((rank, "killed", "", time.time()))
                out.close()
                out.join_thread()  # the message is sent before the process dies
                os.kill(os.getpid(), signal.SIGKILL)
    except Exception as e:
        out.put((rank, type(e).__name__, str(e), time.time()))
    finally:
        eng.close()


@pytest.mark.timeout(240)
def test_a_killed_rank_fails_its_peers_within_five_seconds_naming_it(tmp_path: Path) -> None:
    world = 3
    with Cluster(tmp_path, world) as cluster:
        env = {**cluster.env("dead-rank"), "P4REDUCE_TIMEOUT": "60", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": "1"}
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=dead_rank_main, args=(r, world, env, out))
                 for r in range(world)]
        for p in procs:
            p.start()
        try:
            got = {}
            for _ in range(world):
                rank, kind, message, at = out.get(timeout=120)
                got[rank] = (kind, message, at)
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
    killed_at = got[world - 1][2]
    assert got[world - 1][0] == "killed"
    for rank in range(world - 1):
        kind, message, at = got[rank]
        assert kind == "AllreduceError", (kind, message)
        assert f"rank {world - 1} last seen" in message and "s ago" in message, message
        assert "tensor size" not in message
        assert at - killed_at < 5.0, f"rank {rank} failed {at - killed_at:.1f} s after the kill"


# ------------------------------------------------------------------- switch restarts


@dataclass
class RankRun:
    """One rank thread of a restart round: its results and how it ended."""

    rank: int
    done_before: int = 0  # calls completed before the restart
    done_after: int = 0
    wrong: list[int] = field(default_factory=list)
    error: BaseException | None = None
    resyncs: int = 0
    redone: int = 0


class Stop:
    """Ends every rank after the same number of calls (a rank stopping one call before
    another would leave that one waiting for it)."""

    def __init__(self, runs: list[RankRun]) -> None:
        self.runs = runs
        self.limit: int | None = None

    def set(self) -> None:
        self.limit = max(r.done_before + r.done_after for r in self.runs) + 2

    def reached(self, calls: int) -> bool:
        return self.limit is not None and calls >= self.limit


def _rank_thread(cluster: Cluster, job: str, run: RankRun, world: int,
                 restarted: threading.Event, stop: Stop) -> None:
    client = ControllerClient(cluster.controller)
    mac, ip = _host(run.rank)
    try:
        info = client.join(job, run.rank, world, mac, ip, 40000 + run.rank,
                           slots=32, wait_ready_timeout=30)
        peers = PeerWatch(client, job, run.rank, lease_until=info.lease_until)
        spec = JobSpec(info.job_id, run.rank, world, info.slot_count, k=info.k,
                       switch_mac=info.aggregation.mac, switch_ip=info.aggregation.ipv4,
                       switch_port=info.aggregation.udp_port, local_mac=mac, local_ip=ip,
                       local_port=40000 + run.rank, transport="tunnel",
                       tunnel_port=cluster.tunnels[run.rank])
        # what the torch engine does with its communicator
        comm = ResyncingCommunicator(Communicator(spec, timeout_s=20, abort=peers.abort),
                                     peers, client, job)
        try:
            i = 0
            while not stop.reached(i):
                x = np.arange(5000, dtype=np.int32) * (run.rank + 1) + i
                got = comm.allreduce(x)
                want = np.arange(5000, dtype=np.int32) * (world * (world + 1) // 2) + world * i
                if not np.array_equal(got, want):
                    run.wrong.append(i)
                if restarted.is_set():
                    run.done_after += 1
                else:
                    run.done_before += 1
                i += 1
        except Exception as e:
            run.error = e
        finally:
            run.resyncs, run.redone = comm.resyncs, comm.redone
            peers.stop()
            comm.close()
            with contextlib.suppress(Exception):  # else the lease reclaims the job
                client.leave(job, run.rank)
    finally:
        client.close()


@pytest.mark.timeout(600)
def test_switch_kill_restarts_during_a_job_end_in_exact_results_or_one_error(
        tmp_path: Path) -> None:
    world = 2
    outcomes: list[str] = []
    with Cluster(tmp_path, world) as cluster:
        for n in range(RESTARTS):
            restarted = threading.Event()
            runs = [RankRun(r) for r in range(world)]
            stop = Stop(runs)
            threads = [threading.Thread(target=_rank_thread,
                                        args=(cluster, f"restart-{n}", runs[r], world,
                                              restarted, stop))
                       for r in range(world)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while (min(r.done_before for r in runs) < 3 and time.monotonic() < deadline
                   and not any(r.error for r in runs)):
                time.sleep(0.01)
            assert all(r.error is None and r.done_before >= 3 for r in runs), \
                [(r.done_before, r.error) for r in runs]
            time.sleep(0.05 * (n % 4))  # kill at different points of a call
            cluster.restart_switch()
            restarted.set()
            # every rank must end (error) or keep going (exact results) within seconds
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if all(r.error is not None or r.done_after >= 3 for r in runs):
                    break
                time.sleep(0.02)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads), f"restart {n}: a rank hangs"
            assert all(not r.wrong for r in runs), f"restart {n}: wrong results"
            errors = [r.error for r in runs]
            if all(e is None for e in errors):
                assert all(r.done_after >= 3 and r.resyncs == 1 for r in runs)
                outcomes.append("continued" + " (one call redone)" * any(r.redone for r in runs))
            else:
                for r in runs:
                    assert r.error is not None, f"restart {n}: rank {r.rank} alone continued"
                    assert "switch restarted" in str(r.error), r.error
                outcomes.append("failed")
    assert len(outcomes) == RESTARTS
    # the ranks resynchronise through the controller: restarts are survived, not only safe
    assert any(o.startswith("continued") for o in outcomes), outcomes


@pytest.mark.timeout(180)
def test_controller_kill_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    """The controller is not on the data path: killed with SIGKILL and restarted while the
    ranks stream, the calls go on exact, no rank is told anything, the job survives."""
    world = 2
    with Cluster(tmp_path, world) as cluster:
        restarted = threading.Event()
        runs = [RankRun(r) for r in range(world)]
        stop = Stop(runs)
        threads = [threading.Thread(target=_rank_thread,
                                    args=(cluster, "keep", runs[r], world, restarted, stop))
                   for r in range(world)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while min(r.done_before for r in runs) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            cluster.restart_controller()
            restarted.set()
            # past the point where a dead rank would have been declared (2 s of silence)
            back = time.monotonic()
            while time.monotonic() - back < 30 and not any(r.error for r in runs):
                if min(r.done_after for r in runs) >= 50 and time.monotonic() - back > 3:
                    break
                time.sleep(0.05)
            with ControllerClient(cluster.controller) as cl:
                (job,) = cl.jobs()
                assert job.name == "keep" and len(job.members) == world
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    for r in runs:
        assert r.error is None, r.error
        assert not r.wrong and r.done_after >= 50, (r.done_before, r.done_after)
