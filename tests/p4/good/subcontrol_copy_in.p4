// expect: ctrl("MyIngress")[0] == {"stmt": "assign", "lhs": {"op": "field", "path": ["local", "MyIngress.c.before"], "type": bit(32)}, "rhs": {"op": "field", "path": ["meta", "x"], "type": bit(32)}}
// expect: find(ctrl("MyIngress"), stmt="block", label="MyIngress.c")[0]["body"][1]["rhs"]["arg"]["path"] == ["local", "MyIngress.c.before"]
// expect: find(ctrl("MyIngress"), stmt="block", label="MyIngress.d")[0]["body"][0]["rhs"]["path"] == ["hdr", "ipv4", "ttl"]
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
control Bump(inout metadata m, in bit<32> before) {
    apply { m.x = m.x + 1; m.y = (bit<8>)before; }
}
control Keep(inout metadata m, in bit<8> t) {
    apply { m.y = t; }
}
control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {
    Bump() c;
    Keep() d;
    apply {
        c.apply(meta, meta.x);
        d.apply(meta, hdr.ipv4.ttl);
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
