// expect: ir["types"]["structs"]["headers"]["fields"][2]["type"] == {"kind": "stack", "header": "label_t", "size": 3}
// expect: find(state("parse_label"), op="stack_next") != []
// expect: find(state("parse_label"), op="stack_last") != []
// expect: find(ctrl("MyIngress"), stmt="push_front")[0]["count"] == 1
// expect: find(ctrl("MyIngress"), stmt="assign")[0]["lhs"]["path"] == ["hdr", "labels", "0", "label"]
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
header label_t { bit<20> label; bit<3> tc; bit<1> bos; bit<8> ttl; }
struct metadata {
    bit<32> x;
    bit<8> y;
}
struct headers {
    ethernet_t ethernet;
    ipv4_t     ipv4;
    label_t[3] labels;
}
parser MyParser(packet_in packet, out headers hdr, inout metadata meta,
                inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) { 0x8847: parse_label; default: accept; }
    }
    state parse_label {
        packet.extract(hdr.labels.next);
        transition select(hdr.labels.last.bos) { 1: accept; default: parse_label; }
    }
}
control MyVerifyChecksum(inout headers hdr, inout metadata meta) {
    apply {

    }
}

control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {

    apply {
        hdr.labels.push_front(1);
        hdr.labels[0].setValid();
        hdr.labels[0].label = 5;
        hdr.labels.pop_front(1);
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
