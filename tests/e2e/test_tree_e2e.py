"""Jobs through a tree of switches, end to end in this process (tests/support/tree_fabric):
the controller drives every switch over its own P4Runtime connection, aggregator.p4 runs
on each, workers stream over UDP tunnels into their leaf. Sums are exact (int32) or
within the documented bound (float32) through two levels, with loss, duplication and
reordering on every port of every switch, and every uplink carries one partial per slot
and round instead of every worker's packets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.controller.jobs import JobManager
from p4reduce.worker import Communicator
from tests.e2e.test_worker_e2e import check_float, inputs, run_ranks
from tests.support.tree_fabric import TreeFabric


def join_all(fab: TreeFabric, mgr: JobManager, job: str, hosts: list[int],
             slots: int) -> list[Any]:
    """Rank r of `job` on host hosts[r]; returns the JobSpecs."""
    for r, hi in enumerate(hosts):
        h = fab.host(hi)
        mgr.join(job, r, len(hosts), h["mac"], h["ipv4"], 40000 + r, slots=slots)
    return [fab.spec(mgr, job, r, fab.host(hi)) for r, hi in enumerate(hosts)]


def comms(specs: list[Any], **kw: Any) -> list[Communicator]:
    return [Communicator(s, **kw) for s in specs]


def close(cs: list[Communicator]) -> None:
    for c in cs:
        c.close()


@pytest.mark.timeout(300)
def test_64_workers_through_two_leaves_and_a_spine(tmp_path: Path) -> None:
    """32 ranks on each leaf: exact int32 sums and float32 within the bound, the same
    bits on every rank, each leaf's uplink carrying 1/32 of what its workers sent."""
    world, per_leaf, slots = 64, 32, 16
    floats = inputs(world, (3000,), seed=64)
    ints = [np.random.default_rng(r).integers(-(2**31), 2**31, 4000, dtype=np.int64)
            .astype(np.int32) for r in range(world)]
    with TreeFabric(2, per_leaf, k=64) as fab:
        mgr = fab.manager(tmp_path / "state.db")
        specs = join_all(fab, mgr, "big", list(range(world)), slots)
        view = mgr.job("big")
        assert mgr.tree_of(view.job).root == "spine"
        assert {s.switch_ip for s in specs[:per_leaf]} == {"10.255.0.2"}  # leaf1's address
        cs = comms(specs, timeout_s=60)
        try:
            got = run_ranks(cs, lambda r, c: c.allreduce(ints[r]))
            check_float(run_ranks(cs, lambda r, c: c.allreduce(floats[r])), floats)
        finally:
            close(cs)
        want = np.sum(ints, axis=0, dtype=np.int32)
        for res in got:
            assert not isinstance(res, BaseException), res
            np.testing.assert_array_equal(res, want)
        counters = mgr.counters_by_switch("big")["big"]
        links = fab.uplink_bytes()
        spine = counters["spine"]
        frame = None
        for leaf in ("leaf1", "leaf2"):
            from_workers = counters[leaf][n.COUNTER_AGGREGATED]
            partials = counters[leaf][n.COUNTER_PARTIALS]
            # every frame up the link is a partial (first sends, and resends when a slow
            # round made workers ask again), all of one size
            frame = from_workers[1] // from_workers[0]
            assert partials[1] == partials[0] * frame == links[leaf][0]
        # 32 contributions at a leaf make one partial at the spine (no loss here): the
        # first send of every partial counts there, resends do not
        assert sum(counters[leaf][n.COUNTER_AGGREGATED][0] for leaf in ("leaf1", "leaf2")) \
            == per_leaf * spine[n.COUNTER_AGGREGATED][0]
        assert spine[n.COUNTER_RESULTS][0] * 2 == spine[n.COUNTER_AGGREGATED][0]
        # down the links: one result per completed slot, and the answers to resends
        assert frame is not None
        assert sum(down for _, down in links.values()) == frame * (
            2 * spine[n.COUNTER_RESULTS][0] + spine[n.COUNTER_RESENT][0])
        mgr.store.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("drop", [0.01, 0.05, 0.2])
