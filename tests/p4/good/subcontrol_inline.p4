// expect: names("tables") == ["MyIngress.lane0.t", "MyIngress.lane1.t"]
// expect: register("MyIngress.lane1.vals")["size"] == 8
// expect: "MyIngress.lane0.bump" in names("actions")
// expect: find(ctrl("MyIngress"), stmt="block", label="MyIngress.lane1") != []
// expect: find(action("MyIngress.lane1.bump"), path=["hdr", "ipv4", "srcAddr"]) != []
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
control Lane(inout bit<32> v, in bit<32> idx) {
    register<bit<32>>(8) vals;
    action bump() { bit<32> cur; vals.read(cur, idx); vals.write(idx, cur + v); v = cur + v; }
    table t { key = { idx: exact; } actions = { bump; NoAction; } }
    apply { if (idx == 0) { return; } t.apply(); }
}
control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {
    Lane() lane0;
    Lane() lane1;
    apply {
        lane0.apply(hdr.ipv4.dstAddr, meta.x);
        lane1.apply(hdr.ipv4.srcAddr, meta.x);
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
