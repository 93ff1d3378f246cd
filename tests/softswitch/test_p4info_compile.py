"""P4Info of real P4 programs, compiled by softswitch's front end."""

from __future__ import annotations

import pytest
from finsy.proto import p4i
from google.protobuf import text_format

from p4reduce.softswitch.p4 import compile_file, compile_source
from p4reduce.softswitch.p4.p4ids import Prefix, hashed_id
from p4reduce.softswitch.p4.p4info import emit, to_text
from tests.paths import DATA, P4_CORPUS

# The p4lang tutorials' basic.p4 exercise, solved (default_action = drop()).
BASIC_P4 = """\
#include <core.p4>
#include <v1model.p4>

const bit<16> TYPE_IPV4 = 0x800;
typedef bit<9>  egressSpec_t;
typedef bit<48> macAddr_t;
typedef bit<32> ip4Addr_t;

header ethernet_t {
    macAddr_t dstAddr;
    macAddr_t srcAddr;
    bit<16>   etherType;
}

header ipv4_t {
    bit<4>    version;
    bit<4>    ihl;
    bit<8>    diffserv;
    bit<16>   totalLen;
    bit<16>   identification;
    bit<3>    flags;
    bit<13>   fragOffset;
    bit<8>    ttl;
    bit<8>    protocol;
    bit<16>   hdrChecksum;
    ip4Addr_t srcAddr;
    ip4Addr_t dstAddr;
}

struct metadata { }

struct headers {
    ethernet_t ethernet;
    ipv4_t     ipv4;
}

parser MyParser(packet_in packet, out headers hdr, inout metadata meta,
                inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            TYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition accept;
    }
}

control MyVerifyChecksum(inout headers hdr, inout metadata meta) {
    apply { }
}

control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {
    action drop() {
        mark_to_drop(standard_metadata);
    }

    action ipv4_forward(macAddr_t dstAddr, egressSpec_t port) {
        standard_metadata.egress_spec = port;
        hdr.ethernet.srcAddr = hdr.ethernet.dstAddr;
        hdr.ethernet.dstAddr = dstAddr;
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
    }

    table ipv4_lpm {
        key = {
            hdr.ipv4.dstAddr: lpm;
        }
        actions = {
            ipv4_forward;
            drop;
            NoAction;
        }
        size = 1024;
        default_action = drop();
    }

    apply {
        if (hdr.ipv4.isValid()) {
            ipv4_lpm.apply();
        }
    }
}

control MyEgress(inout headers hdr, inout metadata meta,
                 inout standard_metadata_t standard_metadata) {
    apply { }
}

control MyComputeChecksum(inout headers hdr, inout metadata meta) {
    apply { }
}

control MyDeparser(packet_out packet, in headers hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
    }
}

V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(),
         MyComputeChecksum(), MyDeparser()) main;
"""

