// Compile-time constants of the aggregation pipeline. The first three can be overridden
// with -D. Every value here is also in p4reduce/contract.py (NUM_LANES is DEFAULT_K,
// NUM_SLOTS is DEFAULT_SLOT_PAIRS), which the control plane reads instead of parsing this
// file; tests/test_contract.py checks that the two agree.
#ifndef CONFIG_P4
#define CONFIG_P4

#ifndef NUM_LANES
#define NUM_LANES 64
#endif
#if NUM_LANES < 8 || NUM_LANES > 256 || NUM_LANES % 8 != 0
#error "NUM_LANES must be a multiple of 8 between 8 and 256"
#endif

// Slots of register space; every slot has two register indices (the shadow pair).
#ifndef NUM_SLOTS
#define NUM_SLOTS 16384
#endif
#define REG_SIZE (NUM_SLOTS * 2)

#ifndef MAX_JOBS
#define MAX_JOBS 1024
#endif

#define FLOOD_MCAST_GRP 1
#define AGG_UDP_PORT 48879
// Children of one job on one switch (its workers there, and the switches below it that
// aggregate for it): the width of the bitmap register. A job's world size is not bounded
// by it; a worker's rank (the wire's 8-bit worker_id) is mapped to a child by `members`.
#define MAX_WORKERS 32

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define IP_PROTO_UDP 17
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2

// A result keeps the triggering packet's other flags (as tests/support/refswitch.py does).
#define FLAG_RESULT 8w0x01
// Set by a switch resending its partial aggregate to its parent (as a worker's resend has it).
#define FLAG_RETRANSMIT 8w0x02
// An exponent packet: its (order-encoded) lanes are combined by maximum, not summed.
#define FLAG_EXP_ONLY 8w0x04

// Typed (8w, 2w) so they can be the arms of ?: expressions.
// Outcome of an aggregation packet (metadata.verdict). Rejections are REJECT_BASE + the
// reason index of the global `rejected` counter (contract.REJECT_REASONS).
#define V_NONE 8w0
#define V_ADMITTED 8w1
#define V_AGGREGATED 8w2
#define V_COMPLETE 8w3
#define V_RESEND 8w4
#define V_DUPLICATE 8w5
#define V_STALE 8w6
// In a tree of switches (a job whose `uplink` entry names a parent): a child asked again
// for a slot whose partial aggregate is complete but unanswered, so it goes up again...
#define V_RESEND_UP 8w7
// ...and the parent's result for a slot, stored here and multicast to the children.
#define V_FROM_PARENT 8w8
#define REJECT_BASE 8w16
#define REJECT_UNKNOWN_JOB 0
#define REJECT_BAD_SLOT 1
#define REJECT_NOT_MEMBER 2
#define REJECT_BAD_WORKER 3
#define NUM_REJECT_REASONS 5

// What each lane does with its register (metadata.lane_op).
#define LANE_SKIP 3w0
#define LANE_STORE 3w1
#define LANE_ADD 3w2
#define LANE_READ 3w3
#define LANE_MAX 3w4

// A result (RESULT flag set) from a port that may not send results (AggIngress.result_ports),
// a result for a job whose parent (AggIngress.admission.uplink) is not behind that port, or
// a frame other than an aggregation packet from a switch's aggregation address.
#define REJECT_FORGED_RESULT 4

#endif
