// expect: [(v["name"], v["size"]) for v in ir["value_sets"]] == [("MyParser.ports", 4), ("MyParser.pairs", 8)]
// expect: state("start")["transition"]["cases"][0]["keysets"] == [{"kind": "value_set", "name": "MyParser.ports"}]
// expect: state("parse_l4")["transition"]["cases"][0]["keysets"] == [{"kind": "value_set", "name": "MyParser.pairs"}]
#include <core.p4>
#include <v1model.p4>
// Parser value sets: select cases matching values the control plane installs.
header eth_t { bit<16> type; }
header l4_t { bit<16> src; bit<16> dst; }
struct H { eth_t eth; l4_t l4; }
struct M { bit<8> x; }
struct pair_t { bit<16> src; @match(ternary) bit<16> dst; }

parser MyParser(packet_in p, out H h, inout M m, inout standard_metadata_t s) {
    value_set<bit<16>>(4) ports;
    value_set<pair_t>(8) pairs;
    value_set<bit<8>>(2) unused_set;
    state start {
        p.extract(h.eth);
        transition select(h.eth.type) { ports: parse_l4; default: accept; }
    }
    state parse_l4 {
        p.extract(h.l4);
        transition select(h.l4.src, h.l4.dst) { pairs: accept; default: reject; }
    }
}
control MyVerifyChecksum(inout H h, inout M m) { apply {} }
control MyIngress(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control MyEgress(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control MyComputeChecksum(inout H h, inout M m) { apply {} }
control MyDeparser(packet_out p, in H h) { apply { p.emit(h.eth); p.emit(h.l4); } }
V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(), MyDeparser()) main;
