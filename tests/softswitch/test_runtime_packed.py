"""Packed header fields (one numpy array per lane run instead of one int per field) must
behave exactly like the plain slot per field: same frames out, same register contents."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from p4reduce.softswitch.p4 import compile_source
from p4reduce.softswitch.runtime import Pipeline
from p4reduce.softswitch.runtime.control import Replica
from p4reduce.softswitch.runtime.frame import ProgramFrame
from p4reduce.softswitch.runtime.runs import live_actions, packable, packed_conflicts, plan_runs
from tests.support.backends import make
from tests.support.runtime_ir import V1_PRELUDE, lanes_frame, lanes_p4

K = 8


def _mixed_p4(k: int = K, scalar_touch: bool = False) -> str:
    """Lanes between sub-byte fields, a lane run in ingress and another in egress (per
    multicast replica), so packed arrays are shared by replicas and replaced per copy.
    With `scalar_touch` one lane field is also written by plain code: packing must back off."""
    fields = "".join(f"bit<32> v{i}; " for i in range(k))
    ing = "".join(f"Lane() l{i}; " for i in range(k))
    egr = "".join(f"Bump() b{i}; " for i in range(k))
    ing_apply = "".join(f"l{i}.apply(hdr.vals.v{i}, hdr.vals.idx); " for i in range(k))
    egr_apply = "".join(f"b{i}.apply(hdr.vals.v{i}, (bit<32>)std.egress_rid); " for i in range(k))
    touch = "hdr.vals.v3 = hdr.vals.v3 ^ 32w0x5a5a;" if scalar_touch else ""
    return V1_PRELUDE + f"""
