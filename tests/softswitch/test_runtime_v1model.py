"""v1model semantics as BMv2 simple_switch implements them, on P4 programs compiled by the
project's front end: replication, clones, resubmit, recirculate, digests, counters,
hashes, checksums, exit, action_run."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from p4reduce.softswitch.p4 import compile_file, compile_source
from p4reduce.softswitch.runtime.control import (
    ActionCall,
    CloneSession,
    CounterValue,
    Exact,
    Lpm,
    Replica,
    TableEntry,
)
from p4reduce.softswitch.runtime.hashing import crc16
from tests.paths import P4_CORPUS
from tests.support.backends import make
from tests.support.runtime_ir import (
    ETH,
    V1_PRELUDE,
    assign,
    bin_,
    bit,
    c,
    extern,
    extract,
    f,
    program,
)

BASIC = P4_CORPUS / "good" / "basic.p4"


def prog(backend: str, ingress: str, egress: str = "", meta: str = "bit<8> unused;", decls: str = "",
         ingress_decls: str = "", egress_decls: str = "") -> Any:
    src = V1_PRELUDE + f"""
header ethernet_t {{ bit<48> dst; bit<48> src; bit<16> etherType; }}
struct headers {{ ethernet_t ethernet; }}
struct metadata {{ {meta} }}
{decls}
parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    state start {{ pkt.extract(hdr.ethernet); transition accept; }}
}}
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {ingress_decls}
    apply {{ {ingress} }}
}}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {egress_decls}
    apply {{ {egress} }}
}}
control V(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control C(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control D(packet_out pkt, in headers hdr) {{ apply {{ pkt.emit(hdr.ethernet); }} }}
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""
    return make(compile_source(src), backend)


def eth(dst: int = 0x0A0B0C0D0E0F, src: int = 0x010203040506, etype: int = 0x1234, payload: bytes = b"data") -> bytes:
    return dst.to_bytes(6, "big") + src.to_bytes(6, "big") + etype.to_bytes(2, "big") + payload


def src_of(frame: bytes) -> int:
    return int.from_bytes(frame[6:12], "big")


def test_basic_p4_routes_and_recomputes_ipv4_checksum(backend: str) -> None:
    p = make(compile_file(str(BASIC)), backend)
    p.table_insert("MyIngress.ipv4_lpm", TableEntry(
        (Lpm(0x0A000000, 8),), ActionCall("MyIngress.ipv4_forward", (0x020000000009, 4))))
    pkt = bytes(Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02") / IP(dst="10.0.0.7", ttl=64) / UDP() / b"x")
    [(port, out)] = p.process(1, pkt)
    assert port == 4
    got = Ether(out)
    assert got.dst == "02:00:00:00:00:09" and got.src == "02:00:00:00:00:01"
    assert got[IP].ttl == 63
    expect = IP(bytes(got[IP]))
    del expect.chksum
    assert got[IP].chksum == IP(bytes(expect)).chksum
    assert p.process(1, bytes(Ether() / IP(dst="11.0.0.1"))) == []  # default drop


def test_multicast_replicas_in_order_with_rid_and_instance_type(backend: str) -> None:
    p = prog(backend, "std.mcast_grp = 7;",
             "hdr.ethernet.src = (bit<48>)std.egress_rid ++ (bit<48>)std.instance_type;"
             .replace("(bit<48>)std.egress_rid ++ (bit<48>)std.instance_type",
                      "((bit<48>)std.egress_rid << 8) | (bit<48>)std.instance_type"))
    p.mc_group_set(7, (Replica(3, 1), Replica(1, 2), Replica(3, 9)))
    out = p.process(0, eth())
    assert [port for port, _ in out] == [3, 1, 3]
    assert [src_of(f) for _, f in out] == [(1 << 8) | 5, (2 << 8) | 5, (9 << 8) | 5]
    p.mc_group_delete(7)
    assert p.process(0, eth()) == []  # an unknown group replicates to nobody


def test_mark_to_drop_and_default_port_zero(backend: str) -> None:
    p = prog(backend, "if (hdr.ethernet.etherType == 1) { mark_to_drop(std); }")
    assert p.process(5, eth(etype=2)) == [(0, eth(etype=2))]  # egress_spec defaults to 0
    assert p.process(5, eth(etype=1)) == []
    assert p.stats["dropped"] == 1


def test_ingress_clone_is_the_received_frame(backend: str) -> None:
    p = prog(backend, """clone(CloneType.I2E, 5);
                hdr.ethernet.dst = 0xFFFFFFFFFFFF; std.egress_spec = 2;""",
             "if (std.instance_type == 1) { hdr.ethernet.etherType = 0xC1; }")
    p.clone_session_set(CloneSession(5, (Replica(9, 0),)))
    out = p.process(1, eth())
    assert out[0] == (9, eth(etype=0xC1))  # clone first, original headers, egress saw I2E
    assert out[1] == (2, eth(dst=0xFFFFFFFFFFFF))


def test_egress_clone_keeps_egress_changes_and_preserves_fields(backend: str) -> None:
    p = prog(backend, "std.egress_spec = 2;",
             """if (std.instance_type == 0) {
                    meta.tag = 0x42;
                    hdr.ethernet.etherType = 0xE0;
                    clone_preserving_field_list(CloneType.E2E, 6, 1);
                } else {
                    hdr.ethernet.src = (bit<48>)meta.tag;
                }""",
             meta="@field_list(1) bit<8> tag;")
    p.clone_session_set(CloneSession(6, (Replica(8, 0),)))
    out = p.process(1, eth())
    assert out[0] == (2, eth(etype=0xE0))
    assert out[1][0] == 8
    assert out[1][1][12:14] == b"\x00\xe0" and src_of(out[1][1]) == 0x42


def test_resubmit_preserves_field_list(backend: str) -> None:
    p = prog(backend, """if (std.instance_type == 0) {
                    meta.x = 0x77;
                    resubmit_preserving_field_list(1);
                } else {
                    hdr.ethernet.src = (bit<48>)meta.x;
                    hdr.ethernet.etherType = (bit<16>)std.instance_type;
                    std.egress_spec = 3;
                }""", meta="@field_list(1) bit<8> x;")
    [(port, out)] = p.process(1, eth())
    assert port == 3 and src_of(out) == 0x77 and out[12:14] == b"\x00\x06"


def test_recirculate_runs_ingress_again_on_the_deparsed_frame(backend: str) -> None:
    p = prog(backend, """if (std.instance_type == 4) {
                    hdr.ethernet.src = (bit<48>)meta.n;
                    std.egress_spec = 4;
                } else {
                    std.egress_spec = 1;
                }""",
             """if (std.instance_type == 0) {
                    hdr.ethernet.dst = 0x111111111111;
                    meta.n = 9;
                    recirculate_preserving_field_list(2);
                }""",
             meta="@field_list(2) bit<8> n;")
    [(port, out)] = p.process(1, eth())
    assert port == 4
    assert out[:6] == b"\x11" * 6 and src_of(out) == 9


def test_digest_values_and_take(backend: str) -> None:
    p = prog(backend, "digest<learn_t>(1, {hdr.ethernet.src, std.ingress_port}); std.egress_spec = 1;",
             decls="struct learn_t { bit<48> mac; bit<9> port; }")
    p.process(5, eth(src=0xAABBCCDDEEFF))
    p.process(6, eth(src=0x1))
    d = p.take_digests()
    assert [(m.name, m.values) for m in d] == [("learn_t", (0xAABBCCDDEEFF, 5)), ("learn_t", (1, 6))]
    assert p.take_digests() == []


def test_counters_packets_and_bytes(backend: str) -> None:
    p = prog(backend, "c.count((bit<32>)std.ingress_port); std.egress_spec = 1;",
             ingress_decls="counter(8, CounterType.packets_and_bytes) c;")
    for _ in range(3):
        p.process(2, eth(payload=b"12345"))
    assert p.counter_read("I.c", 2) == CounterValue(3, 3 * 19)
    assert p.counter_read("I.c", 3) == CounterValue(0, 0)
    p.counter_write("I.c", 2, CounterValue(0, 0))
    assert p.counter_read("I.c", 2) == CounterValue(0, 0)
    assert p.counter_size("I.c") == 8


def test_direct_counter_counts_hits_only(backend: str) -> None:
    p = prog(backend, "t.apply();", ingress_decls="""
        direct_counter(CounterType.packets_and_bytes) dc;
        action fwd(bit<9> port) { std.egress_spec = port; }
        table t { key = { hdr.ethernet.etherType: exact; } actions = { fwd; NoAction; }
                  counters = dc; default_action = NoAction(); }""")
    key = (Exact(0x1234),)
    p.table_insert("I.t", TableEntry(key, ActionCall("I.fwd", (3,))))
    p.process(0, eth())
    p.process(0, eth())
    p.process(0, eth(etype=1))
    assert p.direct_counter_read("I.t", key, 0) == CounterValue(2, 36)


def test_hash_crc16_crc32_with_base_and_max(backend: str) -> None:
    # hand-built IR: the front end does not accept list arguments to hash() yet
    def algo(name: str) -> dict[str, object]:
        return {"op": "enum_member", "enum": "HashAlgorithm", "member": name, "type": {"kind": "enum", "name": "HashAlgorithm"}}

    def data(*items: dict[str, object]) -> dict[str, object]:
        return {"op": "list", "items": list(items), "type": {"kind": "list"}}

    ir = program(
        headers={"ethernet": ETH},
        meta=[("h1", bit(16)), ("h2", bit(32))],
        parser_states={"start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                                 "transition": {"kind": "direct", "next": "accept"}}},
        ingress=[
            extern("hash", f("meta.h1", 16), algo("crc16"), c(0, 16), data(f("hdr.ethernet.dstAddr", 48)), c(65536, 32)),
            extern("hash", f("meta.h2", 32), algo("crc32"), c(10, 32),
                   data(f("hdr.ethernet.dstAddr", 48), f("hdr.ethernet.etherType", 16)), c(100, 32)),
            assign(f("hdr.ethernet.srcAddr", 48),
                   bin_("|", bin_("<<", {"op": "cast", "arg": f("meta.h1", 16), "type": bit(48)}, c(32, 8), bit(48)),
                        {"op": "cast", "arg": f("meta.h2", 32), "type": bit(48)})),
        ])
    p = make(ir, backend)
    dst = 0x0A0B0C0D0E0F
    [(_, out)] = p.process(0, eth(dst=dst))
    want1 = crc16(dst.to_bytes(6, "big"))
    want2 = 10 + zlib.crc32(dst.to_bytes(6, "big") + b"\x12\x34") % 100
    assert src_of(out) == (want1 << 32) | want2


def test_exit_skips_rest_of_ingress_but_not_egress(backend: str) -> None:
    p = prog(backend, "std.egress_spec = 2; if (hdr.ethernet.etherType == 0x1234) { exit; } std.egress_spec = 3;",
             "hdr.ethernet.src = 5;")
    [(port, out)] = p.process(0, eth())
    assert port == 2 and src_of(out) == 5
    assert p.process(0, eth(etype=1))[0][0] == 3


def test_switch_action_run_and_const_entries_priority(backend: str) -> None:
    p = prog(backend, """switch (t.apply().action_run) {
                    a1: { hdr.ethernet.src = 1; }
                    a2: { hdr.ethernet.src = 2; }
                    default: { hdr.ethernet.src = 3; }
                }
                std.egress_spec = 1;""", ingress_decls="""
        action a1() { } action a2() { }
        table t { key = { hdr.ethernet.etherType: ternary; } actions = { a1; a2; NoAction; }
                  const entries = { 0x1200 &&& 0xFF00 : a1(); 0x1234 &&& 0xFFFF : a2(); }
                  default_action = NoAction(); }""")
    assert src_of(p.process(0, eth(etype=0x1234))[0][1]) == 1  # the first const entry wins
    assert src_of(p.process(0, eth(etype=0x12FF))[0][1]) == 1
    assert src_of(p.process(0, eth(etype=0x3400))[0][1]) == 3
    assert all(e.is_const for e in p.table_entries("I.t"))


def test_registers_through_control_api(backend: str) -> None:
    p = prog(backend, """bit<32> v; r.read(v, 1); r.write(1, v + 1); std.egress_spec = 1;""",
             ingress_decls="register<bit<32>>(4) r;")
    p.register_write("I.r", 1, 41)
    p.process(0, eth())
    assert p.register_read("I.r", 1) == 42
    assert p.register_size("I.r") == 4
    from p4reduce.softswitch.runtime.control import InvalidArgumentError, NotFoundError
    with pytest.raises(InvalidArgumentError):
        p.register_read("I.r", 4)
    with pytest.raises(InvalidArgumentError):
        p.register_write("I.r", 0, 1 << 32)
    with pytest.raises(NotFoundError):
        p.register_read("I.nope", 0)


def test_register_out_of_range_index_reads_zero_and_ignores_write(backend: str) -> None:
    p = prog(backend, """bit<32> v; r.read(v, (bit<32>)hdr.ethernet.etherType); r.write((bit<32>)hdr.ethernet.etherType, 9);
                hdr.ethernet.src = (bit<48>)v; std.egress_spec = 1;""",
             ingress_decls="register<bit<32>>(4) r;")
    [(_, out)] = p.process(0, eth(etype=100))
    assert src_of(out) == 0
    assert [p.register_read("I.r", i) for i in range(4)] == [0, 0, 0, 0]


def test_parser_error_visible_in_ingress(backend: str) -> None:
    p = prog(backend, "hdr.ethernet.etherType = (bit<16>)(std.parser_error == error.PacketTooShort ? 1w1 : 1w0);"
             " std.egress_spec = 1;")
    out = p.process(0, b"\x01\x02\x03")
    assert out == [(1, b"\x01\x02\x03")]  # nothing valid to emit, payload kept
    assert p.stats["parser_errors"] == 1


def test_struct_payload_roundtrip(backend: str) -> None:
    p = prog(backend, "std.egress_spec = 1;")
    frame = eth(payload=struct.pack("!Q", 123456789))
    assert p.process(0, frame) == [(1, frame)]