# p4c's testdata basic_routing-bmv2.p4, restated: egress is declared before ingress and
# no table names a default action.
ROUTING_P4 = """\
#include <core.p4>
#include <v1model.p4>
struct ingress_metadata_t { bit<12> vrf; bit<16> bd; bit<16> nexthop_index; }
header ethernet_t { bit<48> dstAddr; bit<48> srcAddr; bit<16> etherType; }
header ipv4_t { bit<4> version; bit<4> ihl; bit<8> diffserv; bit<16> totalLen; bit<16> identification;
  bit<3> flags; bit<13> fragOffset; bit<8> ttl; bit<8> protocol; bit<16> hdrChecksum; bit<32> srcAddr; bit<32> dstAddr; }
struct metadata { ingress_metadata_t ingress_metadata; }
struct headers { ethernet_t ethernet; ipv4_t ipv4; }
parser ParserImpl(packet_in packet, out headers hdr, inout metadata meta, inout standard_metadata_t standard_metadata) {
    state start { packet.extract(hdr.ethernet); transition select(hdr.ethernet.etherType) { 16w0x800: parse_ipv4; default: accept; } }
    state parse_ipv4 { packet.extract(hdr.ipv4); transition accept; }
}
control egress(inout headers hdr, inout metadata meta, inout standard_metadata_t standard_metadata) {
    action on_miss() { }
    action rewrite_src_dst_mac(bit<48> smac, bit<48> dmac) { hdr.ethernet.srcAddr = smac; hdr.ethernet.dstAddr = dmac; }
    table rewrite_mac {
        actions = { on_miss; rewrite_src_dst_mac; }
        key = { meta.ingress_metadata.nexthop_index: exact; }
        size = 32768;
    }
    apply { rewrite_mac.apply(); }
}
control ingress(inout headers hdr, inout metadata meta, inout standard_metadata_t standard_metadata) {
    action set_vrf(bit<12> vrf) { meta.ingress_metadata.vrf = vrf; }
    action on_miss() { }
    action fib_hit_nexthop(bit<16> nexthop_index) { meta.ingress_metadata.nexthop_index = nexthop_index; hdr.ipv4.ttl = hdr.ipv4.ttl - 8w1; }
    action set_egress_details(bit<9> egress_spec) { standard_metadata.egress_spec = egress_spec; }
    action set_bd(bit<16> bd) { meta.ingress_metadata.bd = bd; }
    table bd { actions = { set_vrf; } key = { meta.ingress_metadata.bd: exact; } size = 65536; }
    table ipv4_fib { actions = { on_miss; fib_hit_nexthop; }
        key = { meta.ingress_metadata.vrf: exact; hdr.ipv4.dstAddr: exact; } size = 131072; }
    table ipv4_fib_lpm { actions = { on_miss; fib_hit_nexthop; }
        key = { meta.ingress_metadata.vrf: exact; hdr.ipv4.dstAddr: lpm; } size = 16384; }
    table nexthop { actions = { on_miss; set_egress_details; } key = { meta.ingress_metadata.nexthop_index: exact; } size = 32768; }
    table port_mapping { actions = { set_bd; } key = { standard_metadata.ingress_port: exact; } size = 32768; }
    apply {
        if (hdr.ipv4.isValid()) {
            port_mapping.apply();
            bd.apply();
            switch (ipv4_fib.apply().action_run) { on_miss: { ipv4_fib_lpm.apply(); } }
            nexthop.apply();
        }
    }
}
control DeparserImpl(packet_out packet, in headers hdr) { apply { packet.emit(hdr.ethernet); packet.emit(hdr.ipv4); } }
control verifyChecksum(inout headers hdr, inout metadata meta) { apply { } }
control computeChecksum(inout headers hdr, inout metadata meta) { apply { } }
V1Switch(ParserImpl(), verifyChecksum(), ingress(), egress(), computeChecksum(), DeparserImpl()) main;
"""

