// expect: names("tables") == ["MyIngress.c.t"]
// expect: [b["label"] for b in find(ctrl("MyIngress"), stmt="block")] == ["MyIngress.c", "MyIngress.c#2"]
// expect: [l["name"] for l in ir["controls"]["MyIngress"]["locals"]] == ["MyIngress.c.v"]
// expect: ctrl("MyIngress")[0]["rhs"]["path"] == ["meta", "x"] and ctrl("MyIngress")[3]["rhs"]["path"] == ["meta", "z"]
// expect: ctrl("MyIngress")[2]["lhs"]["path"] == ["meta", "x"] and ctrl("MyIngress")[5]["lhs"]["path"] == ["meta", "z"]
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}
header ipv4_t {
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdrChecksum;
    bit<32> srcAddr;
    bit<32> dstAddr;
}

struct metadata {
    bit<32> x;
    bit<8> y;
    bit<32> z;
}
struct headers {
    ethernet_t ethernet;
    ipv4_t     ipv4;

}
parser MyParser(packet_in packet, out headers hdr, inout metadata meta,
                inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            0x0800: parse_ipv4;
            default: accept;
        }
    }
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition accept;
    }
}
control MyVerifyChecksum(inout headers hdr, inout metadata meta) {
    apply {

    }
}
// applied twice with different arguments: one table, the parameter in a local copied in and out
control C(inout bit<32> v) {
    table t { key = { v: exact; } actions = { NoAction; } }
    apply { t.apply(); v = v + 1; }
}
control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {
    C() c;
    apply {
        c.apply(meta.x);
        c.apply(meta.z);
    }
}
control MyEgress(inout headers hdr, inout metadata meta,
                 inout standard_metadata_t standard_metadata) {

    apply {

    }
}
control MyComputeChecksum(inout headers hdr, inout metadata meta) {
    apply {

    }
}
control MyDeparser(packet_out packet, in headers hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
    }
}
V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(),
         MyDeparser()) main;
