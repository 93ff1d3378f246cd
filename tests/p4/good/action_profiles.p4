// expect: table("MyIngress.t")["implementation"] == "MyIngress.sel" and table("MyIngress.u")["implementation"] == "prof"
// expect: [(p["name"], p["with_selector"], p["size"], p["tables"]) for p in ir["action_profiles"]] == [("MyIngress.sel", True, 128, ["MyIngress.t"]), ("prof", False, 64, ["MyIngress.u"])]
// expect: ir["action_profiles"][0]["algorithm"] == "crc16" and ir["action_profiles"][0]["output_width"] == 8
// expect: [k["match_kind"] for k in table("MyIngress.t")["keys"]] == ["exact", "selector"]
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
    action_selector(HashAlgorithm.crc16, 32w128, 32w8) sel;
    table t { key = { meta.y: exact; meta.x: selector; } actions = { NoAction; } implementation = sel; }
    table u { key = { meta.y: exact; } actions = { NoAction; } @name("prof") implementation = action_profile(32w64); }
    apply {
        t.apply();
        u.apply();
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
