// AggIngress: routes a packet to aggregation (admission, then the state machine) or to
// ordinary forwarding, and does all counting and the final send/drop in one place, so
// each outcome maps to exactly one counter update (p4reduce/contract.py).
//
// Results come only from this switch or from its parent in a tree of switches. Workers
// take results from their switch's aggregation address; `own_addresses` lists it (and,
// in a tree, every switch's, so that no host can pose as another leaf either). An agg
// header with the RESULT flag is dropped as forged unless it arrives on a port listed in
// result_ports (empty on a single switch; the parent's port in a tree), where it is the
// parent's answer for one of this switch's partial aggregates: stored, then multicast to
// the job's children here. Any other frame from a switch's address is forged too, except
// an aggregation packet without the flag: a child switch's partial aggregate, which
// `members` accepts only from the port that leads to that child.
#ifndef INGRESS_P4
#define INGRESS_P4

control AggIngress(inout headers_t hdr, inout metadata_t meta,
                   inout standard_metadata_t standard_metadata) {
    counter(NUM_REJECT_REASONS, CounterType.packets_and_bytes) rejected;  // indexed by REJECT_* reason
    counter(MAX_JOBS, CounterType.packets_and_bytes) aggregated;
    counter(MAX_JOBS, CounterType.packets_and_bytes) results;
    counter(MAX_JOBS, CounterType.packets_and_bytes) resent;
    counter(MAX_JOBS, CounterType.packets_and_bytes) duplicates;
    counter(MAX_JOBS, CounterType.packets_and_bytes) stale;
    counter(MAX_JOBS, CounterType.packets_and_bytes) bad_slot;
    counter(MAX_JOBS, CounterType.packets_and_bytes) not_member;
    counter(MAX_JOBS, CounterType.packets_and_bytes) partials;  // sent (or resent) to the parent

    // Ports allowed to deliver results from elsewhere (a parent switch): a hit is the answer.
    action allow_results() { }

    table result_ports {
        key = { standard_metadata.ingress_port: exact; }
        actions = { allow_results; @defaultonly NoAction; }
        default_action = NoAction();
        size = 64;
    }

    // The switch's own IPv4 addresses (the aggregation address results are sent from).
    action own_address() { }

    table own_addresses {
        key = { hdr.ipv4.srcAddr: exact; }
        actions = { own_address; @defaultonly NoAction; }
        default_action = NoAction();
        size = 64;
    }

    Admission() admission;
    Aggregation() aggregation;
    Forwarding() forwarding;

    // The result leaves from the aggregation address the workers sent to; egress
    // (AggEgress.result_rewrite) fills in each replica's destination.
    action multicast_result() {
        hdr.ethernet.srcAddr = hdr.ethernet.dstAddr;
        hdr.ipv4.srcAddr = hdr.ipv4.dstAddr;
        hdr.udp.srcPort = AGG_UDP_PORT;
        standard_metadata.mcast_grp = meta.mcast_grp;
        meta.mcast_result = 1;
    }

    // A stored result resent to the one worker that asked, out of the port its membership
    // was checked on; egress addresses it to that member's registered address (never to
    // the packet's source, which another host on the same port could have forged).
    action reply_to_member() {
        hdr.ethernet.srcAddr = hdr.ethernet.dstAddr;
        hdr.ipv4.srcAddr = hdr.ipv4.dstAddr;
        hdr.udp.srcPort = AGG_UDP_PORT;
        standard_metadata.egress_spec = standard_metadata.ingress_port;
    }

    // A partial aggregate (complete here, or resent because a child asked again) goes to
    // the job's parent switch as this switch's contribution there (AggIngress.admission
    // .uplink): one packet up per slot and round, whatever the fan-in below.
    action send_to_parent() {
        hdr.ethernet.srcAddr = meta.own_mac;
        hdr.ethernet.dstAddr = meta.up_mac;
        hdr.ipv4.srcAddr = meta.own_ip;
        hdr.ipv4.dstAddr = meta.up_ip;
        hdr.udp.srcPort = AGG_UDP_PORT;
        hdr.udp.dstPort = AGG_UDP_PORT;
        hdr.agg.worker_id = meta.up_id;
        standard_metadata.egress_spec = meta.up_port;
    }

    action drop_packet() {
        mark_to_drop(standard_metadata);
    }

    apply {
        bool flagged = false;  // an agg header with the RESULT flag
        if (hdr.agg.isValid()) {
            if ((hdr.agg.flags & FLAG_RESULT) != 0) {
                flagged = true;
            }
        }
        bool from_switch = false;  // a switch's aggregation address as the source
        if (hdr.ipv4.isValid()) {
            if (own_addresses.apply().hit) {
                from_switch = true;
            }
        }
        bool forged = false;
        if (flagged) {
            if (result_ports.apply().miss) {
                forged = true;
            }
        } else if (from_switch && !hdr.agg.isValid()) {
            forged = true;
        }
        if (standard_metadata.parser_error != error.NoError) {
            drop_packet();
        } else if (forged) {
            rejected.count((bit<32>)REJECT_FORGED_RESULT);
            drop_packet();
        } else if (hdr.agg.isValid()) {
            // a result from the parent, or a contribution from a child (worker or switch)
            admission.apply(hdr, meta, standard_metadata, flagged);
            if (meta.verdict == V_ADMITTED) {
                aggregation.apply(hdr, meta, flagged);
            }
            bit<32> job = (bit<32>)hdr.agg.job_id;
            if (meta.verdict >= REJECT_BASE) {
                rejected.count((bit<32>)(meta.verdict - REJECT_BASE));
                if (meta.verdict == REJECT_BASE + REJECT_BAD_SLOT) {
                    bad_slot.count(job);
                } else if (meta.verdict == REJECT_BASE + REJECT_NOT_MEMBER) {
                    not_member.count(job);
                }
                drop_packet();
            } else if (meta.verdict == V_COMPLETE) {
                aggregated.count(job);
                if (meta.up == 1) {
                    partials.count(job);
                    send_to_parent();
                } else {
                    results.count(job);
                    multicast_result();
                }
            } else if (meta.verdict == V_AGGREGATED) {
                aggregated.count(job);
                drop_packet();
            } else if (meta.verdict == V_RESEND) {
                resent.count(job);
                reply_to_member();
            } else if (meta.verdict == V_RESEND_UP) {
                partials.count(job);
                send_to_parent();
            } else if (meta.verdict == V_FROM_PARENT) {
                results.count(job);
                multicast_result();
            } else if (meta.verdict == V_DUPLICATE) {
                duplicates.count(job);
                drop_packet();
            } else {
                stale.count(job);
                drop_packet();
            }
        } else {
            forwarding.apply(hdr, meta, standard_metadata);
        }
    }
}

#endif
