// Ordinary traffic: ARP replies for the aggregation address (so kernel sockets can
// resolve it) and L2 forwarding by destination MAC, flooding what is unknown.
#ifndef FORWARDING_P4
#define FORWARDING_P4

control Forwarding(inout headers_t hdr, inout metadata_t meta,
                   inout standard_metadata_t standard_metadata) {
    action forward(bit<9> port) {
        standard_metadata.egress_spec = port;
    }

    // Egress prunes the copy that would go back out the ingress port (meta.flood).
    action flood() {
        standard_metadata.mcast_grp = FLOOD_MCAST_GRP;
        meta.flood = 1;
    }

    action drop() {
        mark_to_drop(standard_metadata);
    }

    table l2_forward {
        key = { hdr.ethernet.dstAddr: exact; }
        actions = { forward; flood; drop; }
        default_action = flood();
        size = 1024;
    }

    // Turns the request into its reply in place and sends it back where it came from.
    action send_arp_reply(bit<48> mac) {
        bit<32> asked = hdr.arp.tpa;
        hdr.arp.oper = ARP_OP_REPLY;
        hdr.arp.tha = hdr.arp.sha;
        hdr.arp.tpa = hdr.arp.spa;
        hdr.arp.sha = mac;
        hdr.arp.spa = asked;
        hdr.ethernet.dstAddr = hdr.ethernet.srcAddr;
        hdr.ethernet.srcAddr = mac;
        standard_metadata.egress_spec = standard_metadata.ingress_port;
    }

    table arp_reply {
        key = { hdr.arp.tpa: exact; }
        actions = { send_arp_reply; @defaultonly NoAction; }
        default_action = NoAction();
        size = 64;
    }

    apply {
        bool replied = false;
        if (hdr.arp.isValid() && hdr.arp.oper == ARP_OP_REQUEST) {
            if (arp_reply.apply().hit) {
                replied = true;
            }
        }
        if (!replied) {
            l2_forward.apply();
        }
    }
}

#endif
