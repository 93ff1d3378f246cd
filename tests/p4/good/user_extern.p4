// expect: find(ctrl("MyIngress"), stmt="method", kind="Checker", method="check")[0]["object"] == "MyIngress.ck"
// expect: find(ctrl("MyIngress"), stmt="method", method="ok")[0]["args"][0]["type"] == {"kind": "bool"}
// expect: find(ctrl("MyIngress"), stmt="method", method="check")[1]["args"][1]["type"] == bit(32)
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
extern Checker<T> {
    Checker(bit<32> size);
    Checker(bit<32> size, T init);
    void check(in T v);
    void check(in T v, in bit<32> limit);
    bool ok(in T v);
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

control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {
    Checker<bit<8>>(4) ck;
    Checker<bit<32>>(4, 7) ck2;
    apply {
        error e = error.NoError;
        ck.check(meta.y);
        ck.check(meta.y, 10);
        if (ck.ok(meta.y) && e == error.NoError) { meta.x = 1; }
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
