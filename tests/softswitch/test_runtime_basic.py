"""Runtime basics on hand-built IR: forwarding, parser errors, tables, control errors; on
both back ends (the `backend` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from p4reduce.softswitch.runtime import Pipeline, PipelineError
from p4reduce.softswitch.runtime.control import (
    ActionCall,
    AlreadyExistsError,
    Exact,
    InvalidArgumentError,
    Lpm,
    NotFoundError,
    Range,
    ResourceExhaustedError,
    TableEntry,
    Ternary,
)
from tests.support.backends import make
from tests.support.runtime_ir import (
    action,
    apply,
    assign,
    bin_,
    c,
    f,
    forwarding_program,
    program,
    table,
)


def frame(dst: str = "10.1.2.3", payload: bytes = b"payload") -> bytes:
    return bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / IP(dst=dst, ttl=9) / UDP(dport=7) / payload)


def fwd(prefix: int, plen: int, port: int) -> TableEntry:
    return TableEntry((Lpm(prefix, plen),), ActionCall("I.set_port", (port,)))


def test_lpm_forwarding_longest_prefix_wins(backend: str) -> None:
    p = make(forwarding_program(), backend)
    p.table_insert("I.fwd", fwd(0x0A000000, 8, 3))
    p.table_insert("I.fwd", fwd(0x0A010000, 16, 4))
    pkt = frame("10.1.2.3")
    assert p.process(1, pkt) == [(4, pkt)]
    assert p.process(1, frame("10.2.0.1")) == [(3, frame("10.2.0.1"))]
    assert p.process(1, frame("11.0.0.1")) == []  # default I.drop
    assert p.stats["dropped"] == 1


def test_deparse_roundtrip_preserves_bytes_and_subbyte_fields(backend: str) -> None:
    p = make(forwarding_program(), backend)
    p.table_set_default("I.fwd", ActionCall("I.set_port", (2,)))
    pkt = bytes(Ether() / IP(dst="1.2.3.4", flags="DF", frag=5, tos=0xB8, ihl=5) / (b"x" * 3))
    assert p.process(0, pkt) == [(2, pkt)]


def test_parser_error_continues_to_ingress(backend: str) -> None:
    # ingress copies parser_error into the ethernet type so the test can see it
    ir = program(ingress=[
        assign(f("std.egress_spec", 9), c(5, 9)),
        assign(f("hdr.ethernet.etherType", 16),
               {"op": "cast", "arg": f("std.parser_error", t={"kind": "error"}), "type": {"kind": "bit", "width": 16}}),
    ])
    p = make(ir, backend)
    # Ethernet says IPv4 but only 4 bytes follow: PacketTooShort (1), packet still forwarded
    short = bytes(Ether(type=0x0800)) + b"\x45\x00\x00\x14"
    out = p.process(0, short)
    assert len(out) == 1 and out[0][0] == 5
    assert out[0][1][12:14] == b"\x00\x01"
    assert out[0][1][14:] == b"\x45\x00\x00\x14"  # unparsed bytes kept as payload
    assert p.stats["parser_errors"] == 1


def test_too_short_for_first_header_is_not_fatal(backend: str) -> None:
    p = make(forwarding_program(), backend)
    assert p.process(0, b"") == [(0, b"")]
    assert p.process(0, b"\x01\x02") == [(0, b"\x01\x02")]


def test_control_errors(backend: str) -> None:
    p = make(forwarding_program(), backend)
    with pytest.raises(NotFoundError):
        p.table_insert("nope", fwd(0, 0, 1))
    p.table_insert("I.fwd", fwd(0x0A000000, 8, 3))
    with pytest.raises(AlreadyExistsError):
        p.table_insert("I.fwd", fwd(0x0A000000, 8, 3))
    with pytest.raises(InvalidArgumentError):
        p.table_insert("I.fwd", fwd(0x0A000001, 8, 3))  # bits beyond the prefix
    with pytest.raises(InvalidArgumentError):
        p.table_insert("I.fwd", fwd(0x0B000000, 8, 512))  # port does not fit in 9 bits
    with pytest.raises(InvalidArgumentError):
        p.table_insert("I.fwd", TableEntry((Lpm(0x0C000000, 8),), ActionCall("I.nope")))
    with pytest.raises(InvalidArgumentError):
        p.table_insert("I.fwd", TableEntry((Lpm(0x0C000000, 8), Exact(1)), ActionCall("I.drop")))
    with pytest.raises(NotFoundError):
        p.table_delete("I.fwd", (Lpm(0x0D000000, 8),), 0)
    p.table_modify("I.fwd", fwd(0x0A000000, 8, 7))
    assert p.process(0, frame())[0][0] == 7
    p.table_delete("I.fwd", (Lpm(0x0A000000, 8),), 0)
    assert p.table_entries("I.fwd") == []
    assert p.process(0, frame()) == []


def test_table_size_limit(backend: str) -> None:
    ir = forwarding_program()
    ir["tables"][0]["size"] = 2
    p = make(ir, backend)
    p.table_insert("I.fwd", fwd(0x0A000000, 8, 3))
    p.table_insert("I.fwd", fwd(0x0B000000, 8, 3))
    with pytest.raises(ResourceExhaustedError):
        p.table_insert("I.fwd", fwd(0x0C000000, 8, 3))


def _ternary_program(backend: str) -> Any:
    set_port = action("I.set_port", [assign(f("std.egress_spec", 9), f("param.port", 9))],
                      params=[("port", 9, "none")])
    t = table("I.t", [("hdr.ipv4.dstAddr", "ternary", f("hdr.ipv4.dstAddr", 32)),
                      ("hdr.ipv4.ttl", "range", f("hdr.ipv4.ttl", 8))],
              ["I.set_port", "NoAction"], default="I.set_port", default_args=[9])
    return make(program(actions=[set_port], tables=[t], ingress=[apply("I.t")]), backend)


def test_ternary_range_priorities(backend: str) -> None:
    p = _ternary_program(backend)
    p.table_insert("I.t", TableEntry((Ternary(0x0A000000, 0xFF000000), None), ActionCall("I.set_port", (1,)), 10))
    p.table_insert("I.t", TableEntry((Ternary(0x0A010000, 0xFFFF0000), Range(0, 8)), ActionCall("I.set_port", (2,)), 20))
    with pytest.raises(InvalidArgumentError):
        p.table_insert("I.t", TableEntry((None, None), ActionCall("I.set_port", (1,)), 0))  # needs priority
    assert p.process(0, frame("10.1.0.1"))[0][0] == 1  # ttl 9 is outside 0..8
    p.table_delete("I.t", (Ternary(0x0A010000, 0xFFFF0000), Range(0, 8)), 20)
    p.table_insert("I.t", TableEntry((Ternary(0x0A010000, 0xFFFF0000), Range(0, 9)), ActionCall("I.set_port", (2,)), 20))
    assert p.process(0, frame("10.1.0.1"))[0][0] == 2
    assert p.process(0, frame("10.2.0.1"))[0][0] == 1
    assert p.process(0, frame("12.2.0.1"))[0][0] == 9  # default


def test_default_action_const_and_reset(backend: str) -> None:
    ir = forwarding_program()
    p = make(ir, backend)
    p.table_set_default("I.fwd", ActionCall("I.set_port", (6,)))
    assert p.table_get_default("I.fwd") == ActionCall("I.set_port", (6,))
    assert p.process(0, frame())[0][0] == 6
    p.table_reset_default("I.fwd")
    assert p.table_get_default("I.fwd") == ActionCall("I.drop")
    ir["tables"][0]["default_action"]["const"] = True
    p2 = make(ir, backend)
    with pytest.raises(InvalidArgumentError):
        p2.table_set_default("I.fwd", ActionCall("I.set_port", (6,)))


def test_arithmetic_wraps_to_width(backend: str) -> None:
    ir = program(ingress=[
        assign(f("hdr.ipv4.ttl", 8), bin_("-", f("hdr.ipv4.ttl", 8), c(10, 8))),
        assign(f("std.egress_spec", 9), c(1, 9)),
    ])
    out = make(ir, backend).process(0, frame())  # ttl 9 - 10 wraps to 255
    assert IP(out[0][1][14:]).ttl == 255


def test_bad_ir_is_a_pipeline_error(backend: str) -> None:
    with pytest.raises(PipelineError):
        make({"ir_version": 99}, backend)
    ir = program(ingress=[{"stmt": "frobnicate"}])
    with pytest.raises(PipelineError, match="frobnicate"):
        make(ir, backend)
    ir = program()
    del ir["parsers"]
    with pytest.raises(PipelineError):
        make(ir, backend)


def test_runtime_defect_costs_one_packet_not_the_switch(caplog: pytest.LogCaptureFixture) -> None:
    # an ill-typed IR (a 20-bit value in a 16-bit field) makes the deparser fail at run time
    # (Python back end only: C stores the value in the field's 16 bits, nothing fails)
    ir = program(ingress=[
        assign(f("std.egress_spec", 9), c(1, 9)),
        {"stmt": "if", "cond": bin_("==", f("hdr.ipv4.ttl", 8), c(9, 8)),
         "then": [assign(f("hdr.ethernet.etherType", 16), c(1 << 20, 32))], "else": []},
    ])
    p = Pipeline(ir)
    assert p.process(0, frame()) == []  # ttl 9: the broken branch
    assert "internal error" in caplog.text
    ok = bytes(Ether() / IP(ttl=3))
    assert p.process(0, ok) == [(1, ok)]
    assert p.stats["dropped"] == 1
    with pytest.raises(ValueError, match="ingress port"):
        p.process(512, ok)
