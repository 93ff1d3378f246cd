"""The vectorised execution of lane runs must behave exactly like the scalar code."""

from __future__ import annotations

import random
import struct

import pytest
from runtime_ir import lanes_frame, lanes_p4

from softswitch.p4 import compile_source
from softswitch.runtime import Pipeline


@pytest.fixture(scope="module")
def lanes_ir() -> dict[str, object]:
    return compile_source(lanes_p4(k=8, reg_size=16))


def test_lane_runs_are_vectorised(lanes_ir: dict[str, object]) -> None:
    p = Pipeline(lanes_ir)
    assert len(p.plan.runs) == 1
    assert len(p.plan.groups) == 1 and len(p.plan.groups[0].registers) == 8
    assert "_G0" in p.source


def test_vector_and_scalar_agree(lanes_ir: dict[str, object]) -> None:
    vec, sca = Pipeline(lanes_ir), Pipeline(lanes_ir, vectorize=False)
    assert not sca.plan.runs
    rng = random.Random(7)
    for _ in range(300):
        idx = rng.choice([0, 1, 5, 15, 16, 1 << 31])  # 16 and 2^31 are out of range
        values = [rng.getrandbits(32) for _ in range(8)]
        pkt = lanes_frame(idx, values)
        assert vec.process(3, pkt) == sca.process(3, pkt)
    for lane in range(8):
        name = f"I.lane{lane}.r"
        for i in range(16):
            assert vec.register_read(name, i) == sca.register_read(name, i)


def test_lane_sums_wrap_and_control_api_sees_columns(lanes_ir: dict[str, object]) -> None:
    p = Pipeline(lanes_ir)
    p.register_write("I.lane3.r", 2, 0xFFFFFFFF)
    out = p.process(1, lanes_frame(2, [1] * 8))
    vals = struct.unpack("!9I", out[0][1][14:50])
    assert vals[0] == 2
    assert vals[1:] == (1, 1, 1, 0, 1, 1, 1, 1)  # lane 3 wrapped around
    assert p.register_read("I.lane3.r", 2) == 0
    assert p.register_read("I.lane0.r", 2) == 1
    p.process(1, lanes_frame(2, [5] * 8))
    assert p.register_read("I.lane7.r", 2) == 6
