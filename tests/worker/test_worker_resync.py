"""`ResyncingCommunicator` through the switch restart that deadlocked jobs before: one rank
got the results of a call that the other never got, then the switch lost its registers.
aggregator.p4 runs on an in-process softswitch; the resync barrier is the controller's
(`JobManager.resync`, on the in-memory switch); the restart is a fresh pipeline with the
job's entries installed again, as the controller does after a real one."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.controller.backend import MemorySwitch
from p4reduce.controller.client import ControllerCallError, JobEvent
from p4reduce.controller.errors import ControllerError
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.store import Store
from p4reduce.controller.topology import parse
from p4reduce.softswitch.runtime import Pipeline
from p4reduce.softswitch.runtime.control import Exact
from p4reduce.worker import AllreduceError, Communicator
from p4reduce.worker.peers import PeerWatch
from p4reduce.worker.resync import ResyncingCommunicator
from tests.e2e.test_worker_e2e import run_ranks
from tests.support.softswitch_job import SoftswitchJob, compiled

SLOTS = 8
WORLD = 2


class QuietStream:
    def __init__(self) -> None:
        self.done = threading.Event()

    def __iter__(self) -> Any:
        self.done.wait()
        return iter(())

    def cancel(self) -> None:
        self.done.set()


class LocalController:
    """The client calls PeerWatch and the resync make, served by a JobManager in-process;
    events are handed to the watches by the test."""

    def __init__(self, mgr: JobManager) -> None:
        self.mgr = mgr

    def heartbeat(self, job: str, rank: int = -1, interval: float = 0.0) -> float:
        return time.time() + 60

    def watch(self, job: str, rank: int = -1) -> QuietStream:
        return QuietStream()

    def resync(self, job: str, rank: int, generation: int, calls: int, high: int,
               timeout: float = 30.0) -> tuple[int, int]:
        try:
            return self.mgr.resync(job, rank, generation, calls, high, timeout)
        except ControllerError as e:  # as the API would answer
            raise ControllerCallError(e.code, e.message) from None


def _manager(tmp: Path, sw: SoftswitchJob) -> JobManager:
    topo = parse({"aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
                  "hosts": [{"name": f"h{r}", "mac": sw.worker_mac(r), "ipv4": sw.worker_ip(r),
                             "port": r + 1} for r in range(WORLD)]})
    mgr = JobManager(Store(tmp / "s.db"), MemorySwitch(), topo, Settings(num_slots=64))
    for r in range(WORLD):
        mgr.join("j", r, WORLD, sw.worker_mac(r), sw.worker_ip(r), 40000 + r, slots=SLOTS)
    return mgr


def _restart(sw: SoftswitchJob) -> None:
    """What a kill -9 and the controller's restore leave: the same entries, zero registers."""
    sw.pipeline = Pipeline(compiled())
    sw._install()
    sw.device.set_pipeline(sw.pipeline)


@pytest.mark.timeout(120)
def test_a_rank_one_call_ahead_runs_it_again_and_every_rank_goes_on(tmp_path: Path) -> None:
    # 7 packets a call, fewer than the slots: a call's packets all leave at once, so a rank
    # that gets no result still contributes the whole call
    x = [np.arange(400, dtype=np.int32) * (r + 1) for r in range(WORLD)]
    want = [np.arange(400, dtype=np.int32) * 3 + 7 * c for c in range(4)]
    with SoftswitchJob(n.MAX_JOBS - 1, WORLD, SLOTS) as sw:
        mgr = _manager(tmp_path, sw)
        ctl = LocalController(mgr)
        peers = [PeerWatch(ctl, "j", r) for r in range(WORLD)]
        comms = [ResyncingCommunicator(Communicator(sw.spec(r), timeout_s=30, abort=peers[r].abort),
                                       peers[r], ctl, "j") for r in range(WORLD)]
        try:
            def call(r: int, c: int) -> Any:
                return comms[r].allreduce(x[r] + (7 * c if r == 0 else 0))

            got = run_ranks(comms, lambda r, _: call(r, 0))  # type: ignore[arg-type]
            for g in got:
                np.testing.assert_array_equal(g, want[0])
            # rank 1 stops getting results (its address is gone from result_rewrite)
            rewrite = sw.pipeline.table_entries(n.TABLE_RESULT_REWRITE.name)
            mine = next(e for e in rewrite if e.keys[1] == Exact(1))
            sw.pipeline.table_delete(n.TABLE_RESULT_REWRITE.name, mine.keys, 0)
            out: dict[int, Any] = {}

            def lagging() -> None:
                try:
                    out[1] = [call(1, 1), call(1, 2)]
                except BaseException as e:
                    out[1] = e

            t = threading.Thread(target=lagging)
            t.start()
            out[0] = [call(0, 1)]  # completes: rank 1 contributed everything
            np.testing.assert_array_equal(out[0][0], want[1])
            assert comms[0].calls == 2 and comms[1].calls == 1
            _restart(sw)  # ...and the switch loses everything
            gen = mgr.switch_restarted("test")
            assert gen == ["j"]
            ev = next(e for e in mgr.liveness.subscribe(mgr.job("j").job.id).events.queue)
            for p in peers:
                p.hear(JobEvent(ev.kind, ev.job_id, ev.at, ev.message, (), (), ev.generation))
            out[0].append(call(0, 2))
            t.join(60)
            assert not t.is_alive()
            assert not isinstance(out[1], BaseException), out[1]
            np.testing.assert_array_equal(out[1][0], want[1])
            np.testing.assert_array_equal(out[1][1], want[2])
            np.testing.assert_array_equal(out[0][1], want[2])
            assert comms[0].redone == 1 and comms[1].redone == 0
            assert comms[0].resyncs == comms[1].resyncs == 1
            got = run_ranks(comms, lambda r, _: call(r, 3))  # type: ignore[arg-type]
            for g in got:
                np.testing.assert_array_equal(g, want[3])
        finally:
            for c, p in zip(comms, peers, strict=True):
                c.close()
                p.stop()
            mgr.store.close()


@pytest.mark.timeout(60)
def test_a_rank_that_never_resyncs_fails_the_others_with_one_clear_error(
        tmp_path: Path) -> None:
    with SoftswitchJob(n.MAX_JOBS - 2, WORLD, SLOTS) as sw:
        mgr = _manager(tmp_path, sw)
        ctl = LocalController(mgr)
        peer = PeerWatch(ctl, "j", 0)
        comm = ResyncingCommunicator(Communicator(sw.spec(0), timeout_s=30, abort=peer.abort),
                                     peer, ctl, "j", timeout_s=1.0)
        try:
            mgr.switch_restarted("test")
            ev = next(e for e in mgr.liveness.subscribe(mgr.job("j").job.id).events.queue)
            peer.hear(JobEvent(ev.kind, ev.job_id, ev.at, ev.message, (), (), ev.generation))
            with pytest.raises(AllreduceError) as e:
                comm.allreduce(np.ones(100, np.int32))
            assert "the switch restarted" in str(e.value) and "ranks [1]" in str(e.value)
            with pytest.raises(AllreduceError, match="switch restarted"):  # and it stays so
                comm.allreduce(np.ones(100, np.int32))
        finally:
            comm.close()
            peer.stop()
            mgr.store.close()
