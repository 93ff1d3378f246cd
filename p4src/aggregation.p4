// The aggregation state machine (docs/DESIGN.md section 3). Every register read-modify-write
// is one action, because BMv2 makes actions, not controls, atomic.
#ifndef AGGREGATION_P4
#define AGGREGATION_P4

// One value lane: its own register array (lanes are never packed into a wider register,
// where carries would spill between them) and one action doing the whole read-modify-write.
// `op` says what the lane keeps: the packet's value (a round's first packet), the wrapping
// sum (data packets), the maximum (exponent packets) or what it has (a resend).
//
// Exponent packets carry their lanes order-encoded (docs/WIRE.md): a signed value v is
// sent as bit-reverse(v ^ 0x80000000), so that of two lanes the larger v is the one that
// has the lowest bit in which they differ. Two's complement isolates that bit (d & -d), so
// the maximum takes four xor/and/subtract operations and no per-lane comparison: the same
// arithmetic for every lane, which a target can run on all lanes at once.
control Lane(inout bit<32> value, in bit<32> idx, in bit<3> op) {
    register<bit<32>>(REG_SIZE) sum;

    action update() {
        bit<32> cur;
        sum.read(cur, idx);
        bit<32> updated = op == LANE_STORE ? value
                        : (op == LANE_ADD ? cur + value
                        : (op == LANE_MAX
                           ? cur ^ ((value ^ cur) & (0 - (value & ((value ^ cur) & (0 - (value ^ cur))))))
                           : cur));
        sum.write(idx, updated);
        // The packet carries the register's value out: the sum on completion, the stored
        // result on a resend (and a partial sum, harmlessly, on a dropped packet).
        value = updated;
    }

    apply {
        update();
    }
}

