// expect: ir["types"]["header_unions"]["ip_u"]["fields"][1]["type"] == {"kind": "header", "name": "ipv6_t"}
// expect: ir["types"]["headers"]["opts_t"]["fields"][1]["type"] == {"kind": "varbit", "width": 320}
// expect: find(state("parse_opts"), stmt="extract")[0]["bits"]["op"] == "*"
// expect: table("MyIngress.t")["keys"][0]["name"] == "hdr.ip.$valid$"
// expect: ir["types"]["structs"]["H"]["fields"][3]["type"] == {"kind": "stack", "header": "ip_u", "size": 2, "union": True}
#include <core.p4>
#include <v1model.p4>
// Header unions (one member valid at a time), stacks of them, and a varbit field whose
// length the parser gives to extract.
header eth_t { bit<16> type; }
header ipv4_t { bit<4> version; bit<4> ihl; bit<24> rest; }
header ipv6_t { bit<4> version; bit<28> rest; }
header_union ip_u { ipv4_t v4; ipv6_t v6; }
header opts_t { bit<8> len; varbit<320> data; }
struct H { eth_t eth; ip_u ip; opts_t opts; ip_u[2] inner; }
struct M { bit<8> x; }

parser MyParser(packet_in p, out H h, inout M m, inout standard_metadata_t s) {
    state start {
        p.extract(h.eth);
        transition select(h.eth.type) { 0x0800: parse_v4; 0x86dd: parse_v6; default: accept; }
    }
    state parse_v4 { p.extract(h.ip.v4); transition parse_opts; }
    state parse_v6 { p.extract(h.ip.v6); transition accept; }
    state parse_opts {
        bit<8> n = p.lookahead<bit<8>>();
        p.extract(h.opts, (bit<32>)n * 8);
        transition accept;
    }
}
control MyVerifyChecksum(inout H h, inout M m) { apply {} }
control MyIngress(inout H hdr, inout M m, inout standard_metadata_t s) {
    action set_x(bit<8> v) { m.x = v; }
    table t { key = { hdr.ip.isValid(): exact; hdr.eth.type: exact; } actions = { set_x; NoAction; } }
    apply {
        t.apply();
        if (hdr.ip.v6.isValid()) { hdr.inner[0].v6 = hdr.ip.v6; }
    }
}
control MyEgress(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control MyComputeChecksum(inout H h, inout M m) { apply {} }
control MyDeparser(packet_out p, in H h) { apply { p.emit(h.eth); p.emit(h.ip); p.emit(h.opts); } }
V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(), MyDeparser()) main;
