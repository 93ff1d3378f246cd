// Admission of aggregation packets: which job, whether the slot is in range, whether the
// sender is a registered member on its own switch port (a member's addresses used from
// any other port are not that member), or, for a result, whether it came from the job's
// parent. Sets meta.verdict to V_ADMITTED (with the register index meta.idx, the sender's
// child index and the job's uplink) or to REJECT_BASE + reason; never touches a register,
// so a rejected packet cannot disturb any job's state.
//
// A switch's role in a job comes from its entries alone: with an `uplink` entry it is an
// inner node or a leaf of the job's tree (it sends its partial aggregate to the parent),
// without one it is the job's root (it multicasts the result). The same program runs on
// every switch.
#ifndef ADMISSION_P4
#define ADMISSION_P4

control Admission(inout headers_t hdr, inout metadata_t meta,
                  in standard_metadata_t standard_metadata, in bool from_parent) {
    action set_job(bit<32> base, bit<16> num_slots, bit<8> num_workers,
                   bit<16> mcast_grp, bit<24> epoch) {
        meta.base = base;
        meta.num_slots = num_slots;
        meta.num_workers = num_workers;
        meta.mcast_grp = mcast_grp;
        meta.epoch = epoch;
    }

    // `child` is the sender's bit in the slot's bitmap: members of one job on one switch
    // are numbered 0..MAX_WORKERS-1 by the controller, whatever their worker_id (a rank up
    // to 255, or the id a child switch sends under).
    action member_ok(bit<8> child) {
        meta.verdict = V_ADMITTED;
        meta.child = child;
    }

    // This switch is not the job's root: completed partials go out of `port` to the
    // parent's aggregation address (mac, ip), from this switch's (own_mac, own_ip), with
    // worker_id set to `worker_id`, the id the parent knows this switch by.
    action set_parent(bit<9> port, bit<8> worker_id, bit<48> mac, bit<32> ip,
                      bit<48> own_mac, bit<32> own_ip) {
        meta.up = 1;
        meta.up_port = port;
        meta.up_id = worker_id;
        meta.up_mac = mac;
        meta.up_ip = ip;
        meta.own_mac = own_mac;
        meta.own_ip = own_ip;
    }

    table jobs {
        key = { hdr.agg.job_id: exact; }
        actions = { set_job; @defaultonly NoAction; }
        default_action = NoAction();
        size = MAX_JOBS;
    }

    table members {
        key = {
            hdr.agg.job_id: exact;
            hdr.agg.worker_id: exact;
            hdr.ipv4.srcAddr: exact;
            standard_metadata.ingress_port: exact;
        }
        actions = { member_ok; @defaultonly NoAction; }
        default_action = NoAction();
        size = MAX_JOBS * MAX_WORKERS;
    }

    table uplink {
        key = { hdr.agg.job_id: exact; }
        actions = { set_parent; @defaultonly NoAction; }
        default_action = NoAction();
        size = MAX_JOBS;
    }

    apply {
        meta.verdict = REJECT_BASE + REJECT_UNKNOWN_JOB;
        meta.up = 0;
        meta.child = 0;
        if (hdr.agg.job_id < MAX_JOBS) {
            if (jobs.apply().hit) {
                // base is checked alone first so base + slot cannot wrap past the check.
                if (hdr.agg.slot >= meta.num_slots || meta.base >= NUM_SLOTS
                        || meta.base + (bit<32>)hdr.agg.slot >= NUM_SLOTS) {
                    meta.verdict = REJECT_BASE + REJECT_BAD_SLOT;
                } else if (from_parent) {
                    meta.verdict = V_ADMITTED;  // if the job's parent is behind the port
                } else {
                    meta.verdict = REJECT_BASE + REJECT_NOT_MEMBER;
                    members.apply();
                    // the bitmap has MAX_WORKERS bits; a larger index is an entry error
                    if (meta.verdict == V_ADMITTED && meta.child >= MAX_WORKERS) {
                        meta.verdict = REJECT_BASE + REJECT_BAD_WORKER;
                    }
                }
            }
        }
        if (meta.verdict == V_ADMITTED) {
            uplink.apply();
            // A result is the parent's only if it came in on the job's parent port: a
            // root has no parent, and another switch's port is not this job's.
            if (from_parent && (meta.up == 0 || meta.up_port != standard_metadata.ingress_port)) {
                meta.verdict = REJECT_BASE + REJECT_FORGED_RESULT;
            }
        }
        if (meta.verdict == V_ADMITTED) {
            // Index i = (base + slot) * 2 + (round & 1): the low bit picks the shadow copy.
            meta.idx = ((meta.base + (bit<32>)hdr.agg.slot) << 1) | (bit<32>)(hdr.agg.round[0:0]);
        }
    }
}

#endif