def test_loss_duplication_and_reordering_on_every_port_give_identical_bits(
        tmp_path: Path, drop: float) -> None:
    """Two leaves of two ranks (and a third rank on leaf 2): the results under faults on
    every port of every switch equal, bit for bit, the results without."""
    hosts = [0, 1, 3, 4, 5]  # leaf1: hosts 0, 1; leaf2: hosts 3, 4, 5 (3 per leaf)
    world = len(hosts)
    floats = inputs(world, (900,), seed=7)
    ints = [np.random.default_rng(50 + r).integers(-(2**31), 2**31, 700, dtype=np.int64)
            .astype(np.int32) for r in range(world)]
    with TreeFabric(2, 3, k=64) as fab:
        mgr = fab.manager(tmp_path / "clean.db")
        cs = comms(join_all(fab, mgr, "j", hosts, 8), timeout_s=30)
        try:
            want = run_ranks(cs, lambda r, c: c.allreduce(floats[r]))[0]
        finally:
            close(cs)
            mgr.store.close()
    assert isinstance(want, np.ndarray), want
    check_float([want], floats)
    with TreeFabric(2, 3, k=64, drop=drop, duplicate=0.05, reorder=0.1,
                    seed=int(drop * 100)) as fab:
        mgr = fab.manager(tmp_path / "faulty.db")
        cs = comms(join_all(fab, mgr, "j", hosts, 8), timeout_s=30, initial_rto_s=0.05,
                   min_rto_s=0.01)
        try:
            for _ in range(2):
                for res in run_ranks(cs, lambda r, c: c.allreduce(floats[r])):
                    np.testing.assert_array_equal(res, want)
            for res in run_ranks(cs, lambda r, c: c.allreduce(ints[r])):
                np.testing.assert_array_equal(res, np.sum(ints, axis=0, dtype=np.int32))
        finally:
            close(cs)
        by_switch = mgr.counters_by_switch("j")["j"]
        # the leaves resent partials upward when their workers asked again
        assert sum(by_switch[leaf][n.COUNTER_PARTIALS][0] for leaf in ("leaf1", "leaf2")) > \
            by_switch["spine"][n.COUNTER_RESULTS][0]
        mgr.store.close()


@pytest.mark.timeout(300)
def test_two_jobs_sharing_the_tree_stay_isolated_and_a_one_leaf_job_stays_there(
        tmp_path: Path) -> None:
    """Jobs a and b both span both leaves (their slot ranges overlap nowhere on the
    switches they share); job c sits on leaf 1 alone, which is its root: its packets
    never cross an uplink. All three run at once and sum exactly."""
    with TreeFabric(2, 4, k=64) as fab:
        mgr = fab.manager(tmp_path / "state.db")
        layout = {"a": [0, 4], "b": [1, 5, 6], "c": [2, 3]}
        specs = {job: join_all(fab, mgr, job, hosts, 8) for job, hosts in layout.items()}
        trees = {job: mgr.tree_of(mgr.job(job).job) for job in layout}
        assert trees["c"].root == "leaf1" and trees["c"].switches == {"leaf1"}
        assert trees["a"].root == trees["b"].root == "spine"
        a, b = mgr.job("a").job, mgr.job("b").job
        assert a.base + a.count <= b.base or b.base + b.count <= a.base
        data = {job: [np.random.default_rng(hash((job, r)) % 2**32)
                      .integers(-(2**31), 2**31, 1500, dtype=np.int64).astype(np.int32)
                      for r in range(len(hosts))] for job, hosts in layout.items()}
        everyone = [(job, r, c) for job in layout
                    for r, c in enumerate(comms(specs[job], timeout_s=60))]
        try:
            before = fab.uplink_bytes()
            got = run_ranks([c for _, _, c in everyone],
                            lambda i, c: c.allreduce(data[everyone[i][0]][everyone[i][1]]))
            after = fab.uplink_bytes()
        finally:
            close([c for _, _, c in everyone])
        for (job, _, _), res in zip(everyone, got, strict=True):
            assert not isinstance(res, BaseException), (job, res)
            np.testing.assert_array_equal(res, np.sum(data[job], axis=0, dtype=np.int32))
        counters = mgr.counters_by_switch(None)
        assert set(counters["c"]) == {"leaf1"}
        assert counters["c"]["leaf1"][n.COUNTER_PARTIALS][0] == 0
        assert counters["c"]["leaf1"][n.COUNTER_RESULTS][0] > 0
        # what crossed the uplinks is a's and b's partials and results only
        ups = sum(counters[j][leaf][n.COUNTER_PARTIALS][0] for j in "ab" for leaf in ("leaf1", "leaf2"))
        frames_up = sum(after[leaf][0] - before[leaf][0] for leaf in after)
        assert frames_up > 0 and ups > 0
        assert sum(v[0] for v in mgr.rejected().values()) == 0
        mgr.store.close()
