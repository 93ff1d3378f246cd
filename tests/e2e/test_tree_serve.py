"""`p4reduce-ctl serve` for a tree of switches, as a process: it connects to the spine and
both leaves of an in-process TreeFabric (each its own P4Runtime server), pushes
aggregator.p4 to each and serves ranks joining through its API. A kill -9 of the
controller and a restart of a leaf or of the spine are recovered on every switch: the
controller restores all of them, the ranks of the jobs on a restarted switch are told
and resynchronise, and their next calls are exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.controller.backend import Update
from p4reduce.controller.client import ControllerClient
from p4reduce.controller.entities import OWNED_TABLES
from p4reduce.softswitch.p4.p4info import to_text
from p4reduce.softswitch.p4runtime import serve
from p4reduce.worker import Communicator, JobSpec
from p4reduce.worker.peers import PeerWatch
from p4reduce.worker.resync import ResyncingCommunicator
from tests.e2e.test_worker_e2e import run_ranks
from tests.paths import ROOT
from tests.support.tree_fabric import TreeFabric, program

K, SLOTS = 8, 64
JOB_HOSTS = {"tree": [0, 3, 1, 4], "solo": [2]}  # hosts 0..2 on leaf1, 3..5 on leaf2


@pytest.fixture
def fab() -> Iterator[TreeFabric]:
    with TreeFabric(2, 3, k=K, num_slots=SLOTS) as f:
        yield f


def _files(fab: TreeFabric, tmp: Path) -> list[str]:
    import json

    info, config = program(K, SLOTS)
    (tmp / "p4info.txtpb").write_text(str(to_text(info)))
    (tmp / "config.json").write_bytes(config)
    (tmp / "topology.json").write_text(json.dumps(fab.topology_data))
    return ["--p4info", str(tmp / "p4info.txtpb"), "--device-config", str(tmp / "config.json"),
            "--topology", str(tmp / "topology.json")]


def start(fab: TreeFabric, tmp: Path) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [sys.executable, "-m", "p4reduce.controller.cli", "serve", *_files(fab, tmp),
           "--state", str(tmp / "ctl.db"), "--listen", "127.0.0.1:0", "--metrics", "off",
           "--lease", "60"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "controller API on" not in line:
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} "
                             f"{proc.stderr.read() if proc.stderr else ''}")
    return proc, line.split("controller API on ")[1].split(";")[0], line


def state(fab: TreeFabric) -> dict[str, Any]:
    """Every switch's entries in the controller's tables and its multicast groups."""
    out = {}
    for name, dev in fab.devices.items():
        pipe = dev.pipeline
        assert pipe is not None
        rows = {(t, tuple(k.value for k in e.keys), e.action.action, e.action.args)
                for t in OWNED_TABLES for e in pipe.table_entries(t)}
        out[name] = (rows, {g: frozenset(r) for g, r in pipe.mc_groups().items()})
    return out


def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


class Ranks:
    """The ranks of each job as the torch engine makes them: joined through the API,
    heartbeating and watching (PeerWatch), resynchronising after a switch restart."""

    def __init__(self, fab: TreeFabric, addr: str) -> None:
        self.clients: list[ControllerClient] = []
        self.peers: list[PeerWatch] = []
        self.comms: dict[str, list[ResyncingCommunicator]] = {}
        for job, hosts in JOB_HOSTS.items():
            for r, hi in enumerate(hosts):
                h = fab.host(hi)
                cl = ControllerClient(addr)
                cl.join(job, r, len(hosts), h["mac"], h["ipv4"], 40000 + r, slots=8)
                self.clients.append(cl)
        self.infos = {}
        for job, hosts in JOB_HOSTS.items():
            self.comms[job] = []
            for r, hi in enumerate(hosts):
                h = fab.host(hi)
                cl = ControllerClient(addr)
                info = cl.join(job, r, len(hosts), h["mac"], h["ipv4"], 40000 + r, slots=8,
                               wait_ready_timeout=20)
                self.infos[(job, r)] = info
                spec = JobSpec(info.job_id, r, info.world_size, info.slot_count, k=info.k,
                               switch_mac=info.aggregation.mac,
                               switch_ip=info.aggregation.ipv4, local_mac=h["mac"],
                               local_ip=h["ipv4"], local_port=40000 + r,
                               tunnel_port=fab.tunnels[h["name"]][1])
                peer = PeerWatch(cl, job, r, lease_until=info.lease_until)
                self.clients.append(cl)
                self.peers.append(peer)
                self.comms[job].append(ResyncingCommunicator(
                    Communicator(spec, timeout_s=30, abort=peer.abort), peer, cl, job))

    def allreduce(self, job: str, seed: int) -> None:
        data = [np.random.default_rng(seed + r).integers(-(2**31), 2**31, 600, dtype=np.int64)
                .astype(np.int32) for r in range(len(self.comms[job]))]
        for res in run_ranks(self.comms[job], lambda r, c: c.allreduce(data[r])):  # type: ignore[arg-type]
            assert not isinstance(res, BaseException), res
            np.testing.assert_array_equal(res, np.sum(data, axis=0, dtype=np.int32))

    def close(self) -> None:
        for cs in self.comms.values():
            for c in cs:
                c.close()
        for p in self.peers:
            p.stop()
        for cl in self.clients:
            cl.close()


@pytest.mark.timeout(180)
def test_sigkill_of_the_controller_reconciles_every_switch(fab: TreeFabric,
                                                           tmp_path: Path) -> None:
    proc, addr, _ = start(fab, tmp_path)
    ranks: Ranks | None = None
    try:
        ranks = Ranks(fab, addr)
        assert ranks.infos[("tree", 1)].aggregation.ipv4 == "10.255.0.3"  # leaf2's address
        ranks.allreduce("tree", 1)
        ranks.allreduce("solo", 2)
        good = state(fab)
        tree_job = ranks.infos[("tree", 0)].job_id
        for name in ("spine", "leaf1", "leaf2"):
            assert any(r[0] == n.TABLE_JOBS.name and r[1] == (tree_job,) for r in good[name][0])
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # while it is down, every switch loses entries (a hand at the switch, say)
        for name in fab.names:
            sw = fab.connect(name)
            try:
                got = sw.read_rows((n.TABLE_JOBS.name, n.TABLE_MEMBERS.name))
                sw.write([Update("delete", row=r) for r in got[:3]])
            finally:
                sw.close()
        assert state(fab) != good
        proc, _, line = start(fab, tmp_path)
        assert "2 jobs restored" in line and "'insert': 0," not in line
        assert state(fab) == good
        ranks.allreduce("tree", 3)  # the ranks go on, through the restored tree
        ranks.allreduce("solo", 4)
    finally:
        if ranks is not None:
            ranks.close()
        proc.kill()
        proc.wait(10)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("restarted", ["leaf2", "spine"])
def test_a_switch_restart_anywhere_in_the_tree_is_recovered(fab: TreeFabric, tmp_path: Path,
                                                            restarted: str) -> None:
    """The switch loses its pipeline, tables and registers (its server restarts on the
    same address with nothing loaded): the controller reconnects, pushes, restores it,
    and tells the tree job's ranks, which resynchronise and go on exactly; the job on
    leaf1 alone is not disturbed."""
    proc, addr, _ = start(fab, tmp_path)
    ranks: Ranks | None = None
    try:
        ranks = Ranks(fab, addr)
        ranks.allreduce("tree", 1)
        good = state(fab)
        address = fab.servers[restarted].address
        fab.servers[restarted].stop()
        fab.devices[restarted].set_pipeline(None)
        fab.servers[restarted] = serve(fab.devices[restarted], address)
        until(lambda: fab.devices[restarted].pipeline is not None
              and state(fab)[restarted] == good[restarted])
        assert all(c.resyncs == 0 for c in ranks.comms["solo"])
        ranks.allreduce("tree", 5)
        # each rank resynchronises once: inside that call if it heard of the restart
        # while streaming, or idle, in the background, if the call came first
        until(lambda: all(c.resyncs >= 1 for c in ranks.comms["tree"]))
        assert all(c.resyncs == 1 for c in ranks.comms["tree"])
        ranks.allreduce("solo", 6)
        assert all(c.resyncs == 0 for c in ranks.comms["solo"])
    finally:
        if ranks is not None:
            ranks.close()
        proc.kill()
        proc.wait(10)
