// error: 52:27: with 'const' entries cannot have priorities
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

control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {
    action a() { meta.y = 1; }
    table t { key = { hdr.ipv4.dstAddr: ternary; } actions = { a; NoAction; }
        // p4c's priorities (largest wins): 30, 29, 10; the IR's: 1, 2, 21 (smallest matches first)
        const entries = { priority = 30: 0x0a000000 &&& 0xff000000: a(); _: NoAction(); priority = 10: 5 &&& 7: a(); } }
    apply {
        t.apply();
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
