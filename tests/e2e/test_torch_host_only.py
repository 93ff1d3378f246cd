"""Best effort when the switch is full (ATP's lesson): a torch job that gets no slots runs
its allreduce on gloo, says so once, and `p4reduce-ctl jobs` shows it as host-only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p4reduce import contract as n
from p4reduce.controller.client import ControllerClient
from tests.support.torch_harness import Cluster, run_ranks

WORLD = 2


@pytest.mark.timeout(300)
def test_a_job_the_switch_has_no_room_for_runs_on_gloo(tmp_path: Path) -> None:
    with Cluster(tmp_path / "cluster", WORLD) as cluster, \
            ControllerClient(cluster.controller) as cl:
        cl.create_job("hog", 1, slots=n.DEFAULT_SLOT_PAIRS)  # every slot taken
        # what `p4reduce-ctl jobs` lists while such a job runs
        info = cl.join("probe", 0, 1, "02:00:00:00:01:01", "10.0.1.1", 40000, best_effort=True)
        assert info.host_only and info.slot_count == 0
        assert [j.host_only for j in cl.jobs()] == [False, True]
        cl.leave("probe", 0)
        res = run_ranks(cluster, "host_only", tmp_path / "out",
                        extra_env={"P4REDUCE_JOB": "late"})
        # the ranks have left: the host-only job is gone, the hog is untouched
        assert [j.name for j in cl.jobs()] == ["hog"]
        hooked = run_ranks(cluster, "hook_host_only", tmp_path / "out-hook",
                           extra_env={"P4REDUCE_JOB": "late-hook"})
    for r in hooked:  # the hook's gradients went through the default (gloo) group
        assert r["host_only"] and len(r["warnings"]) == 1 and "host-only" in r["warnings"][0]
        for a, b in zip(r["hook"], r["plain"], strict=True):
            assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    for rank, r in enumerate(res):
        assert r["host_only"], rank
        assert r["sums"] == [float(sum(x + i for x in range(WORLD))) for i in range(3)]
        assert r["avg"] == sum(range(WORLD)) / WORLD
        # once, at creation; no warning per allreduce (the barrier's is another matter)
        (said,) = [w for w in r["warnings"] if "barrier" not in w]
        assert "host-only" in said and "gloo" in said

