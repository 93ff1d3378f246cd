// Admission of aggregation packets: which job, whether the slot and worker are in range,
// whether the sender is a registered member on its own switch port (a member's addresses
// used from any other port are not that member). Sets meta.verdict to V_ADMITTED (and the
// register index meta.idx) or to REJECT_BASE + reason; never touches a register, so a
// rejected packet cannot disturb any job's state.
#ifndef ADMISSION_P4
#define ADMISSION_P4

control Admission(inout headers_t hdr, inout metadata_t meta,
                  in standard_metadata_t standard_metadata) {
    action set_job(bit<32> base, bit<16> num_slots, bit<8> num_workers,
                   bit<16> mcast_grp, bit<24> epoch) {
        meta.base = base;
        meta.num_slots = num_slots;
        meta.num_workers = num_workers;
        meta.mcast_grp = mcast_grp;
        meta.epoch = epoch;
    }

    action member_ok() {
        meta.verdict = V_ADMITTED;
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

    apply {
        meta.verdict = REJECT_BASE + REJECT_UNKNOWN_JOB;
        if (hdr.agg.job_id < MAX_JOBS) {
            if (jobs.apply().hit) {
                // base is checked alone first so base + slot cannot wrap past the check.
                if (hdr.agg.slot >= meta.num_slots || meta.base >= NUM_SLOTS
                        || meta.base + (bit<32>)hdr.agg.slot >= NUM_SLOTS) {
                    meta.verdict = REJECT_BASE + REJECT_BAD_SLOT;
                } else if (hdr.agg.worker_id >= meta.num_workers
                        || hdr.agg.worker_id >= MAX_WORKERS) {
                    meta.verdict = REJECT_BASE + REJECT_BAD_WORKER;
                } else {
                    meta.verdict = REJECT_BASE + REJECT_NOT_MEMBER;
                    members.apply();
                }
            }
        }
        if (meta.verdict == V_ADMITTED) {
            // Index i = (base + slot) * 2 + (round & 1): the low bit picks the shadow copy.
            meta.idx = ((meta.base + (bit<32>)hdr.agg.slot) << 1) | (bit<32>)(hdr.agg.round[0:0]);
        }
    }
}

#endif
