"""The "p4reduce" torch.distributed backend against gloo, 3 ranks on loopback through
p4src/aggregator.p4 on the softswitch and the controller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from p4reduce.worker import quant
from tests.support.torch_harness import DTYPES, Cluster, rank_input, run_ranks

WORLD = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cluster"), WORLD) as c:
        yield c


@pytest.fixture(scope="module")
def collectives(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    # a short no-progress bound: the missing-rank case waits for it
    return run_ranks(cluster, "collectives", tmp_path_factory.mktemp("out"),
                     extra_env={"P4REDUCE_TIMEOUT": "10"})


def float_bound(exact: np.ndarray[Any, Any], inputs_max: float, dtype: torch.dtype) -> Any:
    """quant's documented bound, plus one rounding to the result dtype."""
    eps = torch.finfo(dtype).eps
    return quant.error_bound(WORLD, inputs_max) + eps * np.abs(exact)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("op", ["SUM", "AVG"])
def test_allreduce_matches_gloo(collectives: list[Any], dtype_name: str, op: str) -> None:
    inputs = [rank_input(dtype_name, r) for r in range(WORLD)]
    exact = np.sum([t.double().numpy() for t in inputs], axis=0)
    for res in collectives:
        got, gloo_sum = res[f"{dtype_name}/{op}"]
        assert got.dtype == getattr(torch, dtype_name)
        if dtype_name == "int32":
            want = gloo_sum if op == "SUM" else torch.div(gloo_sum, WORLD, rounding_mode="trunc")
            assert torch.equal(got, want)
            continue
        scale = 1.0 if op == "SUM" else 1.0 / WORLD
        bound = float_bound(exact, max(float(t.double().abs().max()) for t in inputs), got.dtype)
        err = np.abs(got.double().numpy() - exact * scale)
        assert (err <= bound * scale * 1.01).all(), float((err / bound).max())
        gloo_want = gloo_sum.double() * scale
        torch.testing.assert_close(got.double(), gloo_want, rtol=4 * torch.finfo(got.dtype).eps,
                                   atol=float(bound.max()) * 2)
    for res in collectives[1:]:
        assert torch.equal(res[f"{dtype_name}/{op}"][0], collectives[0][f"{dtype_name}/{op}"][0])


@pytest.mark.timeout(300)
def test_backend_registered_by_entry_point_alone(collectives: list[Any]) -> None:
    for res in collectives:
        assert res["autoloaded"] is True
        assert res["backend"] == "p4reduce"
        assert res["group_type"] == "P4ReduceProcessGroup"
        assert res["names"] == ("p4reduce", "p4reduce")


@pytest.mark.timeout(300)
def test_coalesced_and_async_equal_gloo(collectives: list[Any]) -> None:
    for res in collectives:
        for key in ("coalesced", "async"):
            got, ref = res[key]
            for g, r in zip(got, ref, strict=True):
                assert g.dtype == r.dtype and g.shape == r.shape
                if g.dtype == torch.int32:
                    assert torch.equal(g, r)
                else:
                    eps = torch.finfo(g.dtype).eps
                    torch.testing.assert_close(g.double(), r.double(), rtol=8 * eps,
                                               atol=float(r.double().abs().max()) * 1e-6 + 1e-6)


@pytest.mark.timeout(300)
def test_other_collectives_go_to_gloo_with_one_warning(collectives: list[Any]) -> None:
    for rank, res in enumerate(collectives):
        m, i64, bc, gathered, warnings = res["fallback"]
        assert m.tolist() == [WORLD - 1.0, 0.0]
        assert i64.tolist() == [WORLD * 2**40 + sum(range(WORLD))]
        assert bc.tolist() == [8.0]
        assert [g.tolist() for g in gathered] == [[float(r), 1.0] for r in range(WORLD)]
        text = "\n".join(warnings)
        assert "reduce op" in text and "int64" in text and "broadcast" in text, text
        assert "not the first p4reduce group" in text
        assert res["subgroup"].tolist() == [float(sum(range(WORLD)))] * 5
        assert all("gloo" in w for w in warnings)
        del rank


@pytest.mark.timeout(300)
def test_switch_error_raises_in_wait_and_group_survives(collectives: list[Any]) -> None:
    for res in collectives:
        assert res["error"] is not None, "wait() returned although the allreduce failed"
        name, message = res["error"]
        assert "NonFinite" in name or "non-finite" in message, res["error"]
        assert "offset" in message
        assert res["after_error"].tolist() == [float(sum(range(1, WORLD + 1)))] * 64
        assert res["threads_after"] == []


@pytest.mark.timeout(300)
def test_missing_rank_fails_in_wait_naming_it(collectives: list[Any]) -> None:
    """Rank 2 skips the call and leaves the job: the controller tells the others, whose
    pending call fails naming it (well before the 10 s progress bound)."""
    for res in collectives[:2]:
        assert res["timeout"] is not None, "wait() returned although a rank never sent"
        name, message = res["timeout"]
        assert name == "AllreduceError" and "rank 2 left the job" in message, res["timeout"]
        assert "tensor size" not in message


@pytest.mark.timeout(300)
def test_avg_of_a_gloo_dtype(collectives: list[Any]) -> None:
    for res in collectives:
        assert res["f64_avg"].tolist() == [2.0, -8.0]
