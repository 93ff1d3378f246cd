// expect: state("start")["transition"] == {"kind": "direct", "next": "ip.start"}
// expect: state("ip.start")["transition"]["cases"][0]["next"] == "ip.more"
// expect: state("ip.more")["transition"]["next"] == "start.after_ip"
// expect: find(state("start.after_ip"), stmt="assign")[0]["lhs"]["path"] == ["meta", "y"]
// expect: ir["parsers"]["MyParser"]["locals"] == [{"name": "MyParser.ip.seen", "type": bit(8)}]
// expect: find(state("ip.start"), stmt="extract")[0]["header"]["path"] == ["hdr", "ipv4"]
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
parser SubIp(packet_in pkt, out ipv4_t ip, inout bit<8> count) {
    bit<8> seen;
    state start {
        pkt.extract(ip);
        seen = 1;
        transition select(ip.protocol) { 17: more; default: accept; }
    }
    state more { count = count + seen; transition accept; }
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
    SubIp() ip;
    state start {
        packet.extract(hdr.ethernet);
        ip.apply(packet, hdr.ipv4, meta.y);
        meta.y = meta.y + 1;
        transition accept;
    }
}
control MyVerifyChecksum(inout headers hdr, inout metadata meta) {
    apply {

    }
}

control MyIngress(inout headers hdr, inout metadata meta,
                  inout standard_metadata_t standard_metadata) {

    apply {

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
