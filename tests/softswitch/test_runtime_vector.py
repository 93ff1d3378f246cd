"""The vectorised execution of lane runs must behave exactly like the scalar code, on both
back ends."""

from __future__ import annotations

import random
import re
import struct

import pytest

from p4reduce.softswitch.p4 import compile_source
from p4reduce.softswitch.runtime import Pipeline
from tests.support.backends import make
from tests.support.runtime_ir import lanes_frame, lanes_p4


@pytest.fixture(scope="module")
def lanes_ir() -> dict[str, object]:
    return compile_source(lanes_p4(k=8, reg_size=16))


def test_lane_runs_are_vectorised(lanes_ir: dict[str, object]) -> None:
    p = Pipeline(lanes_ir)
    assert len(p.plan.runs) == 1
    assert len(p.plan.groups) == 1 and len(p.plan.groups[0].registers) == 8
    assert "_G0" in p.source


def test_vector_scalar_and_native_agree(lanes_ir: dict[str, object], backend: str) -> None:
    vec, sca = make(lanes_ir, backend), Pipeline(lanes_ir, vectorize=False)
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


def test_lane_sums_wrap_and_control_api_sees_columns(lanes_ir: dict[str, object], backend: str) -> None:
    p = make(lanes_ir, backend)
    p.register_write("I.lane3.r", 2, 0xFFFFFFFF)
    out = p.process(1, lanes_frame(2, [1] * 8))
    vals = struct.unpack("!9I", out[0][1][14:50])
    assert vals[0] == 2
    assert vals[1:] == (1, 1, 1, 0, 1, 1, 1, 1)  # lane 3 wrapped around
    assert p.register_read("I.lane3.r", 2) == 0
    assert p.register_read("I.lane0.r", 2) == 1
    p.process(1, lanes_frame(2, [5] * 8))
    assert p.register_read("I.lane7.r", 2) == 6


def _chain_p4(k: int) -> str:
    from tests.support.runtime_ir import V1_PRELUDE

    fields = "".join(f"bit<32> v{i}; " for i in range(k + 1))
    insts = "".join(f"Step() s{i}; " for i in range(k))
    # each step reads the field the previous step wrote: reordering would change results
    applies = "".join(f"s{i}.apply(hdr.vals.v{i + 1}, hdr.vals.v{i}); " for i in range(k))
    return V1_PRELUDE + f"""
header ethernet_t {{ bit<48> dst; bit<48> src; bit<16> etherType; }}
header vals_t {{ {fields} }}
struct headers {{ ethernet_t ethernet; vals_t vals; }}
struct metadata {{ bit<8> unused; }}
parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    state start {{ pkt.extract(hdr.ethernet); pkt.extract(hdr.vals); transition accept; }}
}}
control Step(inout bit<32> a, in bit<32> b) {{
    register<bit<32>>(4) r;
    action upd() {{ bit<32> x; r.read(x, 0); a = b + x + a; r.write(0, a); }}
    apply {{ upd(); }}
}}
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {insts}
    apply {{ {applies} std.egress_spec = 1; }}
}}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{ apply {{ }} }}
control V(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control C(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control D(packet_out pkt, in headers hdr) {{ apply {{ pkt.emit(hdr.ethernet); pkt.emit(hdr.vals); }} }}
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def test_dependent_statements_are_not_vectorised(backend: str) -> None:
    ir = compile_source(_chain_p4(6))
    vec, sca = Pipeline(ir), Pipeline(ir, vectorize=False)
    assert not vec.plan.runs  # the fields overlap between statements: stays scalar
    other = make(ir, backend)
    frame = bytes(14) + struct.pack("!7I", *range(1, 8))
    for _ in range(3):
        out = sca.process(0, frame)
        assert vec.process(0, frame) == out
        assert other.process(0, frame) == out
    out = vec.process(0, frame)[0][1]
    assert out != frame


def test_native_runs_are_loops_over_lane_arrays(lanes_ir: dict[str, object]) -> None:
    """The native back end runs the same runs as one C loop: the lane fields are one array,
    the lanes' registers one group, the lane actions (and their locals) do not exist."""
    from tests.support.backends import skip_unless_available

    skip_unless_available("native")
    p = make(lanes_ir, "native")
    src = p.program.source
    assert src.count("vector run: 8 lanes") == 1
    assert re.search(r"uint32_t a\d+\[8\];", src)  # hdr.vals.v0..v7 as one array
    assert not any(f"I.lane{i}.add" in src for i in range(8))
    assert p.program.registers["I.lane5.r"][:2] == (5, 32)


def test_generated_source_is_reproducible() -> None:
    """Two pipelines of one program get the same Python source (the vector temporaries
    are named by the run's position, not by an object's address), so a generated file can
    be compared, diffed and cached by content."""
    ir = compile_source(lanes_p4(k=8, reg_size=16))
    first, second = Pipeline(ir), Pipeline(ir)
    assert first.plan.runs and "_w1_0" in first.source
    assert first.source == second.source