header ethernet_t {{ bit<48> dst; bit<48> src; bit<16> etherType; }}
header vals_t {{ bit<4> hi; bit<4> lo; bit<8> idx; {fields} bit<3> t0; bit<13> t1; }}
struct headers {{ ethernet_t ethernet; vals_t vals; }}
struct metadata {{ bit<8> unused; }}
parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    state start {{ pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {{ 0x88B5: parse_vals; default: accept; }} }}
    state parse_vals {{ pkt.extract(hdr.vals); transition accept; }}
}}
control Lane(inout bit<32> value, in bit<8> idx) {{
    register<bit<32>>(16) r;
    action add() {{ bit<32> x; r.read(x, (bit<32>)idx); x = x + value; r.write((bit<32>)idx, x); value = x; }}
    apply {{ add(); }}
}}
control Bump(inout bit<32> value, in bit<32> rid) {{
    register<bit<32>>(4) seen;
    action bump() {{ bit<32> c; seen.read(c, 0); c = c + 1; seen.write(0, c); value = value * 3 + rid + c; }}
    apply {{ bump(); }}
}}
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {ing}
    apply {{
        if (hdr.vals.isValid()) {{ {ing_apply} {touch} hdr.vals.lo = hdr.vals.hi; }}
        if (hdr.vals.isValid() && hdr.vals.hi == 1) {{ std.mcast_grp = 7; }}
        else {{ std.egress_spec = std.ingress_port; }}
    }}
}}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {egr}
    apply {{ if (hdr.vals.isValid()) {{ {egr_apply} hdr.vals.t0 = 5; }} }}
}}
control V(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control C(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control D(packet_out pkt, in headers hdr) {{ apply {{ pkt.emit(hdr.ethernet); pkt.emit(hdr.vals); }} }}
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def _mixed_frame(rng: random.Random, k: int = K) -> bytes:
    eth = bytes(6) + bytes(6) + b"\x88\xb5"
    first = rng.choice([0x10, 0x1F, 0x23, 0x05])  # hi == 1: multicast
    idx = rng.choice([0, 3, 15, 16, 255])  # 16 and 255 are out of the registers' range
    body = struct.pack(f"!BB{k}IH", first, idx, *(rng.getrandbits(32) for _ in range(k)), rng.getrandbits(16))
    cut = rng.random()
    if cut < 0.1:  # too short for vals: parser error, vals invalid
        return eth + body[: rng.randrange(len(body))]
    return eth + body + bytes(rng.randrange(3))


def _variants(ir: dict[str, object], backend: str) -> tuple[Any, ...]:
    """Packed, unpacked and scalar Python code, the pipeline of `backend`, and the scalar
    reference last."""
    pipes = (Pipeline(ir), Pipeline(ir, pack=False), make(ir, backend), Pipeline(ir, vectorize=False))
    for p in pipes:
        p.mc_group_set(7, (Replica(1, 0), Replica(2, 1), Replica(3, 2)))
    return pipes


def _same_registers(pipes: tuple[Any, ...]) -> None:
    names = [r["name"] for r in pipes[-1].ir["registers"]]
    for name in names:
        size = pipes[0].register_size(name)
        ref = [pipes[-1].register_read(name, i) for i in range(size)]
        for p in pipes[:-1]:
            assert [p.register_read(name, i) for i in range(size)] == ref, name


def test_lane_program_is_packed_and_agrees(backend: str) -> None:
    ir = compile_source(lanes_p4(k=16, reg_size=8))
    packed, plain, scalar = Pipeline(ir), Pipeline(ir, pack=False), Pipeline(ir, vectorize=False)
    other = make(ir, backend)
    assert packed.plan.packed and not plain.plan.packed and not scalar.plan.packed
    assert "_PK" in packed.source and ".tolist()" not in packed.source
    # the lane actions are dead (their calls became one vector run): their 16 locals
    # are cut off the packet template
    assert len(packed._init) == len(scalar._init) - 16
    rng = random.Random(3)
    for _ in range(300):
        frame = lanes_frame(rng.choice([0, 1, 7, 8, 1 << 31]), [rng.getrandbits(32) for _ in range(16)])
        if rng.random() < 0.1:
            frame = frame[: rng.randrange(len(frame))]
        out = scalar.process(2, frame)
        assert packed.process(2, frame) == out
        assert plain.process(2, frame) == out
        assert other.process(2, frame) == out
    _same_registers((packed, plain, other, scalar))


def test_mixed_header_multicast_and_egress_runs_agree(backend: str) -> None:
    ir = compile_source(_mixed_p4())
    pipes = _variants(ir, backend)
    assert pipes[0].plan.packed  # both runs use the same slice: one packed run
    assert len(pipes[0].plan.runs) == 2
    rng = random.Random(11)
    multicast = 0
    for _ in range(400):
        frame = _mixed_frame(rng)
        outs = [p.process(1, frame) for p in pipes]
        assert outs[0] == outs[2] and outs[1] == outs[2]
        multicast += len(outs[2]) == 3
    assert multicast > 50
    _same_registers(pipes)
    assert pipes[0].stats == pipes[2].stats


def test_scalar_access_to_a_lane_disables_packing(backend: str) -> None:
    ir = compile_source(_mixed_p4(scalar_touch=True))
    pipes = _variants(ir, backend)
    assert not pipes[0].plan.packed
    rng = random.Random(5)
    for _ in range(150):
        frame = _mixed_frame(rng)
        outs = [p.process(1, frame) for p in pipes]
        assert all(o == outs[-1] for o in outs)
    _same_registers(pipes)


def _lanes_with(ingress_extra: str = "", decls: str = "", k: int = K) -> dict[str, Any]:
    """The lane program with extra ingress statements and declarations, compiled."""
    fields = "".join(f"bit<32> v{i}; " for i in range(k))
    insts = "".join(f"Lane() l{i}; " for i in range(k))
    applies = "".join(f"l{i}.apply(hdr.vals.v{i}, hdr.vals.idx); " for i in range(k))
    return compile_source(V1_PRELUDE + f"""
header ethernet_t {{ bit<48> dst; bit<48> src; bit<16> etherType; }}
header vals_t {{ bit<32> idx; {fields} }}
struct headers {{ ethernet_t ethernet; vals_t vals; vals_t copy; }}
struct metadata {{ bit<8> unused; }}
parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    state start {{ pkt.extract(hdr.ethernet); pkt.extract(hdr.vals); transition accept; }}
}}
control Lane(inout bit<32> value, in bit<32> idx) {{
    register<bit<32>>(16) r;
    action add() {{ bit<32> x; r.read(x, idx); x = x + value; r.write(idx, x); value = x; }}
    apply {{ add(); }}
}}
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {insts}
    {decls}
    apply {{ {applies} {ingress_extra} std.egress_spec = 1; }}
}}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{ apply {{ }} }}
control V(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control C(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control D(packet_out pkt, in headers hdr) {{ apply {{ pkt.emit(hdr.ethernet); pkt.emit(hdr.vals); }} }}
V1Switch(P(), V(), I(), E(), C(), D()) main;
""")


def _conflicts(ir: dict[str, Any]) -> tuple[dict[int, tuple[int, int]], list[tuple[int, int]]]:
    fr = ProgramFrame(ir)  # type: ignore[arg-type]
    plan = plan_runs(ir, fr)  # type: ignore[arg-type]
    packed = packable(fr.lay, plan, fr.field_lists)
    return packed, packed_conflicts(ir, fr, plan, packed)  # type: ignore[arg-type]


def test_conflicts_are_found_on_the_ir_not_in_generated_code() -> None:
    packed, bad = _conflicts(_lanes_with())
    assert [b - a for a, (b, _) in packed.items()] == [K] and bad == []
    (a, (b, _)), = packed.items()
    # a scalar write of one lane field, a whole-header copy across the lanes
    _, bad = _conflicts(_lanes_with("hdr.vals.v3 = 7;"))
    assert bad == [(a + 3, a + 4)]
    _, bad = _conflicts(_lanes_with("hdr.copy = hdr.vals;"))
    assert bad and all(lo <= a and b <= hi for lo, hi in bad)
    # an action nothing can call does not count; one a table lists, or live code calls, does
    touch = "action touch() { hdr.vals.v5 = 1; }"
    assert _conflicts(_lanes_with(decls=touch))[1] == []
    table = "table t { key = { hdr.vals.idx: exact; } actions = { touch; NoAction; } }"
    assert _conflicts(_lanes_with("t.apply();", decls=touch + table))[1] == [(a + 5, a + 6)]
    assert _conflicts(_lanes_with("touch();", decls=touch))[1] == [(a + 5, a + 6)]


def test_live_actions_follow_tables_and_calls_but_not_runs() -> None:
    decls = ("action inner() { hdr.vals.idx = 1; } action outer() { inner(); } "
             "action unused() { hdr.vals.idx = 2; } action listed() { hdr.vals.idx = 3; } "
             "table t { key = { hdr.vals.idx: exact; } actions = { listed; NoAction; } }")
    ir = _lanes_with("outer(); t.apply();", decls=decls)
    fr = ProgramFrame(ir)  # type: ignore[arg-type]
    live = live_actions(ir, fr, plan_runs(ir, fr))  # type: ignore[arg-type]
    assert {"I.outer", "I.inner", "I.listed", "NoAction"} <= live
    assert "I.unused" not in live
    # every call of a lane action is part of the vector run: none of them is live
    assert not any(a.endswith(".add") for a in live)


@pytest.mark.parametrize("k", [64, 256])
def test_aggregator_lanes_are_packed(k: int) -> None:
    """The program the benchmarks run: every lane field is packed, nothing falls back."""
    from tests.pipeline.targets import compile_ir

    ir = compile_ir(NUM_LANES=k)
    p = Pipeline(ir)
    assert [b - a for a, (b, _) in p.plan.packed.items()] == [k]
    # each lane action's two locals (cur, updated) are off the template
    assert len(p._init) <= len(Pipeline(ir, vectorize=False)._init) - 2 * k