control Aggregation(inout headers_t hdr, inout metadata_t meta, in bool from_parent) {
    register<bit<32>>(REG_SIZE) tag;     // epoch (24 bits) ++ round (8 bits)
    register<bit<32>>(REG_SIZE) bitmap;  // children counted in this round
    register<bit<8>>(REG_SIZE) worker_count;  // number of bits set in bitmap
    register<bit<8>>(REG_SIZE) exp_max;  // signed maximum of the exponents
    // 1 once the lanes hold the round's result: at the job's root as soon as the count is
    // complete, below it when the parent's result arrived (until then the lanes hold this
    // switch's partial aggregate, and exp_max its partial maximum)
    register<bit<1>>(REG_SIZE) has_result;
    // Below the root, the children that asked again (retransmitted) for a complete partial
    // since it last went up. The first ask resends it; asks of other children are then
    // only noted, until one child asks a second time (its own timer ran out again): the
    // children's timers pace the resends, about one per timeout instead of one per child.
    register<bit<32>>(REG_SIZE) asked;

#define LANE(i) Lane() lane_##i;
#include "lanes.p4"
#undef LANE

    // A child's contribution (or its retransmission): decides the packet's fate and
    // updates the per-index state in one atomic step. Registers are read and written
    // unconditionally; conditions select the values (no `if` inside the action, which
    // keeps it one straight-line block on every target).
    action contribute() {
        bit<32> old_tag;
        bit<32> old_bitmap;
        bit<8> old_count;
        bit<8> old_exp;
        bit<1> old_done;
        bit<32> old_asked;
        tag.read(old_tag, meta.idx);
        bitmap.read(old_bitmap, meta.idx);
        worker_count.read(old_count, meta.idx);
        exp_max.read(old_exp, meta.idx);
        has_result.read(old_done, meta.idx);
        asked.read(old_asked, meta.idx);

        bit<32> want = meta.epoch ++ hdr.agg.round;
        // Serial-number arithmetic mod 256: the packet's round is newer than the stored
        // one when the forward distance is 1..127.
        bit<8> ahead = hdr.agg.round - old_tag[7:0];
        bool opens = old_tag[31:8] != meta.epoch || (ahead != 0 && ahead < 128);
        bool current = old_tag == want;
        bit<32> wbit = (bit<32>)1 << meta.child;
        // Exponent packets carry the call descriptor and exponent proposals in their
        // lanes, which the round combines by maximum; data packets are summed.
        bool max_op = (hdr.agg.flags & FLAG_EXP_ONLY) != 0;
        bool adds = current && (old_bitmap & wbit) == 0;
        bool contributes = opens || adds;
        // Signed max of two int8s by comparing them with the sign bit flipped.
        bit<8> bigger = (hdr.agg.exp ^ 0x80) > (old_exp ^ 0x80) ? hdr.agg.exp : old_exp;

        bit<32> new_bitmap = opens ? wbit : (adds ? old_bitmap | wbit : old_bitmap);
        bit<8> new_count = opens ? 8w1 : (adds ? old_count + 1 : old_count);
        bit<8> new_exp = opens ? hdr.agg.exp : (adds ? bigger : old_exp);
        bool complete = contributes && new_count == meta.num_workers;
        // What a retransmission finds: the round's result, or (below the job's root) a
        // complete partial aggregate that the parent has not answered yet.
        bool full = current && old_count == meta.num_workers;
        bool answered = old_done == 1 || meta.up == 0;
        bool waits = full && !answered && (old_bitmap & wbit) != 0;
        bool resend_up = waits && (old_asked == 0 || (old_asked & wbit) != 0);

        tag.write(meta.idx, opens ? want : old_tag);
        bitmap.write(meta.idx, new_bitmap);
        worker_count.write(meta.idx, new_count);
        exp_max.write(meta.idx, new_exp);
        has_result.write(meta.idx, contributes ? (complete && meta.up == 0 ? 1w1 : 1w0)
                                               : old_done);
        asked.write(meta.idx, contributes ? 32w0
                            : (resend_up ? wbit : (waits ? old_asked | wbit : old_asked)));

        meta.exp = new_exp;
        meta.verdict = contributes ? (complete ? V_COMPLETE : V_AGGREGATED)
                     : (!current ? V_STALE
                     : (!full ? V_DUPLICATE
                     : (answered ? V_RESEND : (resend_up ? V_RESEND_UP : V_DUPLICATE))));
        meta.lane_op = opens ? LANE_STORE
                     : (adds ? (max_op ? LANE_MAX : LANE_ADD)
                     : (full && (answered || resend_up) ? LANE_READ : LANE_SKIP));
    }

    // The parent's result for a slot whose partial this switch sent up: stored in place
    // of the partial (lanes and exponent) once, then multicast by ingress. A second copy
    // (the parent answering a resent partial after all) is a duplicate; a result for a
    // round this switch does not hold complete is stale. It never opens a round.
    action take_result() {
        bit<32> old_tag;
        bit<8> old_count;
        bit<8> old_exp;
        bit<1> old_done;
        tag.read(old_tag, meta.idx);
        worker_count.read(old_count, meta.idx);
        exp_max.read(old_exp, meta.idx);
        has_result.read(old_done, meta.idx);

        bool current = old_tag == meta.epoch ++ hdr.agg.round;
        bool takes = current && old_count == meta.num_workers && old_done == 0;

        exp_max.write(meta.idx, takes ? hdr.agg.exp : old_exp);
        has_result.write(meta.idx, takes ? 1w1 : old_done);

        meta.exp = hdr.agg.exp;
        meta.verdict = takes ? V_FROM_PARENT
                     : (current && old_done == 1 ? V_DUPLICATE : V_STALE);
        meta.lane_op = takes ? LANE_STORE : LANE_SKIP;
    }

    apply {
        if (from_parent) {
            take_result();
        } else {
            contribute();
        }
        // The one place lanes are touched: the actions above chose what they do.
        if (meta.lane_op != LANE_SKIP) {
#define LANE(i) lane_##i.apply(hdr.agg.v##i, meta.idx, meta.lane_op);
#include "lanes.p4"
#undef LANE
        }
        if (meta.verdict == V_COMPLETE || meta.verdict == V_RESEND
                || meta.verdict == V_RESEND_UP) {
            hdr.agg.exp = meta.exp;
            hdr.udp.checksum = 0;
            if (meta.verdict == V_RESEND_UP) {
                hdr.agg.flags = hdr.agg.flags | FLAG_RETRANSMIT;
            } else if (meta.verdict == V_RESEND || meta.up == 0) {
                // a result; a partial going up (complete below the root) is not one
                hdr.agg.flags = hdr.agg.flags | FLAG_RESULT;
            }
        } else if (meta.verdict == V_FROM_PARENT) {
            hdr.udp.checksum = 0;
        }
    }
}

#endif
