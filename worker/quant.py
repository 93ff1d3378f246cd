"""Block floating point quantization of float chunks (docs/DESIGN.md section 4).

A tensor is cut into chunks of K values. Each chunk c gets one exponent E_c, agreed by all
W workers through the switch (the max of their proposals), and every worker sends
q = rint(x * 2^(shift - E_c)) as int32, where shift = 30 - ceil(log2 W). Because every
|x| < 2^E_c, |q| <= 2^shift and the sum of W of them is at most 2^30: the switch's int32
sum cannot overflow, for any W up to MAX_WORLD_SIZE (256, through a tree of switches,
whose partial sums are sums of fewer of them and so are bounded too).

Error bound. Let M_c be the largest magnitude in chunk c over all workers. Each worker's
rounding error is at most 1/2 * 2^(E_c - shift) and 2^(E_c - 1) <= M_c, so every element
of the dequantized sum satisfies

    |result - exact_sum| <= W * 2^(-shift) * max(M_c, 2^-128)

(the 2^-128 floor is because exponents are clamped at MIN_EXP = -127: values smaller than
that are quantized relative to 2^-127, an absolute error below 1e-45). The result is then
rounded once to the caller's dtype (relative 2^-24 for float32, 2^-11 for float16, 2^-8
for bfloat16). With W = 8 (shift 27) the quantization part is 2^-24 * M_c: as good as
float32 arithmetic relative to the chunk's largest value.

Exponent codes (the signed 8-bit `exp` field): EXP_ZERO (-128) proposes "nothing", an
all-zero chunk; EXP_POISON (127) says "this rank has a NaN, an infinity or a value of
magnitude >= 2^126 in this chunk". Being the largest code, a poison proposal wins the
switch's max, so every rank learns of it in the same chunk and all of them fail the call
together instead of summing garbage or waiting for each other.

All functions work on whole (n, K) blocks with numpy: no Python loop per element.
"""

from __future__ import annotations

import functools
import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from p4reduce.contract import EXP_POISON as EXP_POISON
from p4reduce.contract import EXP_ZERO as EXP_ZERO
from p4reduce.contract import MAX_WORLD_SIZE

MIN_EXP = -127
MAX_EXP = 126  # |x| < 2^126 is representable; larger magnitudes are refused (poison)

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
G = TypeVar("G", bound=np.generic)


def shift_for(world_size: int) -> int:
    """Bits of headroom: W values of magnitude <= 2^shift sum to at most 2^30."""
    if not 1 <= world_size <= MAX_WORLD_SIZE:
        raise ValueError(f"world size {world_size} out of range 1..{MAX_WORLD_SIZE}")
    return 30 - math.ceil(math.log2(world_size))


def error_bound(world_size: int, chunk_max: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The documented absolute error bound of one element, given its chunk's max |x|."""
    m = np.maximum(np.asarray(chunk_max, dtype=np.float64), 2.0**-128)
    return np.asarray(world_size * 2.0 ** -shift_for(world_size) * m, dtype=np.float64)


def to_blocks(flat: npt.NDArray[G], k: int) -> npt.NDArray[G]:
    """View (or zero-padded copy) of a 1-D array as (ceil(n/k), k) rows."""
    n = flat.shape[0]
    rows = -(-n // k)
    if rows * k == n:
        return flat.reshape(rows, k)
    out = np.zeros(rows * k, dtype=flat.dtype)
    out[:n] = flat
    return out.reshape(rows, k)


def block_exponents(blocks: npt.NDArray[np.floating]) -> I8:
    """Exponent proposal per row: smallest E with max|x| < 2^E, or a reserved code."""
    if blocks.size:  # two reductions instead of a full-size abs() copy
        maxabs = np.maximum(blocks.max(axis=1), -blocks.min(axis=1)).astype(np.float64)
    else:
        maxabs = np.zeros(blocks.shape[0])
    bad = ~np.isfinite(maxabs)  # NaN propagates through max; so does inf
    _, e = np.frexp(np.where(bad, 0.0, maxabs))
    e = np.clip(e, MIN_EXP, MAX_EXP + 1)
    out = np.where(maxabs == 0.0, EXP_ZERO, e)
    out = np.where(bad | (e > MAX_EXP), EXP_POISON, out)
    return out.astype(np.int8)


@functools.cache
def _scale_table(sign: int, shift: int) -> F64:
    """2^(sign * (shift - E)) for every exponent code, indexed by the code's byte
    (E & 0xFF); 0 for the reserved codes. The streamer quantizes a window of chunks at a
    time, so this lookup replaces per-call exponent arithmetic that cost more than the
    scaling itself."""
    e = np.arange(256).astype(np.uint8).view(np.int8).astype(np.int64)
    usable = (e != EXP_POISON) & (e != EXP_ZERO)
    table = np.where(usable, np.ldexp(1.0, (sign * (shift - np.where(usable, e, 0))).astype(np.int32)), 0.0)
    table.flags.writeable = False
    return table


def _scale(exps: I8, sign: int, shift: int) -> F64:
    codes = exps.view(np.uint8) if exps.dtype == np.int8 else np.asarray(exps).astype(np.uint8)
    return _scale_table(sign, shift)[codes]


def quantize(blocks: npt.NDArray[np.floating], exps: I8, shift: int) -> I32:
    """int32 rows for agreed exponents; poisoned and all-zero rows become zeros."""
    scale = _scale(exps, 1, shift)
    # float32 input scaled by a power of two that float32 can hold is exact (|q| <= 2^30
    # cannot overflow; what underflows rounds to 0 either way), so it may stay float32:
    # the same bits as the float64 route at half the memory traffic
    work = np.float32 if blocks.dtype == np.float32 and scale.max(initial=0.0) <= 2.0**127 else np.float64
    with np.errstate(invalid="ignore", under="ignore"):  # inf * 0 in poisoned rows, cleared below
        scaled = np.multiply(blocks, scale.astype(work)[:, None], dtype=work)
    poisoned = exps == EXP_POISON
    if poisoned.any():  # NaN * 0 is NaN: clear those rows rather than cast NaN to int
        scaled[poisoned] = 0.0
    np.rint(scaled, out=scaled)
    out: I32 = scaled.astype(np.int32)
    return out


def dequantize(sums: I32, exps: I8, shift: int) -> F64:
    """Float64 rows of the switch's int32 sums; rows with a reserved exponent give 0."""
    return np.multiply(sums, _scale(exps, -1, shift)[:, None], dtype=np.float64)


def dequantize_f32(sums: I32, exps: I8, shift: int) -> npt.NDArray[np.float32]:
    """Float32 rows, bit-identical to `dequantize(...).astype(float32)` but cheaper.

    Rounding the int32 sum to float32 and then scaling by a power of two rounds once,
    like scaling exactly in float64 and rounding then, as long as the smallest nonzero
    result (2^(E - shift)) is a normal float32; rows where it is not take the float64 route.
    """
    scale = _scale(exps, -1, shift)
    usable = scale > 0
    if not np.all(scale[usable] >= 2.0**-126):
        with np.errstate(over="ignore"):  # beyond float32: inf, as a host float32 sum gives
            return dequantize(sums, exps, shift).astype(np.float32)
    out = sums.astype(np.float32)
    with np.errstate(over="ignore"):  # |sum| 2^(E - shift) beyond float32: inf, as the cast gives
        np.multiply(out, scale.astype(np.float32)[:, None], out=out)
    return out
