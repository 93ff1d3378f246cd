"""P4Info names of `p4src/aggregator.p4`: the control plane's half of the pipeline contract.

The controller, the pipeline tests and the benchmarks address tables, actions and
counters only through these constants, so a rename in the P4 program is one edit here
(and a test, `tests/test_pipeline_names.py`, checks that every name below exists in the
compiled P4Info).
"""

from __future__ import annotations

# Control type names of the v1model package instance.
INGRESS = "AggIngress"
EGRESS = "AggEgress"

# Ingress: job admission (key: hdr.agg.job_id exact).
TABLE_JOBS = "AggIngress.jobs"
ACTION_SET_JOB = "AggIngress.set_job"  # (base: bit<32>, num_slots: bit<16>, num_workers: bit<8>,
#                                          mcast_grp: bit<16>, epoch: bit<24>)

# Ingress: membership (keys: hdr.agg.job_id exact, hdr.agg.worker_id exact, hdr.ipv4.srcAddr exact).
TABLE_MEMBERS = "AggIngress.members"
ACTION_MEMBER_OK = "AggIngress.member_ok"  # ()

# Ingress: L2 forwarding of ordinary traffic (key: hdr.ethernet.dstAddr exact).
TABLE_L2 = "AggIngress.l2_forward"
ACTION_FORWARD = "AggIngress.forward"  # (port: bit<9>)
ACTION_FLOOD = "AggIngress.flood"  # (): multicast to FLOOD_MCAST_GRP, pruned at egress

# Ingress: ARP replies for the switch's aggregation address (key: hdr.arp.tpa exact).
TABLE_ARP = "AggIngress.arp_reply"
ACTION_ARP_REPLY = "AggIngress.send_arp_reply"  # (mac: bit<48>)

# Egress: per-replica address rewrite of results
# (keys: hdr.agg.job_id exact, standard_metadata.egress_rid exact).
TABLE_RESULT_REWRITE = "AggEgress.result_rewrite"
ACTION_SET_WORKER_ADDR = (
    "AggEgress.set_worker_addr"  # (mac: bit<48>, ip: bit<32>, udp_port: bit<16>)
)

# Counters indexed by job_id (size MAX_JOBS), packets and bytes.
COUNTER_AGGREGATED = "AggIngress.aggregated"  # contributions added to a slot
COUNTER_RESULTS = "AggIngress.results"  # completed slots multicast
COUNTER_RESENT = "AggIngress.resent"  # stored results unicast to a retransmitting worker
COUNTER_DUPLICATES = "AggIngress.duplicates"  # retransmission before completion, dropped
COUNTER_STALE = "AggIngress.stale"  # packet of an older round, dropped
COUNTER_BAD_SLOT = "AggIngress.bad_slot"  # slot out of the job's range, dropped
COUNTER_NOT_MEMBER = "AggIngress.not_member"  # (job, worker, source) not in members, dropped
# Global rejection counter indexed by reason (size 4).
COUNTER_REJECTED = "AggIngress.rejected"
REJECT_UNKNOWN_JOB = 0
REJECT_BAD_SLOT = 1
REJECT_NOT_MEMBER = 2
REJECT_BAD_WORKER = 3  # worker_id >= num_workers

PER_JOB_COUNTERS: tuple[str, ...] = (
    COUNTER_AGGREGATED,
    COUNTER_RESULTS,
    COUNTER_RESENT,
    COUNTER_DUPLICATES,
    COUNTER_STALE,
    COUNTER_BAD_SLOT,
    COUNTER_NOT_MEMBER,
)

# Compile-time constants of the program (defaults of its #defines).
DEFAULT_K = 64  # values per packet (NUM_LANES)
DEFAULT_SLOT_PAIRS = 16384  # register space in slots (NUM_SLOTS); registers hold 2x for shadows
MAX_JOBS = 1024  # job ids are 1..MAX_JOBS-1; job id 0 is never assigned
FLOOD_MCAST_GRP = 1  # multicast group used by `flood`; job groups are JOB_MCAST_BASE + job_id
JOB_MCAST_BASE = 0x1000
