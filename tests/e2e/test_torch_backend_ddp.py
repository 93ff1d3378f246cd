"""DDP training through the switch equals DDP on gloo: 3 ranks, 50 steps, on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.torch_harness import STEPS, Cluster, run_ranks

WORLD = 3


def check_training(results: list[Any]) -> None:
    """Same parameters on every rank (bit for bit), close to gloo's, and the loss fell."""
    for res in results[1:]:
        for a, b in zip(res["switch"], results[0]["switch"], strict=True):
            assert torch.equal(a, b)
    for res in results:
        for a, b in zip(res["switch"], res["gloo"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        sw, gl = res["losses"]
        assert len(sw) == STEPS
        assert sw[-1] < 0.5 * sw[0]
        assert abs(sw[-1] - gl[-1]) <= 1e-3 * max(1.0, gl[-1])


@pytest.mark.timeout(300)
def test_ddp_on_p4reduce_group_equals_gloo(tmp_path: Path) -> None:
    with Cluster(tmp_path, WORLD) as cluster:
        check_training(run_ranks(cluster, "ddp", tmp_path / "out"))


@pytest.mark.timeout(300)
def test_ddp_hook_with_gloo_default_group(tmp_path: Path) -> None:
    with Cluster(tmp_path, WORLD) as cluster:
        check_training(run_ranks(cluster, "ddp_hook", tmp_path / "out"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_with_five_percent_loss(tmp_path: Path) -> None:
    with Cluster(tmp_path, WORLD, drop=0.05, seed=7) as cluster:
        check_training(run_ranks(cluster, "ddp", tmp_path / "out",
                                 extra_env={"P4REDUCE_TIMEOUT": "60"}))
