"""Block floating point: exponent codes, overflow freedom and the documented error bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4reduce.worker import quant


def simulate(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What W workers and the switch compute for one chunk each: xs is (W, K) float64."""
    w = xs.shape[0]
    shift = quant.shift_for(w)
    props = np.stack([quant.block_exponents(x[None, :])[0] for x in xs])
    agreed = np.array([props.max()], dtype=np.int8)
    qs = np.stack([quant.quantize(x[None, :], agreed, shift)[0] for x in xs]).astype(np.int64)
    total = qs.sum(axis=0)
    return total, quant.dequantize(total.astype(np.int32)[None, :], agreed, shift)[0]


def test_shift_leaves_room_for_the_sum() -> None:
    assert quant.shift_for(1) == 30
    assert quant.shift_for(2) == 29
    assert quant.shift_for(3) == 28
    assert quant.shift_for(8) == 27
    assert quant.shift_for(32) == 25
    assert quant.shift_for(256) == 22  # 8 leaves of 32 ranks: 256 * 2^22 = 2^30
    with pytest.raises(ValueError, match="out of range"):
        quant.shift_for(257)


def test_exponent_codes() -> None:
    blocks = np.array(
        [[0.0, -0.0], [1.0, 0.5], [0.75, -0.1], [np.nan, 1.0], [np.inf, 0.0], [2.0**126, 0.0],
         [2.0**126 - 2.0**100, 0.0], [1e-300, 0.0]]
    )
    exps = quant.block_exponents(blocks).tolist()
    assert exps == [quant.EXP_ZERO, 1, 0, quant.EXP_POISON, quant.EXP_POISON, quant.EXP_POISON,
                    126, quant.MIN_EXP]


def test_worst_case_sum_does_not_overflow_int32() -> None:
    for w in (1, 2, 3, 5, 8, 17, 32):
        xs = np.full((w, 4), -(2.0**10) + 2.0**-20)
        total, _ = simulate(xs)
        assert np.all(np.abs(total) <= 2**30), w


def test_poisoned_and_zero_rows_quantize_to_zero() -> None:
    blocks = np.array([[np.nan, 3.0], [0.0, 0.0]])
    exps = np.array([quant.EXP_POISON, quant.EXP_ZERO], dtype=np.int8)
    assert np.all(quant.quantize(blocks, exps, 29) == 0)
    assert np.all(quant.dequantize(np.ones((2, 2), np.int32), exps, 29) == 0)


def test_to_blocks_pads_with_zeros() -> None:
    b = quant.to_blocks(np.arange(5, dtype=np.float32), 4)
    assert b.shape == (2, 4)
    assert b[1].tolist() == [4.0, 0.0, 0.0, 0.0]
    assert quant.to_blocks(np.zeros(0, np.float32), 4).shape == (0, 4)


magnitudes = st.one_of(
    st.floats(1e-30, 1e30),
    st.sampled_from([0.0, 5e-324, 1e-310, 2.0**-1074 * 3, 1.4e-45, 1e30, 1e-30]),
)
values = st.builds(lambda m, neg: -m if neg else m, magnitudes, st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 32).flatmap(
    lambda w: st.lists(st.lists(values, min_size=8, max_size=8), min_size=w, max_size=w)))
def test_error_bound_holds(rows: list[list[float]]) -> None:
    xs = np.array(rows, dtype=np.float64)
    w = xs.shape[0]
    total, got = simulate(xs)
    assert np.all(np.abs(total) <= 2**30)
    exact = xs.sum(axis=0)
    m = np.abs(xs).max()
    bound = quant.error_bound(w, m) + 1e-15 * w * m  # float64 summation of `exact` itself
    assert np.all(np.abs(got - exact) <= bound)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 8), st.integers(-35, 35), st.integers(0, 2**32 - 1))
def test_float32_chunks_keep_the_bound(w: int, scale: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs = (rng.standard_normal((w, 64)) * 10.0**scale).astype(np.float32).astype(np.float64)
    _, got = simulate(xs)
    m = np.abs(xs).max()
    assert np.all(np.abs(got - xs.sum(axis=0)) <= quant.error_bound(w, m) + 1e-15 * w * m)


@settings(max_examples=100, deadline=None)
@given(st.integers(-45, 38), st.integers(0, 2**32 - 1), st.integers(1, 32))
def test_float32_route_gives_the_float64_bits(scale: int, seed: int, w: int) -> None:
    rng = np.random.default_rng(seed)
    x32 = (rng.standard_normal((4, 64)) * 10.0**scale).astype(np.float32)
    x32[1, ::3] = 0.0
    x32[2, 0] = np.float32(1e-45)  # a denormal beside normal values
    shift = quant.shift_for(w)
    exps = quant.block_exponents(x32)
    assert np.array_equal(exps, quant.block_exponents(x32.astype(np.float64)))
    np.testing.assert_array_equal(quant.quantize(x32, exps, shift),
                                  quant.quantize(x32.astype(np.float64), exps, shift))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 32), st.lists(
    st.one_of(st.integers(quant.MIN_EXP, quant.MAX_EXP),
              st.sampled_from([quant.EXP_ZERO, quant.EXP_POISON, -127, -101, -100, 126])),
    min_size=3, max_size=3))
def test_float32_dequantize_gives_the_float64_bits(seed: int, w: int, exps: list[int]) -> None:
    rng = np.random.default_rng(seed)
    shift = quant.shift_for(w)
    sums = rng.integers(-(2**30), 2**30, size=(3, 64)).astype(np.int32)
    sums[0, :4] = [0, 1, -1, 2**30]
    e = np.array(exps, dtype=np.int8)
    with np.errstate(over="ignore"):
        want = quant.dequantize(sums, e, shift).astype(np.float32)
    got = quant.dequantize_f32(sums, e, shift)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