FEATURES_P4 = """\
#include <core.p4>
#include <v1model.p4>

@controller_header("packet_in")
header packet_in_t { bit<9> ingress_port; bit<7> pad; }
@controller_header("packet_out")
header packet_out_t { bit<9> egress_port; bit<7> pad; }
header eth_t { bit<48> dst; bit<48> src; bit<16> type; }
struct headers { packet_in_t pin; packet_out_t pout; eth_t eth; }
struct metadata { bit<8> x; }
struct learn_t { bit<48> src; bit<9> port; }

parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t sm) {
    state start { pkt.extract(hdr.eth); transition accept; }
}
control V(inout headers hdr, inout metadata meta) { apply { } }
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t sm) {
    counter(64, CounterType.packets) pkts;
    direct_counter(CounterType.packets_and_bytes) hits;
    @id(5) register<bit<32>>(128) regs;
    meter(16, MeterType.bytes) rate;
    action fwd(bit<9> port) { sm.egress_spec = port; hits.count(); }
    action learn() { digest<learn_t>(1, {hdr.eth.src, sm.ingress_port}); }
    @hidden action secret() { }
    table dmac {
        key = { hdr.eth.dst: exact @name("dst"); meta.x: ternary; }
        actions = { fwd; learn; @defaultonly NoAction; }
        const default_action = learn();
        counters = hits;
        size = 4096;
    }
    apply {
        pkts.count((bit<32>) sm.ingress_port);
        regs.write(0, 1);
        dmac.apply();
    }
}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t sm) { apply { } }
control C(inout headers hdr, inout metadata meta) { apply { } }
control D(packet_out pkt, in headers hdr) { apply { pkt.emit(hdr.eth); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def test_compiled_basic_p4_matches_p4c_output() -> None:
    ir = compile_source(BASIC_P4, "basic.p4")
    assert to_text(emit(ir)) == (DATA / "basic.p4info.txtpb").read_text()


def _by_name(msg: p4i.P4Info, field: str) -> dict[str, str]:
    return {o.preamble.name: text_format.MessageToString(o) for o in getattr(msg, field)}


def test_compiled_basic_routing_matches_p4c_output() -> None:
    # Declarations are not in name order here, so this also checks that the front end's
    # "order" keys put objects where p4c's block walk lists them.
    got = emit(compile_source(ROUTING_P4, "basic_routing.p4"))
    want = text_format.Parse((DATA / "basic_routing.p4info.txtpb").read_text(), p4i.P4Info())
    assert _by_name(got, "tables") == _by_name(want, "tables")
    assert _by_name(got, "actions") == _by_name(want, "actions")
    assert to_text(got) == (DATA / "basic_routing.p4info.txtpb").read_text()


def test_compiled_externs_packet_io_and_digest() -> None:
    msg = emit(compile_source(FEATURES_P4, "features.p4"))
    (table,) = msg.tables
    assert table.preamble.id == hashed_id(Prefix.TABLE, "I.dmac")
    assert [(m.name, m.match_type) for m in table.match_fields] == [
        ("dst", p4i.MatchField.EXACT),
        ("meta.x", p4i.MatchField.TERNARY),
    ]
    learn = hashed_id(Prefix.ACTION, "I.learn")
    assert table.const_default_action_id == learn == table.initial_default_action.action_id
    assert table.size == 4096
    assert list(table.direct_resource_ids) == [hashed_id(Prefix.DIRECT_COUNTER, "I.hits")]
    assert [a.preamble.name for a in msg.actions] == ["NoAction", "I.fwd", "I.learn"]
    assert msg.counters[0].preamble.name == "I.pkts" and msg.counters[0].size == 64
    assert msg.direct_counters[0].direct_table_id == table.preamble.id
    assert msg.meters[0].spec.unit == p4i.MeterSpec.BYTES
    (reg,) = msg.registers
    assert reg.preamble.id == (0x16 << 24) | 5
    assert reg.type_spec.bitstring.bit.bitwidth == 32 and reg.size == 128
    assert [(c.preamble.name, c.preamble.id) for c in msg.controller_packet_metadata] == [
        ("packet_in", hashed_id(Prefix.CONTROLLER_HEADER, "packet_in_t")),
        ("packet_out", hashed_id(Prefix.CONTROLLER_HEADER, "packet_out_t")),
    ]
    assert [(m.name, m.bitwidth) for m in msg.controller_packet_metadata[1].metadata] == [
        ("egress_port", 9),
        ("pad", 7),
    ]
    (digest,) = msg.digests
    assert digest.preamble.id == hashed_id(Prefix.DIGEST, "learn_t")
    members = msg.type_info.structs["learn_t"].members
    assert [(m.name, m.type_spec.bitstring.bit.bitwidth) for m in members] == [
        ("src", 48),
        ("port", 9),
    ]
    assert text_format.Parse(to_text(msg), p4i.P4Info()) == msg


# Nested control instances, top-level actions in two controls, unused declarations and
# digests: what p4c's front end makes of them decides which objects P4Info lists, and where.
ORDER_P4 = """\
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; bit<8> b; }
struct H { h_t h; }
struct M { bit<8> x; bit<8> y; }
struct d1_t { bit<8> x; }
struct d2_t { bit<8> y; }
action top_a() { }
action top_b() { }
parser P(packet_in p, out H h, inout M m, inout standard_metadata_t s) {
    state start { p.extract(h.h); transition accept; }
}
control V(inout H h, inout M m) { apply {} }
control Sub(inout M m) {
    register<bit<8>>(4) sreg;
    action sub_act() { m.y = 3; }
    table sub_t { key = { m.y: exact; } actions = { sub_act; top_b; } }
    apply { sub_t.apply(); }
}
control I(inout H h, inout M m, inout standard_metadata_t s) {
    register<bit<8>>(4) first;
    action helper() { digest<d2_t>(1, {m.y}); }
    action z_act() { helper(); }
    action unused_act() { m.x = 9; }
    action only_unused_table() { m.x = 8; }
    direct_counter(CounterType.packets) dc;
    table unused_t { key = { m.x: exact; } actions = { only_unused_table; } counters = dc; }
    table t1 { key = { m.x: exact; } actions = { z_act; top_a; } }
    Sub() sub;
    register<bit<8>>(4) last;
    table t2 { key = { m.x: exact; } actions = { z_act; } }
    apply {
        digest<d1_t>(1, {m.x});
        t1.apply();
        sub.apply(m);
        t2.apply();
    }
}
control E(inout H h, inout M m, inout standard_metadata_t s) {
    action e_act() { }
    table te { key = { m.x: exact; } actions = { e_act; top_b; top_a; } }
    apply { top_b(); te.apply(); }
}
control C(inout H h, inout M m) { apply {} }
control D(packet_out p, in H h) { apply { p.emit(h.h); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def test_p4info_order_and_contents_follow_p4cs_front_end() -> None:
    ir = compile_source(ORDER_P4, "order.p4")
    msg = emit(ir)
    # top-level actions first in the first control using them (tables' lists before the
    # body); the sub-control's objects where its instance is declared; unused table and
    # actions, and actions only other actions call, are gone
    assert [a.preamble.name for a in msg.actions] == [
        "top_a", "NoAction", "top_b", "I.z_act", "I.sub.sub_act", "E.e_act",
    ]
    assert [t.preamble.name for t in msg.tables] == ["I.t1", "I.sub.sub_t", "I.t2", "E.te"]
    assert [r.preamble.name for r in msg.registers] == ["I.first", "I.sub.sreg", "I.last"]
    assert not msg.direct_counters  # its table is unused
    # action bodies before the apply body, a called action's digest where it is called
    assert [d.preamble.name for d in msg.digests] == ["d2_t", "d1_t"]
    actions = {a["name"]: a for a in ir["actions"]}
    assert actions["I.helper"]["control_plane"] is False  # still there for the runtime
    assert "I.unused_act" not in actions and "I.only_unused_table" not in actions
    assert "I.unused_t" not in {t["name"] for t in ir["tables"]}
    digest_calls = [s for s in actions["I.helper"]["body"] if s["stmt"] == "extern"]
    assert ir["digests"][digest_calls[0]["digest"]]["name"] == "d2_t"


# Programs of the good corpus using constructs beyond the tutorials' (functions, header
# unions, varbit, value sets, bound action arguments, action profiles, named arguments,
# struct initializers, switch on values, direct invocation, top-level externs, a digest
# of a field list); tests/data holds the P4Info p4c 1.2.5.16 writes for each.
P4C_REFERENCE = ["functions", "unions_varbit", "value_sets", "bound_action_args", "syntax_forms",
                 "action_profiles"]


@pytest.mark.parametrize("name", P4C_REFERENCE)
def test_p4info_text_equals_p4cs(name: str) -> None:
    ir = compile_file(P4_CORPUS / "good" / f"{name}.p4")
    assert to_text(emit(ir)) == (DATA / f"{name}.p4info.txtpb").read_text()
