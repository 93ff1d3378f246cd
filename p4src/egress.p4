// AggEgress: addresses each replica of a result, and each resent result, to its worker's
// registered address, and prunes flooded copies going back out the port they came in on.
#ifndef EGRESS_P4
#define EGRESS_P4

control AggEgress(inout headers_t hdr, inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {
    action set_worker_addr(bit<48> mac, bit<32> ip, bit<16> udp_port) {
        hdr.ethernet.dstAddr = mac;
        hdr.ipv4.dstAddr = ip;
        hdr.udp.dstPort = udp_port;
    }

    // Which worker a result goes to: the replica id of a multicast copy, the worker id of
    // the member a stored result is resent to.
    bit<16> replica_id;

    // A replica nobody told us how to address cannot be delivered.
    action drop() {
        mark_to_drop(standard_metadata);
    }

    table result_rewrite {
        key = {
            hdr.agg.job_id: exact;
            replica_id: exact;
        }
        actions = { set_worker_addr; drop; }
        default_action = drop();
        size = MAX_JOBS * MAX_WORKERS;
    }

    apply {
        bool rewrite = false;
        replica_id = 0;
        if (meta.mcast_result == 1) {
            replica_id = standard_metadata.egress_rid;
            rewrite = true;
        } else if (meta.verdict == V_RESEND) {
            replica_id = (bit<16>)hdr.agg.worker_id;
            rewrite = true;
        }
        if (rewrite) {
            result_rewrite.apply();
        } else if (meta.flood == 1
                && standard_metadata.egress_port == standard_metadata.ingress_port) {
            drop();
        }
    }
}

#endif
