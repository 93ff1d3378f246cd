// Header and metadata types. The agg header mirrors worker/wire.py AGG_FIELDS field by
// field (a test compares them), followed by the NUM_LANES int32 values v0..v{K-1}.
#ifndef HEADERS_P4
#define HEADERS_P4

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}

// Ethernet/IPv4 ARP only (htype 1, ptype 0x0800), which is all hosts here speak.
header arp_t {
    bit<16> htype;
    bit<16> ptype;
    bit<8>  hlen;
    bit<8>  plen;
    bit<16> oper;
    bit<48> sha;
    bit<32> spa;
    bit<48> tha;
    bit<32> tpa;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> totalLen;
    bit<16> identification;
    bit<3>  flags;
    bit<13> fragOffset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdrChecksum;
    bit<32> srcAddr;
    bit<32> dstAddr;
}

header udp_t {
    bit<16> srcPort;
    bit<16> dstPort;
    bit<16> length;
    bit<16> checksum;
}

// Values are declared bit<32> although they are two's-complement int32: addition wraps
// identically, and unsigned fields keep every target's arithmetic the same.
// `exp` is a signed 8-bit exponent; the switch compares it as signed explicitly.
#define LANE(i) bit<32> v##i;
header agg_t {
    bit<8>  flags;
    bit<16> job_id;
    bit<8>  worker_id;
    bit<16> slot;
    bit<8>  round;
    bit<32> offset;
    bit<8>  exp;
#include "lanes.p4"
}
#undef LANE

struct headers_t {
    ethernet_t ethernet;
    arp_t      arp;
    ipv4_t     ipv4;
    udp_t      udp;
    agg_t      agg;
}

struct metadata_t {
    // from AggIngress.jobs
    bit<32> base;
    bit<16> num_slots;
    bit<8>  num_workers;
    bit<16> mcast_grp;
    bit<24> epoch;
    // from AggIngress.admission.members: the sender's bit in the bitmap (its child index)
    bit<8>  child;
    // from AggIngress.admission.uplink: this switch is not the job's root; its partial
    // aggregates go out of up_port to the parent's address, as child up_id of the parent
    bit<1>  up;
    bit<9>  up_port;
    bit<8>  up_id;
    bit<48> up_mac;
    bit<32> up_ip;
    bit<48> own_mac;
    bit<32> own_ip;
    // register index of this packet's slot and shadow set
    bit<32> idx;
    bit<8>  verdict;
    bit<3>  lane_op;
    bit<8>  exp;
    // set on a completed result so egress rewrites each replica's addresses
    bit<1>  mcast_result;
    // set on flooded copies so egress prunes the one going back out the ingress port
    bit<1>  flood;
}

#endif
